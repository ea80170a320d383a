package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDBusStarts(t *testing.T) {
	addr := DBus(t)
	if !strings.HasPrefix(addr, "unix:") {
		t.Fatalf("address %q is not a unix address", addr)
	}
}

func TestLoopDevice(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	dev := LoopDevice(t, img)
	fi, err := os.Stat(dev)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeDevice == 0 {
		t.Fatalf("%s is not a device", dev)
	}
}
