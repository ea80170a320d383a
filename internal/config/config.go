// Package config reads the update engine's configuration the way
// Flatcar/CoreOS update_engine does (SPEC.md section 6), plus this
// project's own keys for the daemon.
//
// Files and order: every key is looked up in these files, relative to
// Options.Root, and the first file that assigns it wins:
//
//	/etc/flatcar/update.conf        (user, Flatcar)
//	/etc/coreos/update.conf         (user, CoreOS; a symlink to /etc/flatcar on Flatcar)
//	/usr/share/flatcar/update.conf  (vendor defaults per channel)
//	/usr/share/coreos/update.conf
//	/usr/share/flatcar/release      (FLATCAR_RELEASE_*)
//	/usr/share/coreos/release       (COREOS_RELEASE_*)
//
// Flatcar searches its three files and CoreOS its three; searching both
// sets, the /etc files first, keeps a user's /etc/coreos/update.conf above
// the vendor defaults on a host migrated from CoreOS. The release keys
// FLATCAR_RELEASE_X and COREOS_RELEASE_X are one key: in each file the
// FLATCAR_ name is tried first. Options.Overrides (command-line flags,
// same key names) are applied last and beat every file. Files are read by
// pkg/updateconf, the parser the reboot manager uses too: KEY=VALUE lines
// as systemd EnvironmentFile= reads them, an optional "export ", quotes and
// comments. A line that does not parse, or an update.conf key neither
// daemon knows, is a warning (Config.Warnings), never an error: like
// Flatcar's, this daemon must come up whatever the file holds, or the
// booted slot is never marked good. Load is cheap; the engine calls it
// again before every check, as Flatcar re-reads update.conf at every
// check.
//
// Compatible keys (meaning and default):
//
//	GROUP                 Omaha track; "stable"
//	SERVER                Omaha URL; https://public.update.flatcar-linux.net/v1/update/
//	                      "disabled": no update checks at all (see ServerDisabled)
//	MACHINE_ALIAS         machinealias attribute; ""
//	DOWNLOAD_USER         HTTP basic auth user for payload downloads; ""
//	DOWNLOAD_PASSWORD     its password; ""
//	PCR_POLICY_SERVER     URL for the TPM PCR policy; "" = disabled
//	FLATCAR_RELEASE_VERSION / COREOS_RELEASE_VERSION   running version; ""
//	FLATCAR_RELEASE_BOARD   / COREOS_RELEASE_BOARD     board; ""
//	FLATCAR_RELEASE_APPID   / COREOS_RELEASE_APPID     Omaha app id; {e96281a6-d1af-4bde-9a0a-97b76e56dc57}
//
// The reboot keys (REBOOT_STRATEGY, LOCKSMITHD_*) belong to the reboot
// manager (pkg/rebootmgr ConfigFromEnv); this daemon does not read them, so
// a value only the reboot manager refuses cannot stop updates.
//
// Extension keys of this project (ignored by Flatcar's update_engine):
//
//	UPDATE_ENGINE_IO_WRITE_BPS        write limit on the passive slot, bytes/s,
//	                                  suffix K, M, G (powers of 1024); 0 = no limit (default);
//	                                  with UPDATE_ENGINE_IO_LIMIT=adaptive, the limit used when
//	                                  the host has no PSI (default there: the floor)
//	UPDATE_ENGINE_IO_LIMIT            "adaptive" (follow the other workloads' I/O pressure,
//	                                  pkg/cgroup Adaptive) or a rate as UPDATE_ENGINE_IO_WRITE_BPS
//	                                  (which it then replaces); "" = UPDATE_ENGINE_IO_WRITE_BPS
//	UPDATE_ENGINE_IO_LIMIT_FLOOR      adaptive: lowest limit, bytes/s as above; 8M
//	UPDATE_ENGINE_IO_LIMIT_CEILING    adaptive: highest limit (and the start); 1G
//	UPDATE_ENGINE_IO_LIMIT_TARGET     adaptive: the workloads' PSI "some" share, in percent,
//	                                  above which the limit is cut; 10
//	UPDATE_ENGINE_METRICS_LISTEN      Prometheus address host:port; "" = off (default)
//	UPDATE_ENGINE_METRICS_ALLOW_REMOTE  true to allow a non-loopback address; false
//	UPDATE_ENGINE_METRICS_SOCKET      Unix socket path for the same metrics (as Zincati's); "" = off (default)
//	UPDATE_ENGINE_PUBKEY              payload public key (PEM);
//	                                  /usr/share/update_engine/update-payload-key.pub.pem
//	UPDATE_ENGINE_PREFS_DIR           state directory; /var/lib/update_engine/prefs
//	UPDATE_ENGINE_HEALTH_DELAY        wait after boot before marking the slot good; 1m
//	UPDATE_ENGINE_HEALTH_UNITS        systemd units that must be active (space or comma list); none
//	UPDATE_ENGINE_HEALTH_COMMAND      command (run by sh -c) that must exit 0; none
//	UPDATE_ENGINE_HEALTH_TIMEOUT      how long the health gate may take before it fails; 5m
//
// Machine facts read alongside: /etc/machine-id, /proc/sys/kernel/random/boot_id,
// and the OEM's ID and VERSION_ID from /etc/oem-release or /usr/share/oem/oem-release
// (all under Root; missing files give empty values).
package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/abupdate/update_engine/pkg/omaha"
	"github.com/abupdate/update_engine/pkg/updateconf"
)

// Defaults.
const (
	DefaultGroup          = "stable"
	DefaultPubKey         = "/usr/share/update_engine/update-payload-key.pub.pem"
	DefaultPrefsDir       = "/var/lib/update_engine/prefs"
	DefaultHealthDelay    = time.Minute
	DefaultHealthTimeout  = 5 * time.Minute
	DefaultIOLimitFloor   = 8 << 20
	DefaultIOLimitCeiling = 1 << 30
	DefaultIOLimitTarget  = 10.0 // percent
)

// SearchPath is the order in which files are searched for every key.
var SearchPath = []string{
	"/etc/flatcar/update.conf",
	"/etc/coreos/update.conf",
	"/usr/share/flatcar/update.conf",
	"/usr/share/coreos/update.conf",
	"/usr/share/flatcar/release",
	"/usr/share/coreos/release",
}

// Fact files.
const (
	MachineIDFile = "/etc/machine-id"
	BootIDFile    = "/proc/sys/kernel/random/boot_id"
)

// OEMReleaseFiles are tried in order for the OEM ID and VERSION_ID.
var OEMReleaseFiles = []string{"/etc/oem-release", "/usr/share/oem/oem-release"}

// ErrBadValue is wrapped by errors for a key whose value does not parse; the
// message names the file, line and key.
var ErrBadValue = errors.New("config: bad value")

// Options tell Load where to look.
type Options struct {
	// Root is prefixed to every path (tests, image builders); "" = "/".
	Root string
	// Overrides maps keys (the names above, e.g. "GROUP",
	// "FLATCAR_RELEASE_VERSION") to values that beat every file. Flags go
	// here.
	Overrides map[string]string
}

// ServerDisabled as SERVER turns update checks off. Flatcar documents it
// (flatcar-update --disable-afterwards writes it); its update_engine has no
// special case and its checks simply fail to reach a host named
// "disabled". Here no request is made at all: the daemon still runs its
// health gate and answers D-Bus, and a later SERVER= (re-read before each
// check) turns checks back on without a restart.
const ServerDisabled = "disabled"

// Config is one reading of the configuration. Load fills every field.
type Config struct {
	Group            string
	Server           string
	MachineAlias     string
	DownloadUser     string
	DownloadPassword string
	PCRPolicyServer  string
	ReleaseVersion   string
	Board            string
	AppID            string

	IOWriteBPS         uint64
	IOAdaptive         bool    // UPDATE_ENGINE_IO_LIMIT=adaptive
	IOLimitFloor       uint64  // adaptive floor, bytes/s
	IOLimitCeiling     uint64  // adaptive ceiling, bytes/s
	IOLimitTarget      float64 // adaptive PSI target, percent
	MetricsListen      string
	MetricsAllowRemote bool
	MetricsSocket      string
	PubKey             string
	PrefsDir           string
	HealthDelay        time.Duration
	HealthUnits        []string
	HealthCommand      string
	HealthTimeout      time.Duration

	MachineID  string
	BootID     string
	OEMID      string
	OEMVersion string

	// Warnings are the lines Load skipped and the update.conf keys it
	// does not know; the daemon logs them.
	Warnings []updateconf.Warning

	sources map[string]string // key → "file:line", "override" or "default"
}

// Source says where key's value came from: "file:line", "override", or
// "default" when nothing set it.
func (c *Config) Source(key string) string {
	if s, ok := c.sources[key]; ok {
		return s
	}
	return "default"
}

// IsDefaultServer reports whether SERVER is the public Flatcar server; when
// it is not, reported error codes carry the TestOmahaURL flag (SPEC.md 7).
func (c *Config) IsDefaultServer() bool { return c.Server == omaha.DefaultServer }

// UpdatesDisabled reports SERVER=disabled: no checks, no events.
func (c *Config) UpdatesDisabled() bool { return c.Server == ServerDisabled }

// lookup holds the parsed files and overrides.
type lookup struct {
	files     updateconf.Set
	overrides map[string]string
	sources   map[string]string
}

// get returns the value of the first name any source assigns, trying the
// names in order within each file.
func (l *lookup) get(names ...string) (updateconf.Entry, bool) {
	for _, n := range names {
		if v, ok := l.overrides[n]; ok {
			l.sources[names[0]] = "override"
			return updateconf.Entry{Value: v, File: "override " + n}, true
		}
	}
	e, ok := l.files.Lookup(names...)
	if ok {
		l.sources[names[0]] = e.Where()
	}
	return e, ok
}

func (l *lookup) str(def string, names ...string) string {
	if e, ok := l.get(names...); ok {
		return e.Value
	}
	return def
}

func bad(e updateconf.Entry, key, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s=%q: %s", ErrBadValue, e.Where(), key, e.Value, fmt.Sprintf(format, args...))
}

// Load reads the configuration.
func Load(opts Options) (*Config, error) {
	l, warns, err := readFiles(opts)
	if err != nil {
		return nil, err
	}
	c := stringKeys(l)
	errs := []error{checkRequired(l, c), ioLimit(l, c), readTuning(l, c)}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := c.readFacts(opts.Root); err != nil {
		return nil, err
	}
	c.sources = l.sources
	c.Warnings = warns
	return c, nil
}

// readFiles parses the files of SearchPath under opts.Root, later files
// overriding earlier ones, and warns about unknown keys in update.conf.
func readFiles(opts Options) (*lookup, []updateconf.Warning, error) {
	l := &lookup{overrides: opts.Overrides, sources: map[string]string{}}
	var warns []updateconf.Warning
	for _, p := range SearchPath {
		f, w, err := updateconf.ParseFile(filepath.Join(opts.Root, p))
		if err != nil {
			return nil, nil, fmt.Errorf("config: %w", err)
		}
		warns = append(warns, w...)
		if f == nil {
			continue
		}
		if strings.HasSuffix(p, "/update.conf") {
			warns = append(warns, updateconf.Unknown(f)...)
		}
		l.files = append(l.files, f)
	}
	return l, warns, nil
}

// stringKeys is the Config of the keys taken as strings, with defaults.
func stringKeys(l *lookup) *Config {
	return &Config{
		Group:            l.str(DefaultGroup, "GROUP"),
		Server:           l.str(omaha.DefaultServer, "SERVER"),
		MachineAlias:     l.str("", "MACHINE_ALIAS"),
		DownloadUser:     l.str("", "DOWNLOAD_USER"),
		DownloadPassword: l.str("", "DOWNLOAD_PASSWORD"),
		PCRPolicyServer:  l.str("", "PCR_POLICY_SERVER"),
		ReleaseVersion:   l.str("", "FLATCAR_RELEASE_VERSION", "COREOS_RELEASE_VERSION"),
		Board:            l.str("", "FLATCAR_RELEASE_BOARD", "COREOS_RELEASE_BOARD"),
		AppID:            l.str(omaha.DefaultAppID, "FLATCAR_RELEASE_APPID", "COREOS_RELEASE_APPID"),
		MetricsListen:    l.str("", "UPDATE_ENGINE_METRICS_LISTEN"),
		MetricsSocket:    l.str("", "UPDATE_ENGINE_METRICS_SOCKET"),
		PubKey:           l.str(DefaultPubKey, "UPDATE_ENGINE_PUBKEY"),
		PrefsDir:         l.str(DefaultPrefsDir, "UPDATE_ENGINE_PREFS_DIR"),
		HealthCommand:    l.str("", "UPDATE_ENGINE_HEALTH_COMMAND"),
		HealthDelay:      DefaultHealthDelay,
		HealthTimeout:    DefaultHealthTimeout,
	}
}

// checkRequired checks the URLs and the values that must not be empty.
func checkRequired(l *lookup, c *Config) error {
	var errs []error
	for _, u := range []struct{ key, val string }{{"SERVER", c.Server}, {"PCR_POLICY_SERVER", c.PCRPolicyServer}} {
		if u.val == "" && u.key != "SERVER" || u.key == "SERVER" && u.val == ServerDisabled {
			continue
		}
		if p, err := url.Parse(u.val); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			e, _ := l.get(u.key)
			errs = append(errs, bad(e, u.key, "want an http:// or https:// URL"))
		}
	}
	if c.Group == "" {
		e, _ := l.get("GROUP")
		errs = append(errs, bad(e, "GROUP", "must not be empty"))
	}
	if c.AppID == "" {
		e, _ := l.get("FLATCAR_RELEASE_APPID", "COREOS_RELEASE_APPID")
		errs = append(errs, bad(e, "FLATCAR_RELEASE_APPID", "must not be empty"))
	}
	return errors.Join(errs...)
}

// readTuning reads the keys with a type: the metrics switch and the
// health check's durations and units.
func readTuning(l *lookup, c *Config) error {
	var errs []error
	var err error
	if e, ok := l.get("UPDATE_ENGINE_METRICS_ALLOW_REMOTE"); ok {
		c.MetricsAllowRemote, err = strconv.ParseBool(e.Value)
		if err != nil {
			errs = append(errs, bad(e, "UPDATE_ENGINE_METRICS_ALLOW_REMOTE", "want true or false"))
		}
	}
	for _, d := range []struct {
		key string
		dst *time.Duration
	}{{"UPDATE_ENGINE_HEALTH_DELAY", &c.HealthDelay}, {"UPDATE_ENGINE_HEALTH_TIMEOUT", &c.HealthTimeout}} {
		if e, ok := l.get(d.key); ok {
			v, err := time.ParseDuration(e.Value)
			if err != nil || v < 0 {
				errs = append(errs, bad(e, d.key, "want a duration such as 90s or 5m"))
				continue
			}
			*d.dst = v
		}
	}
	if e, ok := l.get("UPDATE_ENGINE_HEALTH_UNITS"); ok {
		c.HealthUnits = strings.FieldsFunc(e.Value, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	}
	return errors.Join(errs...)
}

// ioLimit reads UPDATE_ENGINE_IO_WRITE_BPS, then UPDATE_ENGINE_IO_LIMIT
// (which wins) and the adaptive limit's keys.
func ioLimit(l *lookup, c *Config) error {
	c.IOLimitFloor, c.IOLimitCeiling, c.IOLimitTarget = DefaultIOLimitFloor, DefaultIOLimitCeiling, DefaultIOLimitTarget
	var errs []error
	if e, ok := l.get("UPDATE_ENGINE_IO_WRITE_BPS"); ok {
		var err error
		if c.IOWriteBPS, err = parseBytes(e.Value); err != nil {
			errs = append(errs, bad(e, "UPDATE_ENGINE_IO_WRITE_BPS", "%v", err))
		}
	}
	if e, ok := l.get("UPDATE_ENGINE_IO_LIMIT"); ok && e.Value != "" {
		if e.Value == "adaptive" {
			c.IOAdaptive = true
		} else if n, err := parseBytes(e.Value); err == nil {
			c.IOWriteBPS = n
		} else {
			errs = append(errs, bad(e, "UPDATE_ENGINE_IO_LIMIT", "want adaptive or a byte count such as 64M"))
		}
	}
	for _, k := range []struct {
		key string
		dst *uint64
	}{{"UPDATE_ENGINE_IO_LIMIT_FLOOR", &c.IOLimitFloor}, {"UPDATE_ENGINE_IO_LIMIT_CEILING", &c.IOLimitCeiling}} {
		if e, ok := l.get(k.key); ok {
			n, err := parseBytes(e.Value)
			if err == nil && n == 0 {
				err = errors.New("must be > 0")
			}
			if err != nil {
				errs = append(errs, bad(e, k.key, "%v", err))
				continue
			}
			*k.dst = n
		}
	}
	if c.IOLimitFloor > c.IOLimitCeiling {
		key := "UPDATE_ENGINE_IO_LIMIT_CEILING"
		e, ok := l.get(key)
		if !ok {
			key = "UPDATE_ENGINE_IO_LIMIT_FLOOR"
			e, _ = l.get(key)
		}
		errs = append(errs, bad(e, key, "floor %d is above the ceiling %d", c.IOLimitFloor, c.IOLimitCeiling))
	}
	if e, ok := l.get("UPDATE_ENGINE_IO_LIMIT_TARGET"); ok {
		v, err := strconv.ParseFloat(strings.TrimSuffix(e.Value, "%"), 64)
		if err != nil || v <= 0 || v >= 100 {
			errs = append(errs, bad(e, "UPDATE_ENGINE_IO_LIMIT_TARGET", "want a percentage between 0 and 100 such as 10"))
		} else {
			c.IOLimitTarget = v
		}
	}
	return errors.Join(errs...)
}

// parseBytes parses a byte count with an optional K, M, G or T suffix
// (powers of 1024), as systemd's IOWriteBandwidthMax= does.
func parseBytes(s string) (uint64, error) {
	mult := uint64(1)
	if s != "" {
		switch s[len(s)-1] {
		case 'K', 'k':
			mult = 1 << 10
		case 'M', 'm':
			mult = 1 << 20
		case 'G', 'g':
			mult = 1 << 30
		case 'T', 't':
			mult = 1 << 40
		}
		if mult != 1 {
			s = s[:len(s)-1]
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errors.New("want a byte count such as 8388608 or 8M")
	}
	if n > (1<<64-1)/mult {
		return 0, errors.New("too large")
	}
	return n * mult, nil
}

// readFacts fills the machine facts; missing files leave them empty.
func (c *Config) readFacts(root string) error {
	read := func(p string) (string, error) {
		b, err := os.ReadFile(filepath.Join(root, p))
		if errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("config: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	var err error
	if c.MachineID, err = read(MachineIDFile); err != nil {
		return err
	}
	if c.BootID, err = read(BootIDFile); err != nil {
		return err
	}
	for _, p := range OEMReleaseFiles {
		m, _, err := updateconf.ParseFile(filepath.Join(root, p))
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		if m != nil {
			c.OEMID, c.OEMVersion = m["ID"].Value, m["VERSION_ID"].Value
			break
		}
	}
	return nil
}
