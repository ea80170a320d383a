package daemon

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/slot"
	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/omaha"
	"github.com/abupdate/update_engine/pkg/update1"
)

// failedAttempt asks for an update that must fail: it waits for the
// 3/0 event and IDLE, and returns the daemon's detail.
func failedAttempt(t *testing.T, w *omahaWorld, c *update1.Client) update1.Detail {
	t.Helper()
	before := strings.Count(w.events(), "3/0")
	if err := c.AttemptUpdate(t.Context()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(w.events(), "3/0") == before {
		if st, err := c.GetStatus(t.Context()); err == nil && st.CurrentOperation == "UPDATE_STATUS_UPDATED_NEED_REBOOT" {
			t.Fatalf("the update was installed: %+v", st)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no error event; events %q", w.events())
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitOp(t, c, 30*time.Second, "UPDATE_STATUS_IDLE")
	d, err := c.Detail(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// installs asks for an update that must install img into slot B and make
// it boot next.
func installs(t *testing.T, c *update1.Client, disk string, img []byte) {
	t.Helper()
	if err := c.AttemptUpdate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := waitOp(t, c, 60*time.Second, "UPDATE_STATUS_UPDATED_NEED_REBOOT", "UPDATE_STATUS_IDLE"); st.CurrentOperation != "UPDATE_STATUS_UPDATED_NEED_REBOOT" {
		d, _ := c.Detail(t.Context())
		t.Fatalf("not installed: %+v", d)
	}
	if !bytes.Equal(readSlot(t, disk, "B", len(img)), img) || nextBoot(t, disk) != "B" {
		t.Fatalf("slot B does not hold the image, or does not boot next (%s)", nextBoot(t, disk))
	}
}

// assertUntouched fails unless slot B still holds zeros (nothing was
// written) and is not bootable, and slot A boots next.
func assertUntouched(t *testing.T, disk string, n int) {
	t.Helper()
	if got := readSlot(t, disk, "B", n); !bytes.Equal(got, make([]byte, n)) {
		t.Fatal("slot B was written")
	}
	slots, _, err := slot.List(disk)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if s.Name == "B" && (s.Priority > 0 && (s.Tries > 0 || s.Successful)) {
			t.Fatalf("slot B is bootable: %+v", s)
		}
	}
	if nb := nextBoot(t, disk); nb != "A" {
		t.Fatalf("next boot %s", nb)
	}
}

// TestMissingKeyRefuses: with no payload public key the daemon refuses a
// correctly signed payload before writing (code 18, in the status and the
// event); once the key file appears, the next attempt, without a restart,
// installs the same payload.
func TestMissingKeyRefuses(t *testing.T) {
	w := newOmaha(t)
	img := image(2<<20, 40)
	w.publish("v2.bin", "2.0.0", img, false)
	disk := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: slotSize})
	h := newHost(t, disk)
	if err := os.Remove(h.key); err != nil {
		t.Fatal(err)
	}
	runDaemon(t, h.options(w.url()))
	c := client(t, h.bus)

	d := failedAttempt(t, w, c)
	code := int32(omaha.DownloadPayloadPubKeyVerificationError | omaha.FlagTestOmahaURL)
	if d.LastError != code || !strings.Contains(d.LastErrorMessage, "no payload public key") || !strings.Contains(d.LastErrorMessage, h.key) {
		t.Fatalf("detail %+v, want code %d and a message naming the missing key", d, code)
	}
	// Refused before the download: no 13/1, no payload request.
	if got, want := w.events(), fmt.Sprintf("3/2 previousversion=0.0.0.0, 3/0 errorcode=%d", code); got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	if r := w.rangeHeaders(); len(r) != 0 {
		t.Fatalf("the payload was requested %d times without a key to verify it", len(r))
	}
	assertUntouched(t, disk, len(img))

	h.installKey(t)
	installs(t, c, disk, img)
}

// TestUnsignedPayload: with the key installed an unsigned payload is
// refused; without a key it is refused too, unless the daemon runs with
// the insecure development switch.
func TestUnsignedPayload(t *testing.T) {
	for _, tc := range []struct {
		name     string
		key      bool
		insecure bool
		wantCode omaha.Code // 0: installed
	}{
		{"key installed", true, false, omaha.DownloadMetadataSignatureMissingError},
		{"no key", false, false, omaha.DownloadPayloadPubKeyVerificationError},
		{"key installed and insecure switch", true, true, omaha.DownloadMetadataSignatureMissingError},
		{"no key and insecure switch", false, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newOmaha(t)
			w.unsigned = true
			img := image(2<<20, 41)
			w.publish("v2.bin", "2.0.0", img, false)
			disk := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: slotSize})
			h := newHost(t, disk)
			if !tc.key {
				if err := os.Remove(h.key); err != nil {
					t.Fatal(err)
				}
			}
			o := h.options(w.url())
			o.InsecureAllowUnsignedPayloads = tc.insecure
			runDaemon(t, o)
			c := client(t, h.bus)
			if tc.wantCode == 0 {
				installs(t, c, disk, img)
				return
			}
			d := failedAttempt(t, w, c)
			if want := int32(tc.wantCode | omaha.FlagTestOmahaURL); d.LastError != want {
				t.Fatalf("last error %d (%s: %s), want %d", d.LastError, d.LastErrorName, d.LastErrorMessage, want)
			}
			assertUntouched(t, disk, len(img))
		})
	}
}

// TestLyingServerVersion: a correctly signed 2.0.0 payload that the
// server offers as 4.0.0 to a 3.0.0 host is refused before any write
// (code 12), with and without a TPM version floor at 3.0.0. With the
// floor, a payload that carries no version is refused too; the same
// payload offered honestly as 4.0.0 installs.
func TestLyingServerVersion(t *testing.T) {
	for _, floor := range []bool{false, true} {
		t.Run(map[bool]string{false: "no floor", true: "TPM floor"}[floor], func(t *testing.T) {
			w := newOmaha(t)
			old := image(2<<20, 42)
			w.publishAs("v4.bin", "4.0.0", "2.0.0", old, false, "", nil)
			disk := testenv.NewDisk(t, testenv.DiskSpec{SlotSize: slotSize})
			h := newHost(t, disk)
			o := h.options(w.url())
			o.Overrides["FLATCAR_RELEASE_VERSION"] = "3.0.0"
			if floor {
				o.TPM, o.RequireTPM = tpmWithFloor(t, "3.0.0").Addr, true
			}
			runDaemon(t, o)
			c := client(t, h.bus)

			d := failedAttempt(t, w, c)
			code := int32(omaha.DownloadPayloadVerificationError | omaha.FlagTestOmahaURL)
			if d.LastError != code || !strings.Contains(d.LastErrorMessage, `the payload is version "2.0.0", offered as "4.0.0"`) {
				t.Fatalf("detail %+v, want code %d (version mismatch)", d, code)
			}
			assertUntouched(t, disk, len(old))

			newImg := image(2<<20, 43)
			w.publishAs("v4.bin", "4.0.0", "", newImg, false, "", nil)
			if floor {
				d := failedAttempt(t, w, c)
				if d.LastError != code || !strings.Contains(d.LastErrorMessage, "carries no version") {
					t.Fatalf("unversioned payload under a floor: detail %+v, want code %d", d, code)
				}
				assertUntouched(t, disk, len(newImg))
			}

			w.publishAs("v4.bin", "4.0.0", "4.0.0", newImg, false, "", nil)
			installs(t, c, disk, newImg)
		})
	}
}
