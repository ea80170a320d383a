package daemon

import (
	"os"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/slot"
	"github.com/abupdate/update_engine/internal/testenv"
)

// BenchmarkFullUpdate times a whole update of a 64 MiB incompressible
// image through the daemon (Omaha check, HTTP download on 127.0.0.1,
// payload apply with checkpoints, verification, GPT flip), against the
// physical limit measured in the same run: writing the same bytes to the
// slot and fsyncing them. It also times GetStatus round trips.
func BenchmarkFullUpdate(b *testing.B) {
	const size = 64 << 20
	img := randomImage(size, 21)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		w := newOmaha(b)
		w.publish("v2.bin", "2.0.0", img, false)
		disk := testenv.NewDisk(b, testenv.DiskSpec{SlotSize: 80 << 20})

		d, err := slot.Open(b.Context(), disk, slot.Options{Booted: "A"})
		if err != nil {
			b.Fatal(err)
		}
		f, err := os.OpenFile(disk, os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if _, err := f.WriteAt(img, d.Slots()[1].Start); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		raw := time.Since(t0)
		f.Close()

		h := newHost(b, disk)
		stop := runDaemon(b, h.options(w.url()))
		c := client(b, h.bus)
		b.StartTimer()
		t1 := time.Now()
		if err := c.AttemptUpdate(b.Context()); err != nil {
			b.Fatal(err)
		}
		st := waitOp(b, c, 5*time.Minute, "UPDATE_STATUS_UPDATED_NEED_REBOOT", "UPDATE_STATUS_IDLE")
		took := time.Since(t1)
		b.StopTimer()
		if st.CurrentOperation != "UPDATE_STATUS_UPDATED_NEED_REBOOT" {
			det, _ := c.Detail(b.Context())
			b.Fatalf("update failed: %+v", det)
		}
		const n = 200
		t2 := time.Now()
		for j := 0; j < n; j++ {
			if _, err := c.GetStatus(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
		rtt := time.Since(t2) / n
		stop()
		testenv.Bench(b, "daemon_full_update_64MiB", float64(size)/(1<<20)/took.Seconds(), "MiB/s")
		testenv.Bench(b, "daemon_full_update_vs_write_fsync", took.Seconds()/raw.Seconds(), "ratio")
		testenv.Bench(b, "dbus_getstatus_roundtrip", float64(rtt.Microseconds()), "us")
		b.StartTimer()
	}
}
