package daemon

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDistFiles guards the compatibility facts of the shipped unit and
// policy (SPEC.md section 1a).
func TestDistFiles(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"../../dist/update-engine.service", []string{"Type=dbus", "BusName=com.coreos.update1", "-foreground -logtostderr", "Restart=always", "RestartSec=30", "ConditionVirtualization=!container", "ConditionPathExists=!/usr/.noupdate", "Delegate=io"}},
		{"../../dist/update-engine-stub.service", []string{"Type=dbus", "BusName=com.coreos.update1", "ConditionPathExists=/usr/.noupdate", "ExecStart=/usr/sbin/update_engine -stub", "Conflicts=update-engine.service"}},
		{"../../dist/com.coreos.update1.conf", []string{`<allow own="com.coreos.update1"/>`, `user="core"`, `send_member="AttemptUpdate"`, `<deny send_destination="com.coreos.update1"/>`}},
		{"../../dist/update-engine.tmpfiles.conf", []string{"/var/lib/update_engine/prefs", "/etc/flatcar/update.conf"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("%s lacks %q", tt.file, w)
				}
			}
		})
	}
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		// Copies, so that systemd does not look for drop-ins in the tree.
		// Only complaints about our files count (they carry the file's
		// path and line), except that the binaries are not installed.
		dir := t.TempDir()
		var units []string
		for _, u := range []string{"update-engine.service", "update-engine-reboot-manager.service", "update-engine-stub.service"} {
			b, err := os.ReadFile("../../dist/" + u)
			if err != nil {
				t.Fatal(err)
			}
			units = append(units, filepath.Join(dir, u))
			if err := os.WriteFile(units[len(units)-1], b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		out, _ := exec.Command("systemd-analyze", append([]string{"verify"}, units...)...).CombinedOutput()
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if strings.Contains(line, dir) && !strings.Contains(line, "is not executable: No such file or directory") {
				t.Errorf("systemd-analyze verify: %s", line)
			}
		}
	}
	if _, err := exec.LookPath("xmllint"); err == nil {
		if out, err := exec.Command("xmllint", "--noout", "../../dist/com.coreos.update1.conf").CombinedOutput(); err != nil {
			t.Errorf("policy is not well-formed XML: %v: %s", err, out)
		}
	}
}
