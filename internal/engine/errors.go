package engine

import (
	"context"
	"errors"

	"github.com/abupdate/update_engine/internal/status"
	"github.com/abupdate/update_engine/pkg/gpt"
	"github.com/abupdate/update_engine/pkg/omaha"
)

// mapError is the one place where package errors become update_engine
// codes (SPEC.md section 7). An explicit status code in the chain wins;
// then the packages' sentinels; else Error (1).
func mapError(err error) status.Code {
	if err == nil {
		return status.Success
	}
	var ce *status.CodeError
	if errors.As(err, &ce) {
		return ce.Code
	}
	var c status.Code
	if errors.As(err, &c) {
		return c
	}
	if c, ok := packageCode(err); ok {
		return c
	}
	return status.Error
}

func packageCode(err error) (status.Code, bool) {
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

// withDefault attaches code to err unless err already maps to a specific
// code.
func withDefault(code status.Code, err error) error {
	if err == nil {
		return nil
	}
	if mapError(err) != status.Error {
		return err
	}
	return status.WithCode(code, err)
}

// rangeRefused reports a resume offset the payload server would not serve.
func rangeRefused(err error) bool {
	return errors.Is(err, omaha.ErrRangeNotSatisfiable) || errors.Is(err, omaha.ErrBadContentRange)
}

// resumable reports whether an apply failure leaves a checkpoint worth
// resuming from: interruptions and transfer problems yes; bad data no.
func resumable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch mapError(err).Base() {
	case status.DownloadTransferError, status.DownloadWriteError, status.Error:
		return true
	}
	return false
}
