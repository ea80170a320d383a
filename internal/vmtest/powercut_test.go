package vmtest

import (
	"math/rand/v2"
	"os"
	"time"

	"github.com/abupdate/update_engine/pkg/gpt"
)

// cut is one planned power cut: when the trigger line appears on the
// serial console, wait a random delay in [min, max), then kill -9 QEMU.
type cut struct {
	phase    string
	trigger  string
	min, max time.Duration
}

// Serial lines that mark the steps of an update (the engine's, the dev
// server's, the post-install program's and logind's own).
const (
	trigDownload = `omaha_devserver\[\d+\]: .*GET /packages/full-2\.0\.0\.payload`
	trigVerify   = `VMTEST omaha .*"eventtype":14,"eventresult":1`
	trigPostinst = `VMTEST postinst target=`
	trigApplied  = `update_engine\[\d+\]: .*msg="update applied; reboot needed"`
	trigReboot   = `systemd-logind\[\d+\]: The system will reboot now!`
)

// cutPlan is the seeded plan: cuts while downloading and applying (the
// payload streams onto the slot), while verifying, in the post-install
// program, and last one of flip / applied / reboot (only one cut can come
// after the flip: the next boot is the new slot).
func cutPlan(rng *rand.Rand) []cut {
	plan := []cut{}
	for range 5 {
		plan = append(plan, cut{"download+apply", trigDownload, time.Second, 30 * time.Second})
	}
	plan = append(plan, cut{"verify", trigVerify, 0, time.Second})
	// The post-install program sleeps 8 s; the flip follows it. The host
	// sees the program's line late when the CPU is shared (two VMs at
	// once): 8 s leaves the cut inside post-install whatever that lag.
	for range 3 {
		plan = append(plan, cut{"post-install", trigPostinst, 0, 1800 * time.Millisecond})
	}
	last := []cut{
		{"post-install end / flip", trigPostinst, 7900 * time.Millisecond, 8600 * time.Millisecond},
		{"applied (marker, events)", trigApplied, 0, 500 * time.Millisecond},
		{"reboot", trigReboot, 0, 1500 * time.Millisecond},
	}
	return append(plan, last[rng.IntN(len(last))])
}

// laterPhases extends a download or verify trigger with the triggers of
// the phases after it (a restart finishes a verified payload without
// downloading it).
func laterPhases(trigger string) string {
	switch trigger {
	case trigDownload:
		return trigDownload + "|" + trigVerify + "|" + trigPostinst
	case trigVerify:
		return trigVerify + "|" + trigPostinst
	}
	return trigger
}

// afterCut checks the disk after a power cut: GPT valid, active slot
// untouched.
func (h *host) afterCut(hashA string) {
	h.t.Helper()
	h.slots() // fails the test unless sgdisk -v finds no problems
	if h.partHash(partUSRA) != hashA {
		h.t.Fatal("USR-A (the active slot) was written")
	}
}

// nextSlot is the slot GRUB gptprio (and our boot stage) picks next,
// computed on the host from the disk image.
func (h *host) nextSlot() gpt.GUID {
	h.t.Helper()
	d, err := gpt.Open(h.disk, os.O_RDONLY, 512)
	if err != nil {
		h.t.Fatal(err)
	}
	defer d.Close()
	tab, _, err := d.Read()
	if err != nil {
		h.t.Fatal(err)
	}
	i, err := tab.Next(gpt.TypeCoreOSUsr)
	if err != nil {
		h.t.Fatalf("no bootable slot on %s: %v", h.disk, err)
	}
	return tab.Entries[i-1].GUID
}
