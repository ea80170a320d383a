package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/abupdate/update_engine/internal/testenv"
)

// TestDeb checks the package as Debian sees it: lintian reports no error
// (warnings are overridden, each explained, in dist/debian/lintian-overrides);
// `dpkg --root` installs it into a throwaway root and runs its maintainer
// scripts there; the files land, the units are enabled the Debian way
// (deb-systemd-helper), the tmpfiles snippet ran, systemd-analyze verify
// passes on the installed units; and remove and purge undo it.
//
// dpkg runs the scripts with --force-script-chrootless and DPKG_ROOT set to
// the throwaway root (the root holds only this package, no shell to chroot
// into); the scripts, as dh_installsystemd's, pass the root on through
// deb-systemd-helper and systemd-tmpfiles --root, and start nothing there.
// --force-depends: dbus and systemd are not in the throwaway root.
func TestDeb(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "dpkg", "lintian", "systemd-analyze", "systemctl", "deb-systemd-helper", "systemd-tmpfiles")
	deb, tree := pkg(t)

	out, _ := exec.Command("lintian", "--tag-display-limit", "0", deb).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, "E:"):
			t.Errorf("lintian: %s", line)
		case strings.HasPrefix(line, "W:"):
			t.Logf("lintian (warning, not overridden): %s", line)
		}
	}

	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "etc/systemd/system"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dpkg := func(args ...string) {
		t.Helper()
		args = append([]string{"--root=" + root, "--force-script-chrootless", "--force-depends"}, args...)
		if out, err := exec.Command("dpkg", args...).CombinedOutput(); err != nil {
			t.Fatalf("dpkg %q: %v\n%s", args, err, out)
		}
	}
	dpkg("-i", deb)

	// Every file of the package landed, with its bytes.
	var files []string
	err := filepath.Walk(tree, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			rel, _ := filepath.Rel(tree, p)
			files = append(files, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"usr/sbin/update_engine", "usr/sbin/update_engine_client", "usr/sbin/update_engine_reboot_manager",
		"usr/bin/payload_generator", "usr/bin/omaha_devserver",
		"usr/lib/systemd/system/update-engine.service", "usr/lib/systemd/system/update-engine-reboot-manager.service",
		"usr/lib/systemd/system/update-engine-stub.service", "usr/share/dbus-1/system.d/com.coreos.update1.conf",
		"usr/lib/tmpfiles.d/update-engine.conf", "usr/share/doc/update-engine/update.conf.example",
		"usr/share/doc/update-engine/copyright", "usr/share/doc/update-engine/changelog.Debian.gz",
		"usr/share/bash-completion/completions/update_engine_client", "usr/share/bash-completion/completions/payload_generator",
		"etc/default/update-engine",
	} {
		if !strings.Contains("\n"+strings.Join(files, "\n")+"\n", "\n"+want+"\n") {
			t.Errorf("the package lacks %s", want)
		}
	}
	for _, f := range files {
		a, err1 := os.ReadFile(filepath.Join(tree, f))
		b, err2 := os.ReadFile(filepath.Join(root, f))
		if err1 != nil || err2 != nil || string(a) != string(b) {
			t.Errorf("%s: not installed as packaged (%v, %v)", f, err1, err2)
		}
	}
	if conff, err := exec.Command("dpkg-query", "--root="+root, "-W", "-f=${Conffiles}", "update-engine").Output(); err != nil || !strings.Contains(string(conff), "/etc/default/update-engine") {
		t.Errorf("conffiles: %v %q", err, conff)
	}

	// The maintainer scripts: units enabled (the stub, which conflicts
	// with update-engine.service, is not), tmpfiles created.
	enabled := func(unit string) string {
		out, _ := exec.Command("systemctl", "--root="+root, "is-enabled", unit).Output()
		return strings.TrimSpace(string(out))
	}
	for unit, want := range map[string]string{
		"update-engine.service": "enabled", "update-engine-reboot-manager.service": "enabled", "update-engine-stub.service": "disabled",
	} {
		if got := enabled(unit); got != want {
			t.Errorf("systemctl is-enabled %s = %q, want %q", unit, got, want)
		}
	}
	for _, p := range []string{"etc/flatcar/update.conf", "var/lib/update_engine/prefs"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("tmpfiles: %v", err)
		}
	}

	// systemd-analyze verify on the installed units, one at a time (the
	// stub and the daemon own the same bus name, as they should). As in
	// internal/daemon's TestDistFiles, only complaints naming our files
	// count; the ExecStart binaries are checked by path on this host, so
	// "not executable" is expected there.
	for _, u := range []string{"update-engine.service", "update-engine-reboot-manager.service", "update-engine-stub.service"} {
		path := filepath.Join(root, "usr/lib/systemd/system", u)
		out, _ := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if strings.Contains(line, root) && !strings.Contains(line, "is not executable: No such file or directory") {
				t.Errorf("systemd-analyze verify %s: %s", u, line)
			}
		}
	}

	// Remove keeps the conffile and masks nothing the admin did not; purge
	// leaves no enablement behind.
	dpkg("-r", "update-engine")
	if _, err := os.Stat(filepath.Join(root, "usr/sbin/update_engine")); !os.IsNotExist(err) {
		t.Errorf("after remove: update_engine still there (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/default/update-engine")); err != nil {
		t.Errorf("after remove the conffile must stay: %v", err)
	}
	dpkg("-P", "update-engine")
	for _, p := range []string{"etc/default/update-engine", "etc/systemd/system/multi-user.target.wants/update-engine.service"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("after purge %s is still there (%v)", p, err)
		}
	}
}
