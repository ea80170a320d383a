package status

import (
	"errors"
	"fmt"
	"testing"

	"github.com/abupdate/update_engine/pkg/omaha"
)

func TestCodeOf(t *testing.T) {
	base := errors.New("connection reset")
	err := fmt.Errorf("download: %w", WithCode(omaha.DownloadTransferError, base))
	if got := CodeOf(err); got != omaha.DownloadTransferError {
		t.Errorf("CodeOf = %v", got)
	}
	if !errors.Is(err, base) {
		t.Error("cause lost")
	}
	if !errors.Is(err, omaha.DownloadTransferError) {
		t.Error("errors.Is(err, DownloadTransferError) = false")
	}
	if errors.Is(err, omaha.PayloadHashMismatchError) {
		t.Error("errors.Is matched the wrong code")
	}
	if CodeOf(nil) != omaha.Success || CodeOf(base) != omaha.Error {
		t.Error("CodeOf(nil|plain) wrong")
	}
	if WithCode(omaha.Error, nil) != nil {
		t.Error("WithCode(nil) != nil")
	}
}
