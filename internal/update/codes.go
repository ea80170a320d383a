package update

import (
	"errors"

	"github.com/abupdate/update_engine/internal/antirollback"
	"github.com/abupdate/update_engine/internal/slot"
	"github.com/abupdate/update_engine/pkg/gpt"
	"github.com/abupdate/update_engine/pkg/omaha"
	"github.com/abupdate/update_engine/pkg/payload"
)

// PackageCode maps the parts' packages' error sentinels to the
// update_engine codes (SPEC.md section 7): pkg/omaha's, pkg/gpt's, then
// payloadCode's. The engine consults it after any explicit code.
func PackageCode(err error) (omaha.Code, bool) {
	var he *omaha.HTTPError
	switch {
	case errors.Is(err, omaha.ErrEmptyResponse):
		return omaha.OmahaRequestEmptyResponseError, true
	case errors.Is(err, omaha.ErrXMLParse):
		return omaha.OmahaRequestXMLParseError, true
	case errors.Is(err, omaha.ErrInvalidResponse):
		return omaha.OmahaResponseInvalid, true
	case errors.As(err, &he):
		return omaha.Code(he.Code()), true
	case errors.Is(err, omaha.ErrNoURL), errors.Is(err, omaha.ErrBadContentRange),
		errors.Is(err, omaha.ErrRangeNotSatisfiable), errors.Is(err, omaha.ErrReadTimeout):
		return omaha.DownloadTransferError, true
	case errors.Is(err, gpt.ErrIO):
		return omaha.DownloadWriteError, true
	case errors.Is(err, gpt.ErrNoValidGPT), errors.Is(err, gpt.ErrCorrupt), errors.Is(err, gpt.ErrNotFound):
		return omaha.InstallDeviceOpenError, true
	case errors.Is(err, gpt.ErrNoBootable), errors.Is(err, gpt.ErrInvalid):
		return omaha.Error, true
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
func payloadCode(err error) (omaha.Code, bool) {
	for _, m := range []struct {
		err  error
		code omaha.Code
	}{
		{payload.ErrBadMagic, omaha.DownloadInvalidMetadataMagicString},
		{payload.ErrUnsupportedVersion, omaha.DownloadManifestParseError},
		{payload.ErrMetadataSize, omaha.DownloadInvalidMetadataSize},
		{payload.ErrManifestParse, omaha.DownloadManifestParseError},
		{payload.ErrInvalidManifest, omaha.DownloadManifestParseError},
		{payload.ErrUnknownOperation, omaha.DownloadManifestParseError},
		{payload.ErrMetadataSignatureMissing, omaha.DownloadMetadataSignatureMissingError},
		{payload.ErrMetadataSignatureInvalid, omaha.DownloadInvalidMetadataSignature},
		{payload.ErrMetadataSignatureMismatch, omaha.DownloadMetadataSignatureMismatch},
		{payload.ErrSignatureMissing, omaha.DownloadSignatureMissingInManifest},
		{payload.ErrSignatureInvalid, omaha.DownloadPayloadVerificationError},
		{payload.ErrSignatureMismatch, omaha.DownloadPayloadPubKeyVerificationError},
		// Before the op-hash entries: a per-op source mismatch wraps both.
		{payload.ErrSourceMismatch, omaha.DownloadStateInitializationError},
		{payload.ErrOperationHashMissing, omaha.DownloadOperationHashMissingError},
		{payload.ErrOperationHashMismatch, omaha.DownloadOperationHashMismatch},
		{payload.ErrOperationExecution, omaha.DownloadOperationExecutionError},
		{payload.ErrNewPartitionHash, omaha.NewRootfsVerificationError},
		{payload.ErrNewKernelHash, omaha.NewKernelVerificationError},
		{payload.ErrNewPCRPolicyHash, omaha.NewPCRPolicyVerificationError},
		{payload.ErrNewFileHash, omaha.NewRootfsVerificationError},
		{payload.ErrTruncated, omaha.PayloadSizeMismatchError},
		{payload.ErrBadCheckpoint, omaha.DownloadStateInitializationError},
		{payload.ErrNoSource, omaha.DownloadOperationExecutionError},
		{payload.ErrWrite, omaha.DownloadWriteError},
		{payload.ErrPayloadHash, omaha.PayloadHashMismatchError},
		{payload.ErrVersionMismatch, omaha.DownloadPayloadVerificationError},
		{payload.ErrVersionMissing, omaha.DownloadPayloadVerificationError},
		{slot.ErrNoSlots, omaha.InstallDeviceOpenError},
		{antirollback.ErrBelowFloor, omaha.OmahaUpdateIgnoredPerPolicy},
	} {
		if errors.Is(err, m.err) {
			return m.code, true
		}
	}
	return 0, false
}
