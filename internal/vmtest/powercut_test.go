package vmtest

import (
	"errors"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"testing"
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
	plan = append(plan,
		cut{"verify", trigVerify, 0, time.Second},
		cut{"post-install", trigPostinst, 0, 1800 * time.Millisecond},
		cut{"post-install", trigPostinst, 0, 1800 * time.Millisecond},
		cut{"post-install end / flip", trigPostinst, 1900 * time.Millisecond, 2600 * time.Millisecond},
	)
	last := []cut{
		{"flip", trigPostinst, 2 * time.Second, 3 * time.Second},
		{"applied (marker, events)", trigApplied, 0, 500 * time.Millisecond},
		{"reboot", trigReboot, 0, 1500 * time.Millisecond},
	}
	return append(plan, last[rng.IntN(len(last))])
}

func TestScenario4PowerCuts(t *testing.T) {
	a := env(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("UE_VMTEST_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seed = v
	}
	t.Logf("power cuts: seed %d (UE_VMTEST_SEED=%d reproduces the plan)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	plan := cutPlan(rng)

	h := newHost(t, a, "4-power-cuts", a.BaseDisk, []string{a.Payloads["full-2.0.0"]}, serverConf("reboot"))
	hashA := h.partHash(partUSRA)
	start := time.Now()
	cuts := 0
	for boot := 0; ; boot++ {
		if boot > len(plan)+4 {
			t.Fatalf("the update did not complete after %d power-ons", boot)
		}
		// The slot the boot stage must choose, from the GPT as the cut left it.
		next := h.nextSlot()
		h.powerOn()
		version := "1.0.0"
		if next == guidUSRB {
			version = "2.0.0"
		}
		h.bootsOn(version, next)
		if next == guidUSRB {
			h.expect(`VMTEST healthy`, 3*time.Minute)
			h.expect(`VMTEST checked`, 3*time.Minute)
			h.powerCut()
			break
		}
		if cuts == len(plan) {
			// Every planned cut done: let the update finish.
			h.updateAndReboot()
			h.afterCut(hashA)
			continue
		}
		c := plan[cuts]
		if _, err := h.vm.Expect(regexp.MustCompile(c.trigger), updateTimeout); err != nil {
			if errors.Is(err, ErrExited) {
				t.Fatalf("cut %d (%s): the guest powered off before /%s/", cuts+1, c.phase, c.trigger)
			}
			t.Fatal(err)
		}
		d := c.min + time.Duration(rng.Int64N(int64(c.max-c.min)+1))
		time.Sleep(d)
		cuts++
		h.logf("cut %d/%d: %s, %v after /%s/", cuts, len(plan), c.phase, d.Round(time.Millisecond), c.trigger)
		if h.vm != nil {
			h.powerCut()
		}
		h.afterCut(hashA)
	}
	if cuts < 10 {
		t.Fatalf("only %d power cuts", cuts)
	}
	h.slotHolds(partUSRB, a.USR["2.0.0"])
	sa, sb := h.slots()
	if !(sb.Successful && sb.Priority > sa.Priority && sa.Successful) {
		t.Fatalf("after the update: USR-A %v, USR-B %v; want B good and preferred, A good", sa, sb)
	}
	if h.partHash(partUSRA) != hashA {
		t.Fatal("USR-A (the active slot during the update) was written")
	}
	h.wantEvents("1.0.0:13/1", "1.0.0:3/1", "2.0.0:3/2 previousversion=1.0.0")
	t.Logf("scenario 4: %d power cuts, update complete, took %v", cuts, time.Since(start).Round(time.Second))
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
