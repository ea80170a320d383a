package status

import (
	"errors"
	"fmt"

	"github.com/abupdate/update_engine/pkg/omaha"
)

// Code is an update_engine action exit code, the number sent as errorcode
// in Omaha events. The table is pkg/omaha's; these are aliases so that the
// engine's many uses read as before.
type Code = omaha.Code

// The codes of SPEC.md section 7.
const (
	Success                                    = omaha.Success
	Error                                      = omaha.Error
	OmahaRequestError                          = omaha.OmahaRequestError
	OmahaResponseHandlerError                  = omaha.OmahaResponseHandlerError
	FilesystemCopierError                      = omaha.FilesystemCopierError
	PostinstallRunnerError                     = omaha.PostinstallRunnerError
	SetBootableFlagError                       = omaha.SetBootableFlagError
	InstallDeviceOpenError                     = omaha.InstallDeviceOpenError
	KernelDeviceOpenError                      = omaha.KernelDeviceOpenError
	DownloadTransferError                      = omaha.DownloadTransferError
	PayloadHashMismatchError                   = omaha.PayloadHashMismatchError
	PayloadSizeMismatchError                   = omaha.PayloadSizeMismatchError
	DownloadPayloadVerificationError           = omaha.DownloadPayloadVerificationError
	DownloadNewPartitionInfoError              = omaha.DownloadNewPartitionInfoError
	DownloadWriteError                         = omaha.DownloadWriteError
	NewRootfsVerificationError                 = omaha.NewRootfsVerificationError
	NewKernelVerificationError                 = omaha.NewKernelVerificationError
	SignedDeltaPayloadExpectedError            = omaha.SignedDeltaPayloadExpectedError
	DownloadPayloadPubKeyVerificationError     = omaha.DownloadPayloadPubKeyVerificationError
	PostinstallBootedFromFirmwareB             = omaha.PostinstallBootedFromFirmwareB
	DownloadStateInitializationError           = omaha.DownloadStateInitializationError
	DownloadInvalidMetadataMagicString         = omaha.DownloadInvalidMetadataMagicString
	DownloadSignatureMissingInManifest         = omaha.DownloadSignatureMissingInManifest
	DownloadManifestParseError                 = omaha.DownloadManifestParseError
	DownloadMetadataSignatureError             = omaha.DownloadMetadataSignatureError
	DownloadMetadataSignatureVerificationError = omaha.DownloadMetadataSignatureVerificationError
	DownloadMetadataSignatureMismatch          = omaha.DownloadMetadataSignatureMismatch
	DownloadOperationHashVerificationError     = omaha.DownloadOperationHashVerificationError
	DownloadOperationExecutionError            = omaha.DownloadOperationExecutionError
	DownloadOperationHashMismatch              = omaha.DownloadOperationHashMismatch
	OmahaRequestEmptyResponseError             = omaha.OmahaRequestEmptyResponseError
	OmahaRequestXMLParseError                  = omaha.OmahaRequestXMLParseError
	DownloadInvalidMetadataSize                = omaha.DownloadInvalidMetadataSize
	DownloadInvalidMetadataSignature           = omaha.DownloadInvalidMetadataSignature
	OmahaResponseInvalid                       = omaha.OmahaResponseInvalid
	OmahaUpdateIgnoredPerPolicy                = omaha.OmahaUpdateIgnoredPerPolicy
	OmahaUpdateDeferredPerPolicy               = omaha.OmahaUpdateDeferredPerPolicy
	OmahaErrorInHTTPResponse                   = omaha.OmahaErrorInHTTPResponse
	DownloadOperationHashMissingError          = omaha.DownloadOperationHashMissingError
	DownloadMetadataSignatureMissingError      = omaha.DownloadMetadataSignatureMissingError
	OmahaUpdateDeferredForBackoff              = omaha.OmahaUpdateDeferredForBackoff
	PostinstallPowerwashError                  = omaha.PostinstallPowerwashError
	NewPCRPolicyVerificationError              = omaha.NewPCRPolicyVerificationError
	NewPCRPolicyHTTPError                      = omaha.NewPCRPolicyHTTPError
	RollbackError                              = omaha.RollbackError
	DownloadIncomplete                         = omaha.DownloadIncomplete
	OmahaRequestHTTPResponseBase               = omaha.OmahaRequestHTTPResponseBase
)

// Flag bits OR-ed into a reported code (FUE GetErrorCodeFlags).
const (
	FlagDevMode      = omaha.FlagDevMode
	FlagResumed      = omaha.FlagResumed
	FlagTestImage    = omaha.FlagTestImage
	FlagTestOmahaURL = omaha.FlagTestOmahaURL
	CodeMask         = omaha.CodeMask
)

// HTTPCode returns the code for an HTTP failure status: 2000 + status, with
// the status clamped to 999.
func HTTPCode(httpStatus int) Code { return omaha.HTTPCode(httpStatus) }

// CodeError attaches a Code to the error that caused it.
type CodeError struct {
	Code Code
	Err  error
}

// WithCode wraps err with code. A nil err stays nil.
func WithCode(code Code, err error) error {
	if err == nil {
		return nil
	}
	return &CodeError{Code: code, Err: err}
}

func (e *CodeError) Error() string {
	return fmt.Sprintf("%v [%s]", e.Err, e.Code)
}

func (e *CodeError) Unwrap() []error { return []error{e.Err, e.Code} }

// CodeOf returns the code carried by err: the outermost *CodeError or Code in
// its chain, Success for nil, and Error for anything else.
func CodeOf(err error) Code {
	if err == nil {
		return Success
	}
	var ce *CodeError
	if errors.As(err, &ce) {
		return ce.Code
	}
	var c Code
	if errors.As(err, &c) {
		return c
	}
	return Error
}
