package rebootmgr

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/abupdate/update_engine/internal/testenv"
	"github.com/abupdate/update_engine/pkg/clock"
	"github.com/abupdate/update_engine/pkg/rebootmgr/etcdlock"
	"github.com/abupdate/update_engine/pkg/update1"
)

// tlsTestConfig writes env as an update.conf and reads it back through
// the flags and config loading that the run and lock commands use. It
// returns the Config and the file's path (for Main's -config).
func tlsTestConfig(t *testing.T, env Env) (Config, string) {
	t.Helper()
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, env[k])
	}
	conf := filepath.Join(t.TempDir(), "update.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newSettings("run", io.Discard)
	if err := s.fs.Parse([]string{"-config", conf}); err != nil {
		t.Fatal(err)
	}
	cfg, err := s.config(io.Discard)
	if err != nil {
		t.Fatalf("config from %s: %v", conf, err)
	}
	return cfg, conf
}

// tlsHandshake connects to endpoint with conf as etcdProbe does (TLS, then
// one HTTP/1.1 request: under TLS 1.3 a refused client certificate shows
// only on the first read) and returns nil or the TLS error.
func tlsHandshake(t *testing.T, endpoint string, conf *tls.Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	return probeEndpoint(ctx, endpoint, conf)
}

// The reboot lock over etcd with TLS and client-certificate
// authentication, configured only through update.conf's LOCKSMITHD_*
// keys.
func TestEtcdTLSLockFromConfig(t *testing.T) {
	e := testenv.StartEtcdTLS(t)
	clearEnviron(t)
	cfg, conf := tlsTestConfig(t, Env{
		"REBOOT_STRATEGY":          "etcd-lock",
		"LOCKSMITHD_ENDPOINT":      e.Endpoint,
		"LOCKSMITHD_GROUP":         "tls",
		"LOCKSMITHD_ETCD_CAFILE":   e.CAFile,
		"LOCKSMITHD_ETCD_CERTFILE": e.CertFile,
		"LOCKSMITHD_ETCD_KEYFILE":  e.KeyFile,
	})
	tc, err := cfg.EtcdTLS()
	if err != nil {
		t.Fatal(err)
	}
	if tc == nil || tc.RootCAs == nil || len(tc.Certificates) != 1 {
		t.Fatalf("EtcdTLS() has no CA or no client certificate (nil config: %v)", tc == nil)
	}
	if err := tlsHandshake(t, e.Endpoint, tc); err != nil {
		t.Fatalf("etcd refuses EtcdTLS(): %v", err)
	}

	cli, err := dialEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	l := EtcdLocker{ID: "tls-host", Client: &etcdlock.Client{KV: cli, Group: cfg.Group}, Timeout: 20 * time.Second}
	key := etcdlock.Key("tls")
	get := func() string { return e.Etcdctl(t, "get", "--print-value-only", key) }

	if err := l.Lock(t.Context()); err != nil {
		t.Fatalf("lock over TLS: %v", err)
	}
	if got := get(); got != `{"semaphore":0,"max":1,"holders":["tls-host"]}`+"\n" {
		t.Fatalf("locked: %s = %q", key, got)
	}
	// The lock command reads the same update.conf.
	if code, out, errOut := runMain(t, "lock", "-config", conf, "status"); code != 0 || statusShape(out) != "Available: 0\nMax: 1\n\nMACHINE ID\ntls-host\n" {
		t.Fatalf("lock status over TLS: exit %d, %q, %q", code, out, errOut)
	}

	if err := l.Unlock(t.Context()); err != nil {
		t.Fatalf("unlock over TLS: %v", err)
	}
	if got := get(); got != `{"semaphore":1,"max":1,"holders":null}`+"\n" {
		t.Fatalf("unlocked: %s = %q", key, got)
	}
	if code, out, errOut := runMain(t, "lock", "-config", conf, "status"); code != 0 || out != "Available: 1\nMax: 1\n" {
		t.Fatalf("lock status after unlock: exit %d, %q, %q", code, out, errOut)
	}
}

// Clients that etcd's TLS must turn away: the handshake fails with the
// reason, the reboot lock and the lock command give up within their
// bound, and nothing reaches the lock keys.
func TestEtcdTLSRefusesBadClients(t *testing.T) {
	e := testenv.StartEtcdTLS(t)
	other := testenv.NewCA(t, "another CA")
	foreignCert, foreignKey := other.ClientCert(t, "foreign-client")
	clearEnviron(t)
	saved := lockCommandTimeout
	lockCommandTimeout = 2 * time.Second
	t.Cleanup(func() { lockCommandTimeout = saved })

	tests := []struct {
		name string
		env  Env
		// wantTLS: the handshake error holds one of these.
		wantTLS []string
		// verify: the client itself rejects the server's certificate.
		verify bool
	}{
		{
			name:    "no client certificate",
			env:     Env{"LOCKSMITHD_ETCD_CAFILE": e.CAFile},
			wantTLS: []string{"remote error: tls: bad certificate", "remote error: tls: certificate required"},
		},
		{
			name:    "CA that did not sign the server",
			env:     Env{"LOCKSMITHD_ETCD_CAFILE": other.CertFile, "LOCKSMITHD_ETCD_CERTFILE": e.CertFile, "LOCKSMITHD_ETCD_KEYFILE": e.KeyFile},
			wantTLS: []string{"x509: certificate signed by unknown authority"},
			verify:  true,
		},
		{
			name:    "client certificate from another CA",
			env:     Env{"LOCKSMITHD_ETCD_CAFILE": e.CAFile, "LOCKSMITHD_ETCD_CERTFILE": foreignCert, "LOCKSMITHD_ETCD_KEYFILE": foreignKey},
			wantTLS: []string{"remote error: tls: bad certificate", "remote error: tls: unknown certificate authority"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.env["REBOOT_STRATEGY"] = "etcd-lock"
			tt.env["LOCKSMITHD_ENDPOINT"] = e.Endpoint
			cfg, conf := tlsTestConfig(t, tt.env)
			tc, err := cfg.EtcdTLS()
			if err != nil || tc == nil {
				t.Fatalf("EtcdTLS() = %v, %v", tc, err)
			}

			err = tlsHandshake(t, e.Endpoint, tc)
			if err == nil || !slices.ContainsFunc(tt.wantTLS, func(s string) bool { return strings.Contains(err.Error(), s) }) {
				t.Fatalf("TLS handshake: %v, want one of %q", err, tt.wantTLS)
			}
			var verr *tls.CertificateVerificationError
			if errors.As(err, &verr) != tt.verify {
				t.Fatalf("TLS handshake: %v; certificate verification error: %v, want %v", err, !tt.verify, tt.verify)
			}

			cli, err := dialEtcd(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			l := EtcdLocker{ID: "refused-host", Client: &etcdlock.Client{KV: cli}, Timeout: 2 * time.Second, Probe: etcdProbe(cfg)}
			// The test's own bound, should EtcdLocker's fail.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			start := time.Now()
			err = l.Lock(ctx)
			took := time.Since(start)
			if err == nil {
				t.Fatal("lock succeeded")
			}
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "etcd gave no answer within 2s") {
				t.Fatalf("lock: %v, want the 2s bound reported", err)
			}
			// The probe names what the etcd client hides.
			if !slices.ContainsFunc(tt.wantTLS, func(s string) bool { return strings.Contains(err.Error(), s) }) {
				t.Fatalf("lock: %v, want the TLS reason, one of %q", err, tt.wantTLS)
			}
			if took > 5*time.Second {
				t.Fatalf("lock gave up after %v, want about 2s", took)
			}

			// The lock command says at once why, without waiting out its bound.
			code, out, errOut := runMain(t, "lock", "-config", conf, "status")
			if code != 1 || out != "" || !strings.Contains(errOut, "unreachable") ||
				!slices.ContainsFunc(tt.wantTLS, func(s string) bool { return strings.Contains(errOut, s) }) {
				t.Fatalf("lock status: exit %d, %q, %q", code, out, errOut)
			}

			if keys := e.Etcdctl(t, "get", "--prefix", "--keys-only", etcdlock.Prefix); keys != "" {
				t.Fatalf("refused client wrote %q", keys)
			}
		})
	}
}

// A manager whose etcd refuses its TLS settings reports each failed
// attempt and keeps retrying, instead of waiting silently for a
// connection that never comes.
func TestManagerReportsRefusedEtcdTLS(t *testing.T) {
	e := testenv.StartEtcdTLS(t)
	cfg, _ := tlsTestConfig(t, Env{
		"REBOOT_STRATEGY":        "etcd-lock",
		"LOCKSMITHD_ENDPOINT":    e.Endpoint,
		"LOCKSMITHD_ETCD_CAFILE": e.CAFile, // and no client certificate
	})
	cli, err := dialEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	var log syncBuffer
	m := &Manager{
		Strategy: cfg.Strategy,
		Lock:     EtcdLocker{ID: "host", Client: &etcdlock.Client{KV: cli}, Timeout: 300 * time.Millisecond},
		Status:   newMemSource(update1.StatusIdle),
		Clock:    clock.Real{},
		Backoff:  clock.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		Logf:     func(f string, a ...any) { fmt.Fprintf(&log, f+"\n", a...) },
	}
	r := startManager(t, m)
	waitFor(t, "two failed unlock attempts logged", func() bool {
		return strings.Count(log.String(), "release reboot lock: rebootmgr: etcd gave no answer within 300ms") >= 2
	})
	r.stop(t)
	if keys := e.Etcdctl(t, "get", "--prefix", "--keys-only", etcdlock.Prefix); keys != "" {
		t.Fatalf("refused manager wrote %q", keys)
	}
}
