package antirollback

import "errors"

// Sentinel errors. TPM failures wrap ErrTPM and, when the TPM answered
// with a response code, that code too: errors.Is(err, tpm2.TPMRCNVSpace)
// works on them.
var (
	// ErrBelowFloor: the candidate version is below the floor kept in the
	// TPM. The engine refuses the update with update_engine code 44
	// (RollbackError) and sends it in an Omaha error event.
	ErrBelowFloor = errors.New("antirollback: version is below the TPM version floor")
	// ErrVersion: a version string has no encoding (see ParseVersion).
	ErrVersion = errors.New("antirollback: version does not fit the floor encoding")
	// ErrNoTPM: no TPM was found, or it could not be opened.
	ErrNoTPM = errors.New("antirollback: no TPM")
	// ErrTPM: talking to the TPM failed, or it answered with an error.
	ErrTPM = errors.New("antirollback: TPM error")
	// ErrNVFull: the TPM has no NV space left for the floor index
	// (TPM_RC_NV_SPACE). Also wraps ErrTPM.
	ErrNVFull = errors.New("antirollback: TPM NV space exhausted")
	// ErrIndexConflict: the NV index exists but was not defined by us (other
	// size or attributes); it is left alone.
	ErrIndexConflict = errors.New("antirollback: NV index holds something else")
	// ErrPCRMismatch: after the extend, the PCR does not hold the value
	// computed locally; something else extended it at the same time.
	ErrPCRMismatch = errors.New("antirollback: PCR value differs from the expected one")
)
