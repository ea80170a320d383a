package rebootmgr

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/abupdate/update_engine/pkg/updateconf"
)

// ConfigFiles is the update.conf search order: the first file that holds
// a key wins (Flatcar first, then the CoreOS paths; /etc before /usr).
var ConfigFiles = []string{
	"/etc/flatcar/update.conf",
	"/etc/coreos/update.conf",
	"/usr/share/flatcar/update.conf",
	"/usr/share/coreos/update.conf",
}

// ErrBadConfig: an update.conf value does not parse.
var ErrBadConfig = errors.New("rebootmgr: invalid configuration")

// Env is a merged set of KEY=VALUE settings.
type Env map[string]string

// LoadEnv merges files so that, for each key, the first file holding it
// wins; missing files are skipped. The files are read by pkg/updateconf,
// the parser update_engine uses too: lines that do not parse and keys
// neither daemon knows come back as warnings, never as errors (locksmithd
// gets update.conf through systemd's EnvironmentFile=, which skips what it
// cannot read).
func LoadEnv(files []string) (Env, []updateconf.Warning, error) {
	set, warns, err := updateconf.Load(files)
	if err != nil {
		return nil, nil, fmt.Errorf("rebootmgr: %w", err)
	}
	for _, f := range set {
		warns = append(warns, updateconf.Unknown(f)...)
	}
	return Env(set.Merged()), warns, nil
}

// first returns the value of the first key set (non-empty) in env.
func (e Env) first(keys ...string) string {
	for _, k := range keys {
		if v := e[k]; v != "" {
			return v
		}
	}
	return ""
}

// Config is the reboot manager's part of update.conf.
type Config struct {
	Strategy Strategy
	Window   *Window // nil = any time
	// Endpoints are the etcd client URLs (LOCKSMITHD_ENDPOINT, comma list).
	Endpoints []string
	// Group is the lock group (LOCKSMITHD_GROUP; "" = default).
	Group string
	// FleetLockURL is the FleetLock base URL (FLEETLOCK_URL).
	FleetLockURL string
	// HolderTTL lets contenders evict an etcd holder that has not released
	// its slot after this long (REBOOT_LOCK_TTL; 0 = operator unlock only).
	HolderTTL time.Duration
	// EtcdUsername, EtcdPassword: LOCKSMITHD_ETCD_USERNAME/_PASSWORD.
	EtcdUsername, EtcdPassword string
	// EtcdCAFile, EtcdCertFile, EtcdKeyFile: LOCKSMITHD_ETCD_CAFILE,
	// _CERTFILE, _KEYFILE (PEM) for https endpoints.
	EtcdCAFile, EtcdCertFile, EtcdKeyFile string
	// EtcdAPI is the etcd store of the semaphore: "v3" (default) or "v2",
	// the keys API locksmithd and locksmithctl use (LOCKSMITHD_ETCD_API).
	// The two stores do not see each other: a fleet that still runs
	// locksmithd anywhere must say v2 on every host.
	EtcdAPI string
}

// The values of LOCKSMITHD_ETCD_API.
const (
	EtcdAPIv2 = "v2"
	EtcdAPIv3 = "v3"
)

// DefaultEndpoints are locksmith's default etcd endpoints.
var DefaultEndpoints = []string{"http://127.0.0.1:2379", "http://127.0.0.1:4001"}

// ConfigFromEnv reads the keys of SPEC section 6 from env.
func ConfigFromEnv(env Env) (Config, error) {
	var c Config
	var err error
	if c.Strategy, err = ParseStrategy(env["REBOOT_STRATEGY"]); err != nil {
		return c, err
	}
	start := env.first("LOCKSMITHD_REBOOT_WINDOW_START", "REBOOT_WINDOW_START")
	length := env.first("LOCKSMITHD_REBOOT_WINDOW_LENGTH", "REBOOT_WINDOW_LENGTH")
	if c.Window, err = ParseWindow(start, length); err != nil {
		return c, err
	}
	c.Endpoints = SplitEndpoints(env["LOCKSMITHD_ENDPOINT"])
	if len(c.Endpoints) == 0 {
		c.Endpoints = DefaultEndpoints
	}
	c.Group = env["LOCKSMITHD_GROUP"]
	c.FleetLockURL = env["FLEETLOCK_URL"]
	if v := env["REBOOT_LOCK_TTL"]; v != "" {
		if c.HolderTTL, err = time.ParseDuration(v); err != nil || c.HolderTTL < 0 {
			return c, fmt.Errorf("%w: REBOOT_LOCK_TTL=%q", ErrBadConfig, v)
		}
	}
	c.EtcdUsername = env["LOCKSMITHD_ETCD_USERNAME"]
	c.EtcdPassword = env["LOCKSMITHD_ETCD_PASSWORD"]
	c.EtcdCAFile = env["LOCKSMITHD_ETCD_CAFILE"]
	c.EtcdCertFile = env["LOCKSMITHD_ETCD_CERTFILE"]
	c.EtcdKeyFile = env["LOCKSMITHD_ETCD_KEYFILE"]
	if (c.EtcdCertFile == "") != (c.EtcdKeyFile == "") {
		return c, fmt.Errorf("%w: LOCKSMITHD_ETCD_CERTFILE and _KEYFILE must be set together", ErrBadConfig)
	}
	switch c.EtcdAPI = env["LOCKSMITHD_ETCD_API"]; c.EtcdAPI {
	case "":
		c.EtcdAPI = EtcdAPIv3
	case EtcdAPIv2, EtcdAPIv3:
	default:
		return c, fmt.Errorf("%w: LOCKSMITHD_ETCD_API=%q: want v2 or v3", ErrBadConfig, c.EtcdAPI)
	}
	if c.EtcdAPI == EtcdAPIv2 && c.HolderTTL > 0 {
		return c, fmt.Errorf("%w: REBOOT_LOCK_TTL needs LOCKSMITHD_ETCD_API=v3 (v2 has no multi-key transaction)", ErrBadConfig)
	}
	return c, nil
}

// EtcdTLS returns the TLS settings for etcd, or nil when no CA or client
// certificate is configured.
func (c Config) EtcdTLS() (*tls.Config, error) {
	if c.EtcdCAFile == "" && c.EtcdCertFile == "" {
		return nil, nil
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.EtcdCAFile != "" {
		pem, err := os.ReadFile(c.EtcdCAFile)
		if err != nil {
			return nil, fmt.Errorf("rebootmgr: etcd CA: %w", err)
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrBadConfig, c.EtcdCAFile)
		}
	}
	if c.EtcdCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.EtcdCertFile, c.EtcdKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: etcd client certificate: %v", ErrBadConfig, err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

// SplitEndpoints splits a comma-separated endpoint list, dropping blanks.
func SplitEndpoints(v string) []string {
	var out []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}
