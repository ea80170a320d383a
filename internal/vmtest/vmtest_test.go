package vmtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abupdate/update_engine/pkg/gpt"
	"github.com/abupdate/update_engine/pkg/omaha/server"
)

var (
	buildOnce sync.Once
	built     *Artifacts
	buildErr  error
	accel     string
)

// env builds (or finds cached) images once per test binary.
func env(t *testing.T) *Artifacts {
	t.Helper()
	if os.Getenv("UE_VMTEST") == "" {
		t.Skip("whole-host VM test: run `make vmtest` (UE_VMTEST=1; root, qemu-system-x86, mmdebstrap, busybox-static)")
	}
	if os.Geteuid() != 0 {
		t.Skip("vmtest needs root (mmdebstrap, mkfs.ext4 -d with ownership)")
	}
	var missing []string
	for _, c := range []struct{ cmd, pkg string }{
		{"qemu-system-x86_64", "qemu-system-x86"}, {"mmdebstrap", "mmdebstrap"}, {"busybox", "busybox-static"},
		{"sgdisk", "gdisk"}, {"mkfs.ext4", "e2fsprogs"}, {"debugfs", "e2fsprogs"}, {"dpkg-deb", "dpkg"},
	} {
		if _, err := exec.LookPath(c.cmd); err != nil {
			missing = append(missing, c.pkg)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("vmtest needs: apt-get install -y %s (.ci/run installs them)", strings.Join(missing, " "))
	}
	buildOnce.Do(func() {
		start := time.Now()
		repo, err := filepath.Abs("../..")
		if err != nil {
			buildErr = err
			return
		}
		built, buildErr = Build(t.Logf, repo)
		if buildErr == nil {
			accel = os.Getenv("UE_VMTEST_ACCEL")
			if accel == "" {
				accel = Accel(built.Kernel, built.Initrd, t.Logf)
			}
		}
		t.Logf("vmtest: images ready in %v (accelerator %s)", time.Since(start).Round(time.Second), accel)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// host is one scenario's machine: its disk, its payload disk, its serial
// log, and the power-ons so far.
type host struct {
	t        *testing.T
	a        *Artifacts
	disk     string
	payloads string
	serial   *os.File
	vm       *VM
	boots    int
	mu       sync.Mutex  // guards events and offers (appended by the serial reader)
	events   []eventLine // Omaha events the server in the guest logged, from the serial console
	offers   []string    // payloads the server offered
}

type eventLine struct {
	version string
	ev      server.RecordedEvent
}

func (e eventLine) String() string { return e.version + ":" + e.ev.String() }

func outDir(t *testing.T) string {
	if d := os.Getenv("UE_VMTEST_OUT"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	runs := filepath.Join(cacheDir(), "runs")
	d := filepath.Join(runs, time.Now().UTC().Format("20060102T150405"))
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	// Earlier runs keep their serial logs (the last five) but not their
	// disks (~3 GB a run).
	old, _ := filepath.Glob(filepath.Join(runs, "2*T*"))
	for i, r := range old {
		switch {
		case r == d:
		case i < len(old)-5:
			os.RemoveAll(r)
		default:
			imgs, _ := filepath.Glob(filepath.Join(r, "*", "*.img"))
			for _, img := range imgs {
				os.Remove(img)
			}
		}
	}
	return d
}

var runDir struct {
	once sync.Once
	dir  string
}

// newHost makes a scenario's disk (a copy of from) and payload disk; extra
// files go onto the payload disk too (by their base names).
func newHost(t *testing.T, a *Artifacts, name, from string, payloads []string, conf string, extra ...string) *host {
	t.Helper()
	runDir.once.Do(func() { runDir.dir = outDir(t) })
	dir := filepath.Join(runDir.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	h := &host{t: t, a: a, disk: filepath.Join(dir, "disk.img"), payloads: filepath.Join(dir, "payloads.img")}
	if err := exec.Command("cp", "--sparse=always", from, h.disk).Run(); err != nil {
		t.Fatalf("copy disk: %v", err)
	}
	if err := payloadDisk(h.payloads, filepath.Join(dir, "payloads"), payloads, conf, extra...); err != nil {
		t.Fatal(err)
	}
	var err error
	if h.serial, err = os.Create(filepath.Join(dir, "serial.log")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if h.vm != nil {
			h.vm.Kill()
		}
		h.serial.Close()
		if t.Failed() {
			h.dumpSerial()
		}
	})
	t.Logf("%s: disk %s, serial log %s", name, h.disk, h.serial.Name())
	return h
}

// dumpSerial prints the end of the guest's serial log into the test log.
func (h *host) dumpSerial() {
	b, err := os.ReadFile(h.serial.Name())
	if err != nil {
		h.t.Logf("serial log: %v", err)
		return
	}
	lines := strings.Split(string(b), "\n")
	const keep = 400
	if len(lines) > keep {
		h.t.Logf("serial log %s (last %d of %d lines):", h.serial.Name(), keep, len(lines))
		lines = lines[len(lines)-keep:]
	} else {
		h.t.Logf("serial log %s:", h.serial.Name())
	}
	h.t.Log("\n" + strings.Join(lines, "\n"))
}

// payloadDisk writes an ext4 image holding the payloads (with their .json),
// the scenario's update.conf and any extra files.
func payloadDisk(img, dir string, payloads []string, conf string, extra ...string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var size int64 = 16 * mib
	for _, p := range payloads {
		for _, f := range []string{p, p + ".json"} {
			if err := exec.Command("cp", f, dir).Run(); err != nil {
				return fmt.Errorf("copy %s: %v", f, err)
			}
			if fi, err := os.Stat(f); err == nil {
				size += fi.Size() + 4096
			}
		}
	}
	for _, f := range extra {
		if err := exec.Command("cp", "-a", f, dir).Run(); err != nil {
			return fmt.Errorf("copy %s: %v", f, err)
		}
		if fi, err := os.Stat(f); err == nil {
			size += fi.Size() + 4096
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "update.conf"), []byte(conf), 0o644); err != nil {
		return err
	}
	for _, f := range []string{"harness.sh", "early.sh"} {
		if err := exec.Command("cp", "-a", "guest/config/"+f, dir).Run(); err != nil {
			return fmt.Errorf("copy %s: %v", f, err)
		}
	}
	size = (size*5/4 + mib - 1) / mib * mib
	os.Remove(img)
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		return err
	}
	if err := os.Truncate(img, size); err != nil {
		return err
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-d", dir, img).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4 payloads: %v: %s", err, out)
	}
	return os.RemoveAll(dir)
}

func (h *host) logf(format string, args ...any) {
	h.t.Helper()
	msg := fmt.Sprintf(format, args...)
	h.t.Log(msg)
	fmt.Fprintf(h.serial, "\n===== vmtest: %s =====\n", msg)
}

// powerOn starts the guest.
func (h *host) powerOn() {
	h.t.Helper()
	h.boots++
	h.logf("power on #%d (%s)", h.boots, time.Now().UTC().Format("15:04:05"))
	vm, err := Start(VMConfig{Accel: accel, Kernel: h.a.Kernel, Initrd: h.a.Initrd, Disk: h.disk, Payloads: h.payloads, Serial: &eventTap{h: h}})
	if err != nil {
		h.t.Fatal(err)
	}
	h.vm = vm
}

// powerCut kills QEMU (kill -9).
func (h *host) powerCut() {
	h.t.Helper()
	h.vm.Kill()
	h.vm = nil
	h.logf("power cut (kill -9 of QEMU)")
}

// waitPowerOff waits for the guest to reboot (QEMU exits with -no-reboot).
func (h *host) waitPowerOff(timeout time.Duration) {
	h.t.Helper()
	if err := h.vm.WaitExit(timeout); err != nil {
		h.t.Fatal(err)
	}
	h.vm = nil
	h.logf("the guest rebooted (QEMU exited)")
}

// expect waits for a serial line; it fails the test on timeout.
func (h *host) expect(pattern string, timeout time.Duration) []string {
	h.t.Helper()
	m, err := h.vm.Expect(regexp.MustCompile(pattern), timeout)
	if err != nil {
		h.t.Fatal(err)
	}
	return m
}

// eventTap writes serial lines to the log and picks out the Omaha records
// the guest harness echoes ("VMTEST omaha {json}").
type eventTap struct {
	h *host
}

var omahaLine = regexp.MustCompile(`VMTEST omaha (\{.*\})\s*$`)

func (e *eventTap) Write(p []byte) (int, error) {
	e.h.mu.Lock()
	defer e.h.mu.Unlock()
	if _, err := e.h.serial.Write(p); err != nil {
		return 0, err
	}
	if m := omahaLine.FindSubmatch(p); m != nil {
		var rec server.Record
		if json.Unmarshal(m[1], &rec) == nil {
			if rec.Offered != "" {
				e.h.offers = append(e.h.offers, rec.Offered)
			}
			for _, ev := range rec.Events {
				e.h.events = append(e.h.events, eventLine{version: rec.Version, ev: ev})
			}
		}
	}
	return len(p), nil
}

func (h *host) offered(file string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, o := range h.offers {
		if o == file {
			return true
		}
	}
	return false
}

func (h *host) eventsCopy() []eventLine {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]eventLine(nil), h.events...)
}

func (h *host) eventStrings() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var s []string
	for _, e := range h.events {
		s = append(s, e.String())
	}
	return s
}

// wantEvents checks that the server saw each of want ("version:type/result
// [errorcode=N] [previousversion=V]"; error codes compared without the
// flag bits) in this order, other events allowed in between.
func (h *host) wantEvents(want ...string) {
	h.t.Helper()
	got := h.eventStrings()
	i := 0
	for _, e := range h.eventsCopy() {
		s := e.version + ":" + e.ev.String()
		if e.ev.ErrorCode != nil {
			c := *e.ev.ErrorCode & 0x0FFFFFFF
			ev := e.ev
			ev.ErrorCode = &c
			s = e.version + ":" + ev.String()
		}
		if i < len(want) && s == want[i] {
			i++
		}
	}
	if i < len(want) {
		h.t.Fatalf("the Omaha server saw %q; missing %q (in order, from %q)", got, want[i], want)
	}
	h.t.Logf("Omaha events: %s", strings.Join(got, ", "))
}

// slotState is the A/B bits of one partition, read from the disk image.
type slotState struct {
	Priority, Tries int
	Successful      bool
}

func (s slotState) String() string {
	return fmt.Sprintf("priority=%d tries=%d successful=%v", s.Priority, s.Tries, s.Successful)
}

// slots reads the GPT of the disk image with pkg/gpt and checks it with
// sgdisk -v.
func (h *host) slots() (a, b slotState) {
	h.t.Helper()
	d, err := gpt.Open(h.disk, os.O_RDONLY, 512)
	if err != nil {
		h.t.Fatal(err)
	}
	defer d.Close()
	tab, rep, err := d.Read()
	if err != nil {
		h.t.Fatalf("GPT of %s: %v", h.disk, err)
	}
	if rep.NeedsRepair() {
		h.t.Errorf("GPT of %s needs repair: %v", h.disk, rep)
	}
	st := func(i int) slotState {
		e := tab.Entries[i-1]
		return slotState{e.Priority(), e.Tries(), e.Successful()}
	}
	out, _ := exec.Command("sgdisk", "-v", h.disk).CombinedOutput()
	if !strings.Contains(string(out), "No problems found.") {
		h.t.Errorf("sgdisk -v %s:\n%s", h.disk, out)
	}
	a, b = st(partUSRA), st(partUSRB)
	h.t.Logf("GPT on the host: USR-A %v; USR-B %v", a, b)
	return a, b
}

// partHash is the SHA-256 of partition n's bytes in the disk image.
func (h *host) partHash(n int) string {
	h.t.Helper()
	off, size := h.partExtent(n)
	f, err := os.Open(h.disk)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	s := sha256.New()
	if _, err := io.Copy(s, io.NewSectionReader(f, off, size)); err != nil {
		h.t.Fatal(err)
	}
	return fmt.Sprintf("%x", s.Sum(nil))
}

func (h *host) partExtent(n int) (off, size int64) {
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
	e := tab.Entries[n-1]
	return int64(e.FirstLBA) * 512, int64(e.LastLBA-e.FirstLBA+1) * 512
}

// slotHolds checks that partition n starts with the bytes of image.
func (h *host) slotHolds(n int, image string) {
	h.t.Helper()
	want, err := os.ReadFile(image)
	if err != nil {
		h.t.Fatal(err)
	}
	off, _ := h.partExtent(n)
	f, err := os.Open(h.disk)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, len(want))
	if _, err := f.ReadAt(got, off); err != nil {
		h.t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		h.t.Fatalf("partition %d does not hold %s", n, filepath.Base(image))
	}
}

// rootFile reads a file of the guest's ROOT file system from the disk
// image (debugfs on the partition's offset).
func (h *host) rootFile(path string) string {
	h.t.Helper()
	off, _ := h.partExtent(partROOT)
	out, err := exec.Command("debugfs", "-R", "cat "+path, fmt.Sprintf("%s?offset=%d", h.disk, off)).Output()
	if err != nil {
		h.t.Fatalf("debugfs cat %s: %v", path, err)
	}
	return string(out)
}

// rootEvents are the events in the Omaha server's log on ROOT.
func (h *host) rootEvents() []string {
	h.t.Helper()
	var s []string
	for _, l := range strings.Split(h.rootFile("/var/lib/vmtest/omaha.jsonl"), "\n") {
		var rec server.Record
		if json.Unmarshal([]byte(l), &rec) != nil {
			continue
		}
		for _, ev := range rec.Events {
			s = append(s, rec.Version+":"+ev.String())
		}
	}
	return s
}

const (
	bootTimeout   = 4 * time.Minute // power on → harness line, TCG, shared CPU
	updateTimeout = 8 * time.Minute
)

func serverConf(strategy string) string {
	return "SERVER=http://127.0.0.1:8080/v1/update/\nREBOOT_STRATEGY=" + strategy + "\n"
}

// bootsOn waits for the harness's first line and checks the version and
// slot it reports.
func (h *host) bootsOn(version string, part gpt.GUID) {
	h.t.Helper()
	m := h.expect(`VMTEST boot version=(\S+) partuuid=(\S+)`, bootTimeout)
	if m[1] != version || m[2] != part.String() {
		h.t.Fatalf("booted version %s from %s; want %s from %s", m[1], m[2], version, part)
	}
	h.logf("booted %s from %s", version, part)
}

var scenario1 struct {
	disk string // the disk after scenario 1: 2.0.0 good on USR-B, 1.0.0 on USR-A
}

// updateAndReboot drives one update from the booted version: health gate,
// check, download, apply, flip, then the reboot manager reboots.
func (h *host) updateAndReboot() {
	h.t.Helper()
	h.expect(`VMTEST healthy`, 3*time.Minute)
	h.expect(`update_engine\[\d+\]: .*msg="update applied; reboot needed"`, updateTimeout)
	h.waitPowerOff(3 * time.Minute)
}

func TestScenario1FullUpdate(t *testing.T) {
	a := env(t)
	h := newHost(t, a, "1-full-update", a.BaseDisk, []string{a.Payloads["full-2.0.0"]}, serverConf("reboot"))
	hashA := h.partHash(partUSRA)
	start := time.Now()
	h.powerOn()
	h.bootsOn("1.0.0", guidUSRA)
	h.updateAndReboot()
	if got := h.partHash(partUSRA); got != hashA {
		t.Fatal("USR-A (booted) was written during the update")
	}
	h.slotHolds(partUSRB, a.USR["2.0.0"])
	sa, sb := h.slots()
	if !(sb.Priority > sa.Priority && sb.Tries == 1 && !sb.Successful && sa.Successful) {
		t.Fatalf("after the update: USR-A %v, USR-B %v; want B preferred with one try, not yet successful", sa, sb)
	}

	h.powerOn()
	h.bootsOn("2.0.0", guidUSRB)
	h.expect(`VMTEST healthy`, 3*time.Minute)
	h.expect(`VMTEST checked`, 3*time.Minute)
	h.powerCut()
	sa, sb = h.slots()
	if !(sb.Successful && sb.Tries == 0 && sb.Priority > sa.Priority) {
		t.Fatalf("after booting 2.0.0: USR-B %v (USR-A %v); want B good and preferred", sb, sa)
	}
	want := []string{"1.0.0:13/1", "1.0.0:14/1", "1.0.0:3/1", "2.0.0:3/2 previousversion=1.0.0"}
	h.wantEvents(want...)
	if got := strings.Join(h.rootEvents(), ", "); !containsInOrder(h.rootEvents(), want) {
		t.Fatalf("the Omaha log on ROOT holds %s; want %q in order", got, want)
	}
	t.Logf("scenario 1 took %v", time.Since(start).Round(time.Second))
	scenario1.disk = filepath.Join(filepath.Dir(h.disk), "disk-after.img")
	if err := exec.Command("cp", "--sparse=always", h.disk, scenario1.disk).Run(); err != nil {
		t.Fatal(err)
	}
}

func containsInOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// afterScenario1 is the disk scenario 1 left: 2.0.0 good on USR-B.
func afterScenario1(t *testing.T) string {
	t.Helper()
	if scenario1.disk == "" {
		t.Skip("needs the disk scenario 1 leaves (2.0.0 on USR-B); run the scenarios together: make vmtest")
	}
	return scenario1.disk
}

func TestScenario2DeltaUpdate(t *testing.T) {
	a := env(t)
	h := newHost(t, a, "2-delta-update", afterScenario1(t), []string{a.Payloads["delta-3.0.0"]}, serverConf("reboot"))
	hashB := h.partHash(partUSRB)
	start := time.Now()
	h.powerOn()
	h.bootsOn("2.0.0", guidUSRB)
	h.updateAndReboot()
	if h.partHash(partUSRB) != hashB {
		t.Fatal("USR-B (booted, the delta's source) was written during the update")
	}
	h.slotHolds(partUSRA, a.USR["3.0.0"])
	sa, sb := h.slots()
	if !(sa.Priority > sb.Priority && sa.Tries == 1 && !sa.Successful && sb.Successful) {
		t.Fatalf("after the update: USR-A %v, USR-B %v; want A preferred with one try, not yet successful", sa, sb)
	}
	h.powerOn()
	h.bootsOn("3.0.0", guidUSRA)
	h.expect(`VMTEST healthy`, 3*time.Minute)
	h.expect(`VMTEST checked`, 3*time.Minute)
	h.powerCut()
	sa, sb = h.slots()
	if !(sa.Successful && sa.Tries == 0 && sa.Priority > sb.Priority) {
		t.Fatalf("after booting 3.0.0: USR-A %v (USR-B %v); want A good and preferred", sa, sb)
	}
	h.wantEvents("2.0.0:13/1", "2.0.0:14/1", "2.0.0:3/1", "3.0.0:3/2 previousversion=2.0.0")
	if !h.offered("delta-3.0.0.payload") {
		t.Fatal("the server never offered the delta payload")
	}
	t.Logf("scenario 2 took %v", time.Since(start).Round(time.Second))
}

func TestScenario3BadImageFallsBack(t *testing.T) {
	a := env(t)
	h := newHost(t, a, "3-bad-image", afterScenario1(t), []string{a.Payloads["delta-3.0.0-bad"]}, serverConf("reboot"))
	start := time.Now()
	h.powerOn()
	h.bootsOn("2.0.0", guidUSRB)
	h.updateAndReboot()
	h.slotHolds(partUSRA, a.USR["3.0.0-bad"])

	h.powerOn()
	h.bootsOn("3.0.0", guidUSRA)
	h.expect(`msg="booted slot not marked good"`, 2*time.Minute)
	h.expect(`VMTEST unhealthy`, time.Minute)
	if len(h.vm.Lines(regexp.MustCompile(`VMTEST app: this image is broken`))) == 0 {
		t.Fatal("the health gate failed, but not because of the broken application unit")
	}
	// A watchdog resets the machine that never became healthy.
	h.powerCut()
	sa, sb := h.slots()
	if sa.Successful || sa.Tries != 0 {
		t.Fatalf("the bad 3.0.0 on USR-A after its one try: %v; want tries=0, successful=0", sa)
	}
	if !sb.Successful {
		t.Fatalf("USR-B (2.0.0) lost its successful bit: %v", sb)
	}

	h.powerOn()
	h.bootsOn("2.0.0", guidUSRB)
	h.expect(`VMTEST healthy`, 3*time.Minute)
	h.expect(`VMTEST omaha .*"eventtype":3,"eventresult":0,"errorcode":\d+`, 3*time.Minute)
	h.powerCut()
	h.wantEvents("2.0.0:13/1", "2.0.0:14/1", "2.0.0:3/1", "2.0.0:3/0 errorcode=44")
	for _, e := range h.eventsCopy() {
		if e.version == "3.0.0" && e.ev.Type == 3 && e.ev.Result == 2 {
			t.Fatalf("the bad 3.0.0 reported a successful boot (3/2): %s", h.eventStrings())
		}
	}
	sa, sb = h.slots()
	if sa.Successful {
		t.Fatalf("the bad 3.0.0 on USR-A was marked good: %v", sa)
	}
	if !sb.Successful {
		t.Fatalf("USR-B (2.0.0, booted again) is not marked good: %v", sb)
	}
	t.Logf("scenario 3 took %v", time.Since(start).Round(time.Second))
}

func TestScenario4PowerCuts(t *testing.T) {
	t.Parallel() // after the scenario 1→2→3 chain, two VMs at a time (make vmtest: -parallel 2)
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
			// Every planned cut done: let the update finish (a restart
			// may finish a verified payload before the harness's lines).
			h.vm.Rewind()
			h.expect(`update_engine\[\d+\]: .*msg="update applied; reboot needed"`, updateTimeout)
			h.waitPowerOff(3 * time.Minute)
			h.afterCut(hashA)
			continue
		}
		c := plan[cuts]
		// A cut that landed after verification leaves a verified payload
		// that the next boot finishes without downloading it again: a
		// download or verify cut then waits for whichever phase comes
		// first, and is timed as a cut in that phase.
		// A restart that finishes a verified payload runs post-install
		// as the daemon starts, before the harness's boot line: search
		// this boot's lines from the first.
		read := h.vm.Rewind()
		m, err := h.vm.Expect(regexp.MustCompile(laterPhases(c.trigger)), updateTimeout)
		stale := err == nil && h.vm.Pos() <= read // seen before we looked: cut at once
		if err != nil {
			if errors.Is(err, ErrExited) {
				t.Fatalf("cut %d (%s): the guest powered off before /%s/", cuts+1, c.phase, c.trigger)
			}
			t.Fatal(err)
		}
		if c.trigger != trigPostinst && regexp.MustCompile(trigPostinst).MatchString(m[0]) {
			c = cut{"post-install (the payload was verified before the last cut: finished without a download)", trigPostinst, 0, 1800 * time.Millisecond}
		} else if c.trigger == trigDownload && regexp.MustCompile(trigVerify).MatchString(m[0]) {
			c = cut{"verify", trigVerify, 0, time.Second}
		}
		d := c.min + time.Duration(rng.Int64N(int64(c.max-c.min)+1))
		phase := c.phase
		if stale {
			d, phase = 0, c.phase+", at once (its line came before the harness's boot line)"
		}
		if c.trigger == trigDownload {
			// The download may end before the delay does (how fast depends
			// on the host's load): then cut as verification starts, so
			// only the plan's last cut can come after the flip.
			t0 := time.Now()
			if _, err := h.vm.Expect(regexp.MustCompile(trigVerify), d); err == nil {
				d, phase = time.Since(t0), "verify (the download ended before the planned delay)"
			}
		} else {
			time.Sleep(d)
		}
		cuts++
		h.logf("cut %d/%d: %s, %v after /%s/", cuts, len(plan), phase, d.Round(time.Millisecond), c.trigger)
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

func TestScenario5EtcdLock(t *testing.T) {
	t.Parallel() // after the scenario 1→2→3 chain, two VMs at a time (make vmtest: -parallel 2)
	a := env(t)
	conf := serverConf("etcd-lock") + "LOCKSMITHD_ENDPOINT=http://127.0.0.1:2379\n"
	h := newHost(t, a, "5-etcd-lock", afterScenario1(t), []string{a.Payloads["delta-3.0.0"]}, conf)
	start := time.Now()
	h.powerOn()
	// vmtest-early.service reports the lock before update_engine starts,
	// so before the harness's first line.
	if m := h.expect(`VMTEST lock early (.*)`, bootTimeout); !strings.Contains(m[1], "Available: 1") {
		t.Fatalf("before the update the reboot lock is %q; want it free", m[1])
	}
	h.bootsOn("2.0.0", guidUSRB)
	h.expect(`VMTEST healthy`, 3*time.Minute)
	h.expect(`update_engine\[\d+\]: .*msg="update applied; reboot needed"`, updateTimeout)
	h.expect(`update_engine_reboot_manager\[\d+\]: update "3.0.0" needs a reboot \(strategy etcd-lock\)`, time.Minute)
	h.waitPowerOff(3 * time.Minute)

	h.powerOn()
	// Before the reboot manager starts in the new boot, the lock is still
	// held by this machine...
	m := h.expect(`VMTEST lock early (.*)`, bootTimeout)
	if !strings.Contains(m[1], "Available: 0") || !strings.Contains(m[1], machineID) {
		t.Fatalf("across the reboot the lock is %q; want it held by %s", m[1], machineID)
	}
	h.bootsOn("3.0.0", guidUSRA)
	// ...and the new boot's reboot manager releases it.
	if m := h.expect(`VMTEST lock afterboot (.*)`, 3*time.Minute); !strings.Contains(m[1], "Available: 1") || strings.Contains(m[1], machineID) {
		t.Fatalf("after the new boot the lock is %q; want it released", m[1])
	}
	if len(h.vm.Lines(regexp.MustCompile(`update_engine_reboot_manager\[\d+\]: .*releasing the reboot lock`))) == 0 {
		t.Fatal("the lock is free, but the reboot manager did not say it released it")
	}
	h.powerCut()
	sa, _ := h.slots()
	if !sa.Successful {
		t.Fatalf("USR-A (3.0.0) not marked good: %v", sa)
	}
	t.Logf("scenario 5 took %v", time.Since(start).Round(time.Second))
}
