package rebootmgr

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestLoadEnvFirstFileWins(t *testing.T) {
	dir := t.TempDir()
	etc := filepath.Join(dir, "etc.conf")
	usr := filepath.Join(dir, "usr.conf")
	os.WriteFile(etc, []byte("REBOOT_STRATEGY=off\n"), 0o644)
	os.WriteFile(usr, []byte("REBOOT_STRATEGY=reboot\nGROUP=beta\n"), 0o644)
	env, warns, err := LoadEnv([]string{etc, filepath.Join(dir, "missing.conf"), usr})
	if err != nil || len(warns) != 0 {
		t.Fatal(err, warns)
	}
	want := Env{"REBOOT_STRATEGY": "off", "GROUP": "beta"}
	if !reflect.DeepEqual(env, want) {
		t.Fatalf("got %v, want %v", env, want)
	}
}

func TestConfigFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     Env
		check   func(t *testing.T, c Config)
		wantErr error
	}{
		{name: "defaults", env: Env{}, check: func(t *testing.T, c Config) {
			if c.Strategy != StrategyReboot || c.Window != nil || !reflect.DeepEqual(c.Endpoints, DefaultEndpoints) {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "etcd-lock with window and group", env: Env{
			"REBOOT_STRATEGY": "ETCD-LOCK", "LOCKSMITHD_REBOOT_WINDOW_START": "Sun 04:00",
			"LOCKSMITHD_REBOOT_WINDOW_LENGTH": "1h", "LOCKSMITHD_ENDPOINT": "http://a:2379, http://b:2379",
			"LOCKSMITHD_GROUP": "web", "REBOOT_LOCK_TTL": "2h",
		}, check: func(t *testing.T, c Config) {
			if c.Strategy != StrategyEtcdLock || c.Window == nil || c.Window.Weekday != time.Sunday ||
				!reflect.DeepEqual(c.Endpoints, []string{"http://a:2379", "http://b:2379"}) || c.Group != "web" || c.HolderTTL != 2*time.Hour {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "legacy window keys", env: Env{"REBOOT_WINDOW_START": "22:00", "REBOOT_WINDOW_LENGTH": "3h"}, check: func(t *testing.T, c Config) {
			if c.Window == nil || c.Window.Hour != 22 || c.Window.Length != 3*time.Hour {
				t.Errorf("got %+v", c.Window)
			}
		}},
		{name: "half a window", env: Env{"LOCKSMITHD_REBOOT_WINDOW_START": "22:00"}, wantErr: ErrBadWindow},
		{name: "best-effort removed", env: Env{"REBOOT_STRATEGY": "best-effort"}, wantErr: ErrBadStrategy},
		{name: "bad ttl", env: Env{"REBOOT_LOCK_TTL": "soon"}, wantErr: ErrBadConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ConfigFromEnv(tt.env)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil {
				tt.check(t, c)
			}
		})
	}
}

func TestStrategyRoundTrip(t *testing.T) {
	for _, s := range []Strategy{StrategyReboot, StrategyOff, StrategyEtcdLock, StrategyFleetLock} {
		got, err := ParseStrategy(s.String())
		if err != nil || got != s {
			t.Errorf("ParseStrategy(%q) = %v, %v", s.String(), got, err)
		}
	}
}

func TestEtcdTLS(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile, junk := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), filepath.Join(dir, "junk.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	os.WriteFile(junk, []byte("not pem"), 0o644)

	tests := []struct {
		name      string
		env       Env
		wantNil   bool
		wantCerts int
		wantErr   error
	}{
		{name: "none", env: Env{}, wantNil: true},
		{name: "ca and client cert", env: Env{"LOCKSMITHD_ETCD_CAFILE": certFile, "LOCKSMITHD_ETCD_CERTFILE": certFile, "LOCKSMITHD_ETCD_KEYFILE": keyFile}, wantCerts: 1},
		{name: "ca only", env: Env{"LOCKSMITHD_ETCD_CAFILE": certFile}},
		{name: "junk ca", env: Env{"LOCKSMITHD_ETCD_CAFILE": junk}, wantErr: ErrBadConfig},
		{name: "cert without key", env: Env{"LOCKSMITHD_ETCD_CERTFILE": certFile}, wantErr: ErrBadConfig},
		{name: "key mismatch", env: Env{"LOCKSMITHD_ETCD_CERTFILE": certFile, "LOCKSMITHD_ETCD_KEYFILE": junk}, wantErr: ErrBadConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ConfigFromEnv(tt.env)
			var tc *tls.Config
			if err == nil {
				tc, err = c.EtcdTLS()
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if (tc == nil) != tt.wantNil || (tc != nil && len(tc.Certificates) != tt.wantCerts) {
				t.Fatalf("tls config %+v", tc)
			}
		})
	}
}
