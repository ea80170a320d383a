package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// tree writes files (path → content) under a new root.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestDefaults(t *testing.T) {
	c, err := Load(Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Group: "stable", Server: "https://public.update.flatcar-linux.net/v1/update/",
		AppID:  "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}",
		PubKey: "/usr/share/update_engine/update-payload-key.pub.pem", PrefsDir: "/var/lib/update_engine/prefs",
		HealthDelay: time.Minute, HealthTimeout: 5 * time.Minute,
		sources: map[string]string{},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
	}
	if !c.IsDefaultServer() || c.Source("GROUP") != "default" {
		t.Errorf("IsDefaultServer %v, Source(GROUP) %q", c.IsDefaultServer(), c.Source("GROUP"))
	}
}

func TestSearchOrder(t *testing.T) {
	tests := []struct {
		name      string
		files     map[string]string
		overrides map[string]string
		get       func(*Config) string
		want      string
		source    string // key and expected Source, "key=source"
	}{
		{
			name: "etc flatcar beats vendor default",
			files: map[string]string{
				"/etc/flatcar/update.conf":       "GROUP=beta\n",
				"/usr/share/flatcar/update.conf": "GROUP=stable\nSERVER=https://x.example/v1/update/\n",
			},
			get: func(c *Config) string { return c.Group + " " + c.Server }, want: "beta https://x.example/v1/update/",
			source: "GROUP=/etc/flatcar/update.conf:1",
		},
		{
			name: "key missing in first file falls through",
			files: map[string]string{
				"/etc/flatcar/update.conf":       "SERVER=http://127.0.0.1:8000/v1/update/\n",
				"/usr/share/flatcar/update.conf": "# channel\nGROUP=alpha\n",
			},
			get: func(c *Config) string { return c.Group }, want: "alpha",
			source: "GROUP=/usr/share/flatcar/update.conf:2",
		},
		{
			name: "coreos etc beats flatcar vendor",
			files: map[string]string{
				"/etc/coreos/update.conf":        "GROUP=coreos-user\n",
				"/usr/share/flatcar/update.conf": "GROUP=stable\n",
			},
			get: func(c *Config) string { return c.Group }, want: "coreos-user",
		},
		{
			name: "flatcar etc beats coreos etc",
			files: map[string]string{
				"/etc/flatcar/update.conf": "GROUP=f\n",
				"/etc/coreos/update.conf":  "GROUP=c\n",
			},
			get: func(c *Config) string { return c.Group }, want: "f",
		},
		{
			name: "release file",
			files: map[string]string{"/usr/share/flatcar/release": "FLATCAR_RELEASE_VERSION=3815.2.0\n" +
				"FLATCAR_RELEASE_BOARD=amd64-usr\nFLATCAR_RELEASE_APPID={e96281a6-d1af-4bde-9a0a-97b76e56dc57}\n"},
			get:    func(c *Config) string { return c.ReleaseVersion + " " + c.Board + " " + c.AppID },
			want:   "3815.2.0 amd64-usr {e96281a6-d1af-4bde-9a0a-97b76e56dc57}",
			source: "FLATCAR_RELEASE_VERSION=/usr/share/flatcar/release:1",
		},
		{
			name:  "coreos release keys",
			files: map[string]string{"/usr/share/coreos/release": "COREOS_RELEASE_VERSION=2512.3.0\nCOREOS_RELEASE_BOARD=amd64-usr\n"},
			get:   func(c *Config) string { return c.ReleaseVersion + " " + c.Board }, want: "2512.3.0 amd64-usr",
		},
		{
			name: "release version in update.conf wins (first file)",
			files: map[string]string{
				"/etc/flatcar/update.conf":   "COREOS_RELEASE_VERSION=9.9.9\n",
				"/usr/share/flatcar/release": "FLATCAR_RELEASE_VERSION=1.0.0\n",
			},
			get: func(c *Config) string { return c.ReleaseVersion }, want: "9.9.9",
		},
		{
			name:  "flatcar name beats coreos name in one file",
			files: map[string]string{"/usr/share/flatcar/release": "COREOS_RELEASE_VERSION=1\nFLATCAR_RELEASE_VERSION=2\n"},
			get:   func(c *Config) string { return c.ReleaseVersion }, want: "2",
		},
		{
			name:      "override beats files",
			files:     map[string]string{"/etc/flatcar/update.conf": "GROUP=beta\n"},
			overrides: map[string]string{"GROUP": "alpha", "FLATCAR_RELEASE_VERSION": "1.2.3"},
			get:       func(c *Config) string { return c.Group + " " + c.ReleaseVersion }, want: "alpha 1.2.3",
			source: "GROUP=override",
		},
		{
			name: "extension keys",
			files: map[string]string{"/etc/flatcar/update.conf": "UPDATE_ENGINE_IO_WRITE_BPS=8M\n" +
				"UPDATE_ENGINE_METRICS_LISTEN=127.0.0.1:9100\nUPDATE_ENGINE_HEALTH_UNITS=\"a.service, b.service c.target\"\n" +
				"UPDATE_ENGINE_HEALTH_DELAY=90s\n"},
			get: func(c *Config) string {
				return strings.Join([]string{c.MetricsListen, c.HealthDelay.String(), strings.Join(c.HealthUnits, "|"),
					map[bool]string{true: "8MiB"}[c.IOWriteBPS == 8<<20]}, " ")
			},
			want: "127.0.0.1:9100 1m30s a.service|b.service|c.target 8MiB",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := tree(t, tc.files)
			c, err := Load(Options{Root: root, Overrides: tc.overrides})
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.get(c); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if tc.source != "" {
				key, want, _ := strings.Cut(tc.source, "=")
				if want != "override" {
					want = filepath.Join(root, want)
				}
				if got := c.Source(key); got != want {
					t.Errorf("Source(%s) = %q, want %q", key, got, want)
				}
			}
		})
	}
}

func TestBadValues(t *testing.T) {
	const conf = "/etc/flatcar/update.conf"
	tests := []struct {
		name      string
		content   string
		overrides map[string]string
		want      []string // substrings of the error
	}{
		{name: "server not a URL", content: "SERVER=ftp://x/\n", want: []string{conf + ":1", "SERVER", "ftp://x/"}},
		{name: "empty group", content: "GROUP=\n", want: []string{conf + ":1", "GROUP", "empty"}},
		{name: "bps", content: "UPDATE_ENGINE_IO_WRITE_BPS=fast\n", want: []string{conf + ":1", "UPDATE_ENGINE_IO_WRITE_BPS"}},
		{name: "bps overflow", content: "UPDATE_ENGINE_IO_WRITE_BPS=99999999999999999T\n", want: []string{"UPDATE_ENGINE_IO_WRITE_BPS"}},
		{name: "health delay", content: "UPDATE_ENGINE_HEALTH_DELAY=soon\n", want: []string{conf + ":1", "UPDATE_ENGINE_HEALTH_DELAY"}},
		{name: "allow remote", content: "UPDATE_ENGINE_METRICS_ALLOW_REMOTE=perhaps\n", want: []string{"UPDATE_ENGINE_METRICS_ALLOW_REMOTE"}},
		{name: "bad override", overrides: map[string]string{"SERVER": "not a url"}, want: []string{"override SERVER"}},
		{name: "two errors at once", content: "GROUP=\nUPDATE_ENGINE_HEALTH_DELAY=x\n", want: []string{"GROUP", "UPDATE_ENGINE_HEALTH_DELAY"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := tree(t, map[string]string{conf: tc.content})
			_, err := Load(Options{Root: root, Overrides: tc.overrides})
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if !errors.Is(err, ErrBadValue) {
				t.Errorf("error %v does not wrap ErrBadValue", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestFacts(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  [4]string // machine id, boot id, oem id, oem version
	}{
		{name: "none", files: nil},
		{name: "all", files: map[string]string{
			"/etc/machine-id":                 "0123456789abcdef0123456789abcdef\n",
			"/proc/sys/kernel/random/boot_id": "f3b1c1c4-1111-2222-3333-444455556666\n",
			"/etc/oem-release":                "ID=qemu\nVERSION_ID=1.0\nNAME=\"QEMU\"\n",
			"/usr/share/oem/oem-release":      "ID=ignored\n",
			"/etc/flatcar/update.conf":        "GROUP=beta\n",
			"/etc/os-release":                 "ID=flatcar\n",
		},
			want: [4]string{"0123456789abcdef0123456789abcdef", "f3b1c1c4-1111-2222-3333-444455556666", "qemu", "1.0"}},
		{name: "oem in /usr/share/oem", files: map[string]string{"/usr/share/oem/oem-release": "ID=azure\nVERSION_ID=2.9.1.1\n"},
			want: [4]string{"", "", "azure", "2.9.1.1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(Options{Root: tree(t, tc.files)})
			if err != nil {
				t.Fatal(err)
			}
			if got := [4]string{c.MachineID, c.BootID, c.OEMID, c.OEMVersion}; got != tc.want {
				t.Errorf("facts = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestLenient: what Flatcar's update_engine and locksmithd accept never
// stops this daemon: `export KEY=`, quotes and comments are read; a
// malformed line, an unknown key and a value only the reboot manager
// judges are warnings, and the keys around them still count.
func TestLenient(t *testing.T) {
	const conf = "/etc/flatcar/update.conf"
	root := tree(t, map[string]string{conf: "# set by flatcar-update\nexport GROUP=beta\n" +
		"this line is wrong\nSERVER='http://127.0.0.1:8000/v1/update/'\nNO_SUCH_KEY=1\n" +
		"REBOOT_STRATEGY=sometimes\nLOCKSMITHD_REBOOT_WINDOW_START=25:99\nMACHINE_ALIAS=\"web 1\"\n"})
	c, err := Load(Options{Root: root})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := c.Group + "|" + c.Server + "|" + c.MachineAlias; got != "beta|http://127.0.0.1:8000/v1/update/|web 1" {
		t.Errorf("values %q", got)
	}
	var warns []string
	for _, w := range c.Warnings {
		warns = append(warns, w.Error())
	}
	got := strings.Join(warns, "\n")
	for _, want := range []string{filepath.Join(root, conf) + ":3", "no '='", filepath.Join(root, conf) + ":5", "NO_SUCH_KEY"} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings %q do not mention %q", got, want)
		}
	}
	if len(c.Warnings) != 2 {
		t.Errorf("%d warnings, want 2: %q", len(c.Warnings), got)
	}
}

// TestServerDisabled: SERVER=disabled (flatcar-update --disable-afterwards)
// loads, and says so.
func TestServerDisabled(t *testing.T) {
	for _, content := range []string{"SERVER=disabled\n", "SERVER=\"disabled\"\n", "export SERVER=disabled\n"} {
		c, err := Load(Options{Root: tree(t, map[string]string{"/etc/flatcar/update.conf": content})})
		if err != nil {
			t.Fatalf("%q: %v", content, err)
		}
		if !c.UpdatesDisabled() || c.IsDefaultServer() {
			t.Errorf("%q: UpdatesDisabled %v, IsDefaultServer %v", content, c.UpdatesDisabled(), c.IsDefaultServer())
		}
	}
	c, err := Load(Options{Root: t.TempDir()})
	if err != nil || c.UpdatesDisabled() {
		t.Fatalf("default config: disabled %v, %v", c != nil && c.UpdatesDisabled(), err)
	}
}
