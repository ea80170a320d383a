package vmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The version the scenario's package is built with, and its Debian form;
// the scenario's update.conf (no checks; the reboot manager runs: with
// strategy off it would exit at once).
const (
	pkgConf       = "SERVER=disabled\nREBOOT_STRATEGY=reboot\n"
	pkgVersion    = "v0.0.0-1-gvmtest"
	pkgDebVersion = "0.0.0+1.gvmtest-1"
)

// TestScenario6Package: the Debian package (`make deb`, scripts/mkdeb.sh)
// installed with dpkg -i on the 1.0.0 host, as an administrator would.
// The image already runs the units; the guest stops them first, so the
// package's postinst must enable (symlinks in /etc, deb-systemd-helper)
// and start them (deb-systemd-invoke). Then the package's own
// update_engine_client answers --version and reaches the restarted daemon.
// One boot; the guest half is guest/config/package.sh.
func TestScenario6Package(t *testing.T) {
	t.Parallel() // after the scenario 1→2→3 chain, two VMs at a time (make vmtest: -parallel 2)
	a := env(t)
	h := newHost(t, a, "6-package", a.BaseDisk, nil, pkgConf)
	deb := buildDeb(t, filepath.Dir(h.disk))
	if err := packageDisk(h.payloads, deb, pkgConf); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	h.powerOn()
	h.bootsOn("1.0.0", guidUSRA)
	if m := h.expect(`VMTEST pkg (installed|dpkg-failed.*|error.*)`, 5*time.Minute); m[1] != "installed" {
		t.Fatalf("dpkg -i in the guest: %s", m[1])
	}
	for _, u := range []string{"update-engine.service", "update-engine-reboot-manager.service"} {
		m := h.expect(`VMTEST pkg unit `+strings.ReplaceAll(u, ".", `\.`)+` (.*)`, 3*time.Minute)
		if strings.TrimSpace(m[1]) != "enabled=enabled active=active wants-link=yes" {
			t.Errorf("%s after dpkg -i: %s; want enabled, active, and its symlink in /etc/systemd/system/multi-user.target.wants", u, m[1])
		}
	}
	if m := h.expect(`VMTEST pkg version (.*)`, time.Minute); !strings.HasPrefix(m[1], "update_engine_client "+pkgVersion+" ") {
		t.Errorf("update_engine_client --version in the guest: %q; want the package's %s", m[1], pkgVersion)
	}
	if m := h.expect(`VMTEST pkg status (.*)`, 2*time.Minute); !strings.Contains(m[1], "CURRENT_OP=UPDATE_STATUS_IDLE") {
		t.Errorf("update_engine_client -status after the install: %q", m[1])
	}
	if m := h.expect(`VMTEST pkg dpkg (.*)`, time.Minute); strings.TrimSpace(m[1]) != "install ok installed "+pkgDebVersion {
		t.Errorf("dpkg-query: %q", m[1])
	}
	h.expect(`VMTEST pkg done`, time.Minute)
	h.powerCut()
	t.Logf("scenario 6 took %v", time.Since(start).Round(time.Second))
}

// buildDeb builds the amd64 package into dir with scripts/mkdeb.sh.
func buildDeb(t *testing.T, dir string) string {
	t.Helper()
	cmd := exec.Command("scripts/mkdeb.sh", "amd64", dir)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "VERSION="+pkgVersion, "DEB_COMPRESS=gzip")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/mkdeb.sh: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// packageDisk writes the scenario's payload disk (/dev/vdb in the guest):
// update.conf, early.sh, package.sh as harness.sh, and the package as
// update-engine.deb.
func packageDisk(img, deb, conf string) error {
	dir, err := os.MkdirTemp("", "vmtest-pkg-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "update.conf"), []byte(conf), 0o644); err != nil {
		return err
	}
	for src, dst := range map[string]string{"guest/config/early.sh": "early.sh", "guest/config/package.sh": "harness.sh", deb: "update-engine.deb"} {
		if out, err := exec.Command("cp", src, filepath.Join(dir, dst)).CombinedOutput(); err != nil {
			return fmt.Errorf("copy %s: %v: %s", src, err, out)
		}
	}
	fi, err := os.Stat(deb)
	if err != nil {
		return err
	}
	os.Remove(img)
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		return err
	}
	if err := os.Truncate(img, (fi.Size()*5/4+16*mib+mib-1)/mib*mib); err != nil {
		return err
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-d", dir, img).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4 payloads: %v: %s", err, out)
	}
	return nil
}
