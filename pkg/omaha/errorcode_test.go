package omaha

import (
	"errors"
	"testing"
)

func TestCodes(t *testing.T) {
	if got := HTTPCode(503); got != 2503 {
		t.Errorf("HTTPCode(503) = %d", got)
	}
	if got := HTTPCode(1234); got != 2999 {
		t.Errorf("HTTPCode(1234) = %d, want clamped 2999", got)
	}
	c := DownloadTransferError | FlagTestOmahaURL
	if int32(c) != 268435465 {
		t.Errorf("9|TestOmahaURL = %d, want 268435465 (SPEC example)", int32(c))
	}
	if c.Base() != DownloadTransferError {
		t.Errorf("Base() = %v", c.Base())
	}
	if got, want := c.String(), "DownloadTransferError(9)|TestOmahaURL"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := HTTPCode(404).String(), "OmahaRequestHTTPResponse404(2404)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// TestCodeIs: errors.Is matches a code whatever its flag bits.
func TestCodeIs(t *testing.T) {
	var err error = DownloadTransferError | FlagResumed
	if !errors.Is(err, DownloadTransferError) || errors.Is(err, PayloadHashMismatchError) {
		t.Error("errors.Is must compare codes without their flag bits")
	}
	if RollbackErrorCode != 44 {
		t.Errorf("RollbackErrorCode = %d, want FUE's 44", RollbackErrorCode)
	}
}
