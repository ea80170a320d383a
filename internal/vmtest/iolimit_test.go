package vmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ioLimitBPS is the scenario's write limit, and ioLimitImage the size of
// the image it installs. Under TCG on a loaded host (load 19 on 2 cores)
// the guest decoded and hashed the 286 MiB xz payload of 2.0.0 at only
// 1.7 MiB/s: the CPU, not the limit, set the rate. So the scenario
// installs its own small 2.0.0 (ext4 with the post-install program,
// mostly empty: ZERO and a few REPLACE_ZSTD operations, cheap to decode,
// every byte still written through the limit), at 2 MiB/s: 20 s of
// writing, far under what the CPU can feed.
const (
	ioLimitBPS   = 2 << 20
	ioLimitImage = 40 << 20
)

// TestScenarioIOLimit: on the guest's cgroup v2 host the shipped
// update-engine.service (Delegate=io) installs a full 2.0.0 update (a small
// image, see ioLimitBPS) under UPDATE_ENGINE_IO_WRITE_BPS=2 MiB/s from
// update.conf (REBOOT_STRATEGY=off: no reboot). While it runs the
// daemon is in the limit's group (…/update-engine.service/update_engine,
// io enabled in the service's cgroup.subtree_control, io.max set); the rate
// its own writes achieved (bytes over first-to-last write, logged when the
// limit is released) is within ±15% of the limit; `systemctl stop`
// leaves no group behind. Then the pkg/cgroup and internal/daemon I/O
// tests, built here with `go test -c`, run in the guest as units with
// Delegate=io and must pass there, not skip.
func TestScenarioIOLimit(t *testing.T) {
	t.Parallel() // after the scenario 1→2→3 chain, two VMs at a time (make vmtest: -parallel 2)
	a := env(t)
	start := time.Now()
	dir := t.TempDir()
	extra := []string{"guest/iolimit/after-update.sh", filepath.Join(filepath.Dir(a.Kernel), "modules", "loop.ko")}
	for name, pkg := range map[string]string{"cgroup.test": "../../pkg/cgroup", "daemon.test": "../daemon"} {
		out := filepath.Join(dir, name)
		cmd := exec.Command("go", "test", "-c", "-trimpath", "-o", out, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go test -c %s: %v\n%s", pkg, err, b)
		}
		extra = append(extra, out)
	}
	conf := serverConf("off") + fmt.Sprintf("UPDATE_ENGINE_IO_WRITE_BPS=%d\n", ioLimitBPS)
	h := newHost(t, a, "io-limit", a.BaseDisk, []string{smallPayload(t, a, dir)}, conf, extra...)
	t.Logf("test binaries built, disks ready in %v", time.Since(start).Round(time.Second))
	h.powerOn()
	h.bootsOn("1.0.0", guidUSRA)
	h.expect(`VMTEST healthy`, 3*time.Minute)
	h.expect(`update_engine\[\d+\]: .*msg="update applied; reboot needed"`, updateTimeout)

	running := h.expect(`VMTEST iolimit running (.*)`, 2*time.Minute)[1]
	for _, want := range []string{"cgroup=/system.slice/update-engine.service/update_engine ", "subtree=[io]",
		fmt.Sprintf("wbps=%d", ioLimitBPS)} {
		if !strings.Contains(running, want) {
			t.Errorf("while the daemon runs: %q; want %q", running, want)
		}
	}
	// update_engine_client -status --json shows the limit in force.
	if js := h.expect(`VMTEST iolimit json (.*)`, time.Minute)[1]; !strings.Contains(js, `"io_limit":"fixed"`) ||
		!strings.Contains(js, fmt.Sprintf(`"io_write_limit_bps":%d`, ioLimitBPS)) || strings.Contains(js, "io_limit_error") {
		t.Errorf("update_engine_client -status --json: %s; want the fixed limit of %d and no io_limit_error", js, ioLimitBPS)
	}
	stopped := h.expect(`VMTEST iolimit stopped (.*)`, 2*time.Minute)[1]
	field := func(k string) string {
		m := regexp.MustCompile(`\b` + k + `=(\S+)`).FindStringSubmatch(stopped)
		if m == nil {
			t.Fatalf("the daemon's release line %q has no %s", stopped, k)
		}
		return m[1]
	}
	if !strings.Contains(stopped, `msg="I/O limit released"`) {
		t.Fatalf("after systemctl stop the daemon logged %q; want the limit released", stopped)
	}
	rate, _ := strconv.ParseFloat(field("rate_bps"), 64)
	bytes, _ := strconv.ParseInt(field("bytes"), 10, 64)
	ratio := rate / ioLimitBPS
	t.Logf("the daemon wrote %d MiB in %s under a %d MiB/s limit: %.2f MiB/s (%.1f%% of the limit)",
		bytes>>20, field("span"), ioLimitBPS>>20, rate/(1<<20), 100*ratio)
	if bytes < ioLimitImage {
		t.Errorf("the daemon wrote %d bytes through the limit; want the whole %d-byte image", bytes, ioLimitImage)
	}
	if ratio < 0.85 || ratio > 1.15 {
		t.Errorf("measured write rate %.2f MiB/s is not within ±15%% of the %d MiB/s limit", rate/(1<<20), ioLimitBPS>>20)
	}
	if left := strings.TrimSpace(h.expect(`VMTEST iolimit left \[(.*)\]`, time.Minute)[1]); left != "" {
		t.Errorf("after systemctl stop these groups are left: %s", left)
	}

	h.expect(`VMTEST iolimit done`, 6*time.Minute)
	results := map[string]string{}
	for _, m := range h.vm.Lines(regexp.MustCompile(`VMTEST gotest (\w+): \s*--- (PASS|FAIL|SKIP): (\w+)`)) {
		results[m[1]+"."+m[3]] = m[2]
	}
	for _, m := range h.vm.Lines(regexp.MustCompile(`VMTEST gotest (\w+): exit=(\d+)`)) {
		if m[2] != "0" {
			t.Errorf("the %s test binary exited %s in the guest", m[1], m[2])
		}
	}
	for _, name := range []string{"cgroup.TestLimitOnLoopDevice", "cgroup.TestV2SharedCgroup", "daemon.TestIOLimit", "daemon.TestIOLimitUnapplied"} {
		if results[name] != "PASS" {
			t.Errorf("%s in the v2 guest: %q, want PASS", name, results[name])
		}
	}
	t.Logf("guest test results: %v", results)
	h.powerCut()
	t.Logf("scenario io-limit took %v", time.Since(start).Round(time.Second))
}

// smallPayload writes the scenario's 2.0.0: an ext4 image of ioLimitImage
// bytes holding only the post-install program, as a signed full payload
// (zstd) with its .json, into dir.
func smallPayload(t *testing.T, a *Artifacts, dir string) string {
	t.Helper()
	tree := filepath.Join(dir, "small-tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "postinst"), []byte("#!/bin/sh\necho \"VMTEST postinst target=$1 version=$NEW_VERSION\" >/dev/console\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "usr-2.0.0-small.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, ioLimitImage); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-d", tree, img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	out := filepath.Join(dir, "full-2.0.0-small.payload")
	if b, err := exec.Command(filepath.Join(a.Bin, "payload_generator"), "generate", "--key", filepath.Join(a.Dir, "key.pem"),
		"--new", img, "--version", "2.0.0", "--compression", "zstd", "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("payload_generator: %v: %s", err, b)
	}
	return out
}
