package omaha

import "fmt"

// Code is an update_engine action exit code (FUE kActionCode…), the number
// sent as errorcode in Omaha events (this package owns the table; the
// engine, the daemon and the update server read it). The low 28 bits hold the code, the high
// bits hold Flag values.
type Code int32

// The codes of SPEC.md section 7. Numbers are stable; never renumber.
const (
	Success                                    Code = 0
	Error                                      Code = 1
	OmahaRequestError                          Code = 2
	OmahaResponseHandlerError                  Code = 3
	FilesystemCopierError                      Code = 4
	PostinstallRunnerError                     Code = 5
	SetBootableFlagError                       Code = 6
	InstallDeviceOpenError                     Code = 7
	KernelDeviceOpenError                      Code = 8
	DownloadTransferError                      Code = 9
	PayloadHashMismatchError                   Code = 10
	PayloadSizeMismatchError                   Code = 11
	DownloadPayloadVerificationError           Code = 12
	DownloadNewPartitionInfoError              Code = 13
	DownloadWriteError                         Code = 14
	NewRootfsVerificationError                 Code = 15
	NewKernelVerificationError                 Code = 16
	SignedDeltaPayloadExpectedError            Code = 17
	DownloadPayloadPubKeyVerificationError     Code = 18
	PostinstallBootedFromFirmwareB             Code = 19
	DownloadStateInitializationError           Code = 20
	DownloadInvalidMetadataMagicString         Code = 21
	DownloadSignatureMissingInManifest         Code = 22
	DownloadManifestParseError                 Code = 23
	DownloadMetadataSignatureError             Code = 24
	DownloadMetadataSignatureVerificationError Code = 25
	DownloadMetadataSignatureMismatch          Code = 26
	DownloadOperationHashVerificationError     Code = 27
	DownloadOperationExecutionError            Code = 28
	DownloadOperationHashMismatch              Code = 29
	OmahaRequestEmptyResponseError             Code = 30
	OmahaRequestXMLParseError                  Code = 31
	DownloadInvalidMetadataSize                Code = 32
	DownloadInvalidMetadataSignature           Code = 33
	OmahaResponseInvalid                       Code = 34
	OmahaUpdateIgnoredPerPolicy                Code = 35
	OmahaUpdateDeferredPerPolicy               Code = 36
	OmahaErrorInHTTPResponse                   Code = 37
	DownloadOperationHashMissingError          Code = 38
	DownloadMetadataSignatureMissingError      Code = 39
	OmahaUpdateDeferredForBackoff              Code = 40
	PostinstallPowerwashError                  Code = 41
	NewPCRPolicyVerificationError              Code = 42
	NewPCRPolicyHTTPError                      Code = 43
	RollbackError                              Code = 44
	DownloadIncomplete                         Code = 100
	// OmahaRequestHTTPResponseBase + HTTP status (clamped to 999).
	OmahaRequestHTTPResponseBase Code = 2000
)

var codeNames = map[Code]string{
	Success:                                    "Success",
	Error:                                      "Error",
	OmahaRequestError:                          "OmahaRequestError",
	OmahaResponseHandlerError:                  "OmahaResponseHandlerError",
	FilesystemCopierError:                      "FilesystemCopierError",
	PostinstallRunnerError:                     "PostinstallRunnerError",
	SetBootableFlagError:                       "SetBootableFlagError",
	InstallDeviceOpenError:                     "InstallDeviceOpenError",
	KernelDeviceOpenError:                      "KernelDeviceOpenError",
	DownloadTransferError:                      "DownloadTransferError",
	PayloadHashMismatchError:                   "PayloadHashMismatchError",
	PayloadSizeMismatchError:                   "PayloadSizeMismatchError",
	DownloadPayloadVerificationError:           "DownloadPayloadVerificationError",
	DownloadNewPartitionInfoError:              "DownloadNewPartitionInfoError",
	DownloadWriteError:                         "DownloadWriteError",
	NewRootfsVerificationError:                 "NewRootfsVerificationError",
	NewKernelVerificationError:                 "NewKernelVerificationError",
	SignedDeltaPayloadExpectedError:            "SignedDeltaPayloadExpectedError",
	DownloadPayloadPubKeyVerificationError:     "DownloadPayloadPubKeyVerificationError",
	PostinstallBootedFromFirmwareB:             "PostinstallBootedFromFirmwareB",
	DownloadStateInitializationError:           "DownloadStateInitializationError",
	DownloadInvalidMetadataMagicString:         "DownloadInvalidMetadataMagicString",
	DownloadSignatureMissingInManifest:         "DownloadSignatureMissingInManifest",
	DownloadManifestParseError:                 "DownloadManifestParseError",
	DownloadMetadataSignatureError:             "DownloadMetadataSignatureError",
	DownloadMetadataSignatureVerificationError: "DownloadMetadataSignatureVerificationError",
	DownloadMetadataSignatureMismatch:          "DownloadMetadataSignatureMismatch",
	DownloadOperationHashVerificationError:     "DownloadOperationHashVerificationError",
	DownloadOperationExecutionError:            "DownloadOperationExecutionError",
	DownloadOperationHashMismatch:              "DownloadOperationHashMismatch",
	OmahaRequestEmptyResponseError:             "OmahaRequestEmptyResponseError",
	OmahaRequestXMLParseError:                  "OmahaRequestXMLParseError",
	DownloadInvalidMetadataSize:                "DownloadInvalidMetadataSize",
	DownloadInvalidMetadataSignature:           "DownloadInvalidMetadataSignature",
	OmahaResponseInvalid:                       "OmahaResponseInvalid",
	OmahaUpdateIgnoredPerPolicy:                "OmahaUpdateIgnoredPerPolicy",
	OmahaUpdateDeferredPerPolicy:               "OmahaUpdateDeferredPerPolicy",
	OmahaErrorInHTTPResponse:                   "OmahaErrorInHTTPResponse",
	DownloadOperationHashMissingError:          "DownloadOperationHashMissingError",
	DownloadMetadataSignatureMissingError:      "DownloadMetadataSignatureMissingError",
	OmahaUpdateDeferredForBackoff:              "OmahaUpdateDeferredForBackoff",
	PostinstallPowerwashError:                  "PostinstallPowerwashError",
	NewPCRPolicyVerificationError:              "NewPCRPolicyVerificationError",
	NewPCRPolicyHTTPError:                      "NewPCRPolicyHTTPError",
	RollbackError:                              "RollbackError",
	DownloadIncomplete:                         "DownloadIncomplete",
}

// Flag bits OR-ed into a reported code (FUE GetErrorCodeFlags).
const (
	FlagDevMode      Code = -1 << 31 // bit 31; defined, never set by Flatcar
	FlagResumed      Code = 1 << 30  // the download was resumed
	FlagTestImage    Code = 1 << 29  // non-official build
	FlagTestOmahaURL Code = 1 << 28  // SERVER is not the public default

	// CodeMask strips the flag bits.
	CodeMask Code = 0x0FFFFFFF
)

// HTTPCode returns the code for an HTTP failure status: 2000 + status, with
// the status clamped to 999.
func HTTPCode(httpStatus int) Code {
	if httpStatus < 0 {
		httpStatus = 0
	}
	if httpStatus > 999 {
		httpStatus = 999
	}
	return OmahaRequestHTTPResponseBase + Code(httpStatus)
}

// Base returns c without flag bits.
func (c Code) Base() Code { return c & CodeMask }

// Name is the name of c without flag bits, e.g. "DownloadTransferError",
// "OmahaRequestHTTPResponse503", or "UnknownError".
func (c Code) Name() string {
	b := c.Base()
	name, ok := codeNames[b]
	switch {
	case ok:
	case b > OmahaRequestHTTPResponseBase && b <= OmahaRequestHTTPResponseBase+999:
		name = fmt.Sprintf("OmahaRequestHTTPResponse%d", int32(b-OmahaRequestHTTPResponseBase))
	default:
		name = "UnknownError"
	}
	return name
}

// String names the code, e.g. "DownloadTransferError(9)" or
// "DownloadTransferError(9)|Resumed".
func (c Code) String() string {
	s := fmt.Sprintf("%s(%d)", c.Name(), int32(c.Base()))
	for _, f := range []struct {
		bit  Code
		name string
	}{{FlagDevMode, "DevMode"}, {FlagResumed, "Resumed"}, {FlagTestImage, "TestImage"}, {FlagTestOmahaURL, "TestOmahaURL"}} {
		if c&f.bit != 0 {
			s += "|" + f.name
		}
	}
	return s
}

// Error makes a Code usable as an error value.
func (c Code) Error() string { return "update_engine: " + c.String() }

// Is lets errors.Is(err, omaha.DownloadTransferError) match a wrapped
// Code (or an error carrying one) regardless of flag bits.
func (c Code) Is(target error) bool {
	t, ok := target.(Code)
	return ok && t.Base() == c.Base()
}
