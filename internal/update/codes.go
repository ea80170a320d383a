package update

import (
	"errors"

	"github.com/abupdate/update_engine/internal/antirollback"
	"github.com/abupdate/update_engine/internal/slot"
	"github.com/abupdate/update_engine/internal/status"
	"github.com/abupdate/update_engine/pkg/gpt"
	"github.com/abupdate/update_engine/pkg/omaha"
	"github.com/abupdate/update_engine/pkg/payload"
)

// PackageCode maps the parts' packages' error sentinels to the
// update_engine codes (SPEC.md section 7): pkg/omaha's, pkg/gpt's, then
// payloadCode's. The engine consults it after any explicit code.
func PackageCode(err error) (status.Code, bool) {
	var he *omaha.HTTPError
	switch {
	case errors.Is(err, omaha.ErrEmptyResponse):
		return status.OmahaRequestEmptyResponseError, true
	case errors.Is(err, omaha.ErrXMLParse):
		return status.OmahaRequestXMLParseError, true
	case errors.Is(err, omaha.ErrInvalidResponse):
		return status.OmahaResponseInvalid, true
	case errors.As(err, &he):
		return status.Code(he.Code()), true
	case errors.Is(err, omaha.ErrNoURL), errors.Is(err, omaha.ErrBadContentRange),
		errors.Is(err, omaha.ErrRangeNotSatisfiable), errors.Is(err, omaha.ErrReadTimeout):
		return status.DownloadTransferError, true
	case errors.Is(err, gpt.ErrIO):
		return status.DownloadWriteError, true
	case errors.Is(err, gpt.ErrNoValidGPT), errors.Is(err, gpt.ErrCorrupt), errors.Is(err, gpt.ErrNotFound):
		return status.InstallDeviceOpenError, true
	case errors.Is(err, gpt.ErrNoBootable), errors.Is(err, gpt.ErrInvalid):
		return status.Error, true
	}
	if c, ok := payloadCode(err); ok {
		return c, true
	}
	return 0, false
}

// RangeRefused reports a resume offset the payload server would not serve.
func RangeRefused(err error) bool {
	return errors.Is(err, omaha.ErrRangeNotSatisfiable) || errors.Is(err, omaha.ErrBadContentRange)
}

// payloadCode maps pkg/payload's, internal/slot's and
// internal/antirollback's sentinels (SPEC.md section 7; each sentinel's
// doc names its code).
func payloadCode(err error) (status.Code, bool) {
	for _, m := range []struct {
		err  error
		code status.Code
	}{
		{payload.ErrBadMagic, status.DownloadInvalidMetadataMagicString},
		{payload.ErrUnsupportedVersion, status.DownloadManifestParseError},
		{payload.ErrMetadataSize, status.DownloadInvalidMetadataSize},
		{payload.ErrManifestParse, status.DownloadManifestParseError},
		{payload.ErrInvalidManifest, status.DownloadManifestParseError},
		{payload.ErrUnknownOperation, status.DownloadManifestParseError},
		{payload.ErrMetadataSignatureMissing, status.DownloadMetadataSignatureMissingError},
		{payload.ErrMetadataSignatureInvalid, status.DownloadInvalidMetadataSignature},
		{payload.ErrMetadataSignatureMismatch, status.DownloadMetadataSignatureMismatch},
		{payload.ErrSignatureMissing, status.DownloadSignatureMissingInManifest},
		{payload.ErrSignatureInvalid, status.DownloadPayloadVerificationError},
		{payload.ErrSignatureMismatch, status.DownloadPayloadPubKeyVerificationError},
		// Before the op-hash entries: a per-op source mismatch wraps both.
		{payload.ErrSourceMismatch, status.DownloadStateInitializationError},
		{payload.ErrOperationHashMissing, status.DownloadOperationHashMissingError},
		{payload.ErrOperationHashMismatch, status.DownloadOperationHashMismatch},
		{payload.ErrOperationExecution, status.DownloadOperationExecutionError},
		{payload.ErrNewPartitionHash, status.NewRootfsVerificationError},
		{payload.ErrNewKernelHash, status.NewKernelVerificationError},
		{payload.ErrNewPCRPolicyHash, status.NewPCRPolicyVerificationError},
		{payload.ErrNewFileHash, status.NewRootfsVerificationError},
		{payload.ErrTruncated, status.PayloadSizeMismatchError},
		{payload.ErrBadCheckpoint, status.DownloadStateInitializationError},
		{payload.ErrNoSource, status.DownloadOperationExecutionError},
		{payload.ErrWrite, status.DownloadWriteError},
		{payload.ErrPayloadHash, status.PayloadHashMismatchError},
		{payload.ErrVersionMismatch, status.DownloadPayloadVerificationError},
		{payload.ErrVersionMissing, status.DownloadPayloadVerificationError},
		{slot.ErrNoSlots, status.InstallDeviceOpenError},
		{antirollback.ErrBelowFloor, status.OmahaUpdateIgnoredPerPolicy},
	} {
		if errors.Is(err, m.err) {
			return m.code, true
		}
	}
	return 0, false
}
