package engine

import (
	"context"
	"errors"

	"github.com/abupdate/update_engine/internal/status"
	"github.com/abupdate/update_engine/internal/update"
	"github.com/abupdate/update_engine/pkg/omaha"
)

// mapError is where errors become update_engine codes (SPEC.md section
// 7). An explicit status code in the chain wins; then the packages'
// sentinels (update.PackageCode); else Error (1).
func mapError(err error) omaha.Code {
	if err == nil {
		return omaha.Success
	}
	var ce *status.CodeError
	if errors.As(err, &ce) {
		return ce.Code
	}
	var c omaha.Code
	if errors.As(err, &c) {
		return c
	}
	if c, ok := update.PackageCode(err); ok {
		return c
	}
	return omaha.Error
}

// withDefault attaches code to err unless err already maps to a specific
// code.
func withDefault(code omaha.Code, err error) error {
	if err == nil {
		return nil
	}
	if mapError(err) != omaha.Error {
		return err
	}
	return status.WithCode(code, err)
}

// resumable reports whether an apply failure leaves a checkpoint worth
// resuming from: interruptions and transfer problems yes; bad data no.
func resumable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch mapError(err).Base() {
	case omaha.DownloadTransferError, omaha.DownloadWriteError, omaha.Error:
		return true
	}
	return false
}
