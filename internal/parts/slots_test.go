package parts

import (
	"bytes"
	"testing"

	"github.com/abupdate/update_engine/internal/slot"
	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/cgroup"
)

// TestThrottledTargetReadsBack (root): the passive slot behind the cgroup
// writer still reads back what was written (the payload applier verifies a
// delta-written slot that way), with O_DIRECT alignment.
func TestThrottledTargetReadsBack(t *testing.T) {
	_, dev := testenv.NewDiskLoop(t, testenv.DiskSpec{SlotSize: 8 << 20})
	d, err := slot.Open(t.Context(), dev, slot.Options{Booted: "A", Direct: true})
	if err != nil {
		t.Fatal(err)
	}
	lim, err := cgroup.New(t.Context(), cgroup.Config{Name: "update_engine-test-readback", Device: dev, WriteBPS: 512 << 20})
	if err != nil {
		t.Skipf("SKIP: no cgroup I/O limit here: %v", err)
	}
	defer lim.Close()
	tgt, err := DiskSlots{Disk: d, Limiter: lim}.OpenPassive(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	if _, ok := tgt.(limitedTarget); !ok {
		t.Fatalf("target is %T, want the throttled limitedTarget", tgt)
	}
	data := slot.AlignedBuffer(64 << 10)
	for i := range data {
		data[i] = byte(i*7 + 1)
	}
	if _, err := tgt.WriteAt(data, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := tgt.Sync(); err != nil {
		t.Fatal(err)
	}
	back := slot.AlignedBuffer(len(data))
	if _, err := tgt.ReadAt(back, 1<<20); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, data) {
		t.Fatal("read back differs from what was written")
	}
	active, closer, err := d.Active()
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	other := make([]byte, len(data))
	if _, err := active.ReadAt(other, 1<<20); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(other, data) {
		t.Fatal("the write reached the active slot")
	}
}
