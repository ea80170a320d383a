package engine

import (
	"errors"

	"github.com/abupdate/update_engine/internal/antirollback"
	"github.com/abupdate/update_engine/internal/slot"
	"github.com/abupdate/update_engine/internal/status"
	"github.com/abupdate/update_engine/pkg/payload"
)

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
