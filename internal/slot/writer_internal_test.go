package slot

import (
	"os"
	"syscall"
	"testing"

	"github.com/abupdate/update_engine/internal/testenv"
)

// TestDirectUnsupported plays a file system that refuses O_DIRECT at open
// (tmpfs before Linux 6.6): the writer falls back to buffered I/O.
func TestDirectUnsupported(t *testing.T) {
	openFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
		if flag&syscall.O_DIRECT != 0 {
			return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EINVAL}
		}
		return os.OpenFile(name, flag, perm)
	}
	t.Cleanup(func() { openFile = os.OpenFile })
	img := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: 1 << 20})
	d, err := Open(t.Context(), img, Options{Booted: "A", Direct: true})
	if err != nil {
		t.Fatal(err)
	}
	w, err := d.OpenPassive(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.Direct() {
		t.Fatal("Direct() true although O_DIRECT was refused")
	}
	if _, err := w.WriteAt([]byte("unaligned is fine when buffered"), 3); err != nil {
		t.Fatal(err)
	}
}
