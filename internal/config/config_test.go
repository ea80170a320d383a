package config

import (
	"errors"
	"fmt"
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
		AppID: "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}", RebootStrategy: "reboot",
		PubKey: "/usr/share/update_engine/update-payload-key.pub.pem", PrefsDir: "/var/lib/update_engine/prefs",
		HealthDelay: time.Minute, HealthTimeout: 5 * time.Minute,
		IOLimitFloor: 8 << 20, IOLimitCeiling: 1 << 30, IOLimitTarget: 10,
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
		{
			name: "adaptive I/O limit",
			files: map[string]string{"/etc/flatcar/update.conf": "UPDATE_ENGINE_IO_LIMIT=adaptive\nUPDATE_ENGINE_IO_WRITE_BPS=32M\n" +
				"UPDATE_ENGINE_IO_LIMIT_FLOOR=2M\nUPDATE_ENGINE_IO_LIMIT_CEILING=512M\nUPDATE_ENGINE_IO_LIMIT_TARGET=5%\n"},
			get: func(c *Config) string {
				return fmt.Sprint(c.IOAdaptive, c.IOWriteBPS>>20, c.IOLimitFloor>>20, c.IOLimitCeiling>>20, c.IOLimitTarget)
			},
			want: "true 32 2 512 5",
		},
		{
			name:      "UPDATE_ENGINE_IO_LIMIT as a rate replaces UPDATE_ENGINE_IO_WRITE_BPS",
			files:     map[string]string{"/etc/flatcar/update.conf": "UPDATE_ENGINE_IO_WRITE_BPS=32M\n"},
			overrides: map[string]string{"UPDATE_ENGINE_IO_LIMIT": "64M"},
			get:       func(c *Config) string { return fmt.Sprint(c.IOAdaptive, c.IOWriteBPS>>20) },
			want:      "false 64",
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
		{name: "no equals", content: "GROUP=beta\nthis is wrong\n", want: []string{conf + ":2", "no '='"}},
		{name: "bad key", content: "GR OUP=x\n", want: []string{conf + ":1", "invalid key"}},
		{name: "unterminated quote", content: "\n\nGROUP=\"beta\n", want: []string{conf + ":3", "GROUP", "unterminated"}},
		{name: "server not a URL", content: "SERVER=ftp://x/\n", want: []string{conf + ":1", "SERVER", "ftp://x/"}},
		{name: "empty group", content: "GROUP=\n", want: []string{conf + ":1", "GROUP", "empty"}},
		{name: "strategy", content: "\nREBOOT_STRATEGY=sometimes\n", want: []string{conf + ":2", "REBOOT_STRATEGY", "sometimes"}},
		{name: "bps", content: "UPDATE_ENGINE_IO_WRITE_BPS=fast\n", want: []string{conf + ":1", "UPDATE_ENGINE_IO_WRITE_BPS"}},
		{name: "bps overflow", content: "UPDATE_ENGINE_IO_WRITE_BPS=99999999999999999T\n", want: []string{"UPDATE_ENGINE_IO_WRITE_BPS"}},
		{name: "io limit", content: "UPDATE_ENGINE_IO_LIMIT=clever\n", want: []string{conf + ":1", "UPDATE_ENGINE_IO_LIMIT", "adaptive"}},
		{name: "io floor above ceiling", content: "UPDATE_ENGINE_IO_LIMIT_FLOOR=64M\nUPDATE_ENGINE_IO_LIMIT_CEILING=8M\n", want: []string{conf + ":2", "above the ceiling"}},
		{name: "io floor zero", content: "UPDATE_ENGINE_IO_LIMIT_FLOOR=0\n", want: []string{"UPDATE_ENGINE_IO_LIMIT_FLOOR", "> 0"}},
		{name: "io target", content: "UPDATE_ENGINE_IO_LIMIT_TARGET=100\n", want: []string{"UPDATE_ENGINE_IO_LIMIT_TARGET", "percentage"}},
		{name: "health delay", content: "UPDATE_ENGINE_HEALTH_DELAY=soon\n", want: []string{conf + ":1", "UPDATE_ENGINE_HEALTH_DELAY"}},
		{name: "allow remote", content: "UPDATE_ENGINE_METRICS_ALLOW_REMOTE=perhaps\n", want: []string{"UPDATE_ENGINE_METRICS_ALLOW_REMOTE"}},
		{name: "window start only", content: "LOCKSMITHD_REBOOT_WINDOW_START=04:00\n", want: []string{conf + ":1", "without a window length"}},
		{name: "window bad day", content: "REBOOT_WINDOW_START=Someday 04:00\nREBOOT_WINDOW_LENGTH=1h\n", want: []string{"unknown day"}},
		{name: "window bad time", content: "REBOOT_WINDOW_START=25:00\nREBOOT_WINDOW_LENGTH=1h\n", want: []string{"HH:MM"}},
		{name: "window bad length", content: "REBOOT_WINDOW_START=04:00\nREBOOT_WINDOW_LENGTH=-1h\n", want: []string{conf + ":2", "positive duration"}},
		{name: "bad override", overrides: map[string]string{"SERVER": "not a url"}, want: []string{"override SERVER"}},
		{name: "two errors at once", content: "GROUP=\nREBOOT_STRATEGY=x\n", want: []string{"GROUP", "REBOOT_STRATEGY"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := tree(t, map[string]string{conf: tc.content})
			_, err := Load(Options{Root: root, Overrides: tc.overrides})
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if !errors.Is(err, ErrBadValue) && !errors.Is(err, ErrSyntax) {
				t.Errorf("error %v wraps neither ErrBadValue nor ErrSyntax", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestWindow(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    *Window
	}{
		{name: "none", content: "", want: nil},
		{name: "daily", content: "REBOOT_WINDOW_START=04:00\nREBOOT_WINDOW_LENGTH=1h30m\n",
			want: &Window{Start: "04:00", Weekday: -1, Hour: 4, Length: 90 * time.Minute}},
		{name: "weekly, case-insensitive", content: "LOCKSMITHD_REBOOT_WINDOW_START=thu 23:05\nLOCKSMITHD_REBOOT_WINDOW_LENGTH=2h\n",
			want: &Window{Start: "thu 23:05", Weekday: 4, Hour: 23, Minute: 5, Length: 2 * time.Hour}},
		{name: "new names beat legacy", content: "REBOOT_WINDOW_START=01:00\nREBOOT_WINDOW_LENGTH=1h\n" +
			"LOCKSMITHD_REBOOT_WINDOW_START=Sun 02:00\nLOCKSMITHD_REBOOT_WINDOW_LENGTH=3h\n",
			want: &Window{Start: "Sun 02:00", Weekday: 0, Hour: 2, Length: 3 * time.Hour}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(Options{Root: tree(t, map[string]string{"/etc/flatcar/update.conf": tc.content})})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.RebootWindow, tc.want) {
				t.Errorf("window = %+v, want %+v", c.RebootWindow, tc.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr bool
	}{
		{name: "plain", in: "A=1\nB=two words\n", want: map[string]string{"A": "1", "B": "two words"}},
		{name: "comments and blanks", in: "# c\n; c\n\n   \nA=1 # not a comment\n", want: map[string]string{"A": "1 # not a comment"}},
		{name: "spaces around", in: "  A =  x  \n", want: map[string]string{"A": "x"}},
		{name: "double quotes", in: `A="a \"b\" \\ \$x"` + "\n", want: map[string]string{"A": `a "b" \ $x`}},
		{name: "single quotes literal", in: `A='a \n b'`, want: map[string]string{"A": `a \n b`}},
		{name: "empty value", in: "A=\nB=\"\"\n", want: map[string]string{"A": "", "B": ""}},
		{name: "equals in value", in: "A=b=c\n", want: map[string]string{"A": "b=c"}},
		{name: "continuation", in: "A=one \\\n two\nB=3\n", want: map[string]string{"A": "one two", "B": "3"}},
		{name: "last wins", in: "A=1\nA=2\n", want: map[string]string{"A": "2"}},
		{name: "crlf", in: "A=1\r\n", want: map[string]string{"A": "1"}},
		{name: "no newline at end", in: "A=1", want: map[string]string{"A": "1"}},
		{name: "missing equals", in: "A\n", wantErr: true},
		{name: "leading digit key", in: "1A=x\n", wantErr: true},
		{name: "bad escape", in: `A="\q"`, wantErr: true},
		{name: "stray quote", in: `A="a"b"`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := parse("f", []byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			got := map[string]string{}
			for k, e := range m {
				got[k] = e.value
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
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

func FuzzParse(f *testing.F) {
	for _, s := range []string{"GROUP=beta\n", "A=\"x\\\"y\"\n# c\n", "A='b'\nB=c \\\n d", "no equals", "A=\"", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parse("fuzz", data)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error %v does not wrap ErrSyntax", err)
			}
			return
		}
		for k, e := range m {
			if !validKey(k) || e.line < 1 {
				t.Fatalf("bad entry %q %+v", k, e)
			}
		}
	})
}
