package antirollback

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/abupdate/update_engine/internal/testenv"
)

func TestNoTPM(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "not-a-device")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		device  string
		require bool
		wantLog string // the one line logged; "" when Open must fail
	}{
		{"absent", filepath.Join(dir, "tpmrm0"), false, "does not exist"},
		{"not a device", regular, false, "cannot be opened"},
		{"absent but required", filepath.Join(dir, "tpmrm0"), true, ""},
		{"not a device but required", regular, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			var log logRecorder
			g, err := Open(ctx, Config{Device: tt.device, Require: tt.require, Logf: log.logf})
			if tt.wantLog == "" {
				if !errors.Is(err, ErrNoTPM) {
					t.Fatalf("Open = %v, want ErrNoTPM", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer g.Close()
			if lines := log.all(); len(lines) != 1 || !containsLine(lines, tt.wantLog) || !containsLine(lines, tt.device) {
				t.Fatalf("log = %q, want one line naming %s and saying %q", lines, tt.device, tt.wantLog)
			}
			t.Logf("logged: %s", log.all()[0])
			if g.Enabled() {
				t.Error("Enabled() = true without a TPM")
			}
			if err := g.Check(ctx, "0.0.1", false); err != nil {
				t.Errorf("Check without TPM = %v, want nil (skipped)", err)
			}
			if err := g.Raise(ctx, "3815.2.0"); err != nil {
				t.Errorf("Raise without TPM = %v, want nil", err)
			}
			if v, err := g.Floor(ctx); v != 0 || err != nil {
				t.Errorf("Floor without TPM = %s, %v; want 0.0.0, nil", v, err)
			}
			if _, err := g.ExtendPCR(ctx, 16, make([]byte, 32)); !errors.Is(err, ErrNoTPM) {
				t.Errorf("ExtendPCR without TPM = %v, want ErrNoTPM", err)
			}
			if n := len(log.all()); n != 1 {
				t.Errorf("%d log lines after use, want still 1: %q", n, log.all())
			}
		})
	}
}

func TestOpenBadIndex(t *testing.T) {
	tests := []struct {
		name  string
		index uint32
	}{
		{"persistent object handle", 0x81000001},
		{"PCR handle", 0x00000010},
		{"owner hierarchy", 0x40000001},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Open(t.Context(), Config{Addr: "127.0.0.1:1", NVIndex: tt.index}); err == nil {
				t.Fatalf("Open accepted NV index 0x%08x", tt.index)
			}
		})
	}
}

// fillNV defines indices, 2 KiB ones first and then ever smaller ones,
// until not even a 1-byte index fits (TPM_RC_NV_SPACE). It returns how
// many it defined.
func fillNV(t *testing.T, tp *testenv.Swtpm) int {
	t.Helper()
	tpm := ctxTPM{t.Context(), &tcpSender{addr: tp.Addr}}
	n := 0
	for size := uint16(2048); size > 0; {
		if n > 1000 {
			t.Fatal("NV never filled up after 1000 indices")
		}
		_, err := tpm2.NVDefineSpace{
			AuthHandle: tpm2.TPMRHOwner,
			PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
				NVIndex:    tpm2.TPMHandle(0x01100000 + n),
				NameAlg:    tpm2.TPMAlgSHA256,
				Attributes: tpm2.TPMANV{OwnerWrite: true, OwnerRead: true, NT: tpm2.TPMNTOrdinary},
				DataSize:   size,
			}),
		}.Execute(tpm)
		switch {
		case errors.Is(err, tpm2.TPMRCNVSpace):
			size /= 2
		case err != nil:
			t.Fatalf("define filler index %d of %d bytes: %v", n, size, err)
		default:
			n++
		}
	}
	return n
}

func TestTPMFull(t *testing.T) {
	ctx := t.Context()
	t.Run("fresh", func(t *testing.T) {
		tp := testenv.StartSwtpm(t, "")
		n := fillNV(t, tp)
		t.Logf("NV full after %d indices", n)
		var log logRecorder
		g := openSwtpm(t, tp, Config{Logf: log.logf})
		err := g.Raise(ctx, "3815.2.0")
		if !errors.Is(err, ErrNVFull) || !errors.Is(err, ErrTPM) || !errors.Is(err, tpm2.TPMRCNVSpace) {
			t.Fatalf("Raise on a full TPM = %v, want ErrNVFull, ErrTPM and TPM_RC_NV_SPACE", err)
		}
		t.Logf("Raise on a full TPM: %v", err)
		// The engine keeps working: no floor, every check passes.
		if err := g.Check(ctx, "1.0.0", false); err != nil {
			t.Fatalf("Check on a full TPM = %v, want nil", err)
		}
		if _, err := nvread(t, tp, DefaultNVIndex); err == nil {
			t.Fatal("floor index exists although the TPM was full")
		}
	})
	t.Run("index defined before", func(t *testing.T) {
		tp := testenv.StartSwtpm(t, "")
		g := openSwtpm(t, tp, Config{})
		if err := g.Raise(ctx, "3815.2.0"); err != nil {
			t.Fatal(err)
		}
		fillNV(t, tp)
		if err := g.Raise(ctx, "3816.0.0"); err != nil {
			t.Fatalf("Raise of an existing index on a full TPM = %v, want nil", err)
		}
		if v, err := nvread(t, tp, DefaultNVIndex); err != nil || v != mustVersion(t, "3816.0.0") {
			t.Fatalf("tpm2_nvread = %s, %v; want 3816.0.0", v, err)
		}
	})
}

func TestTPMErrors(t *testing.T) {
	ctx := t.Context()
	t.Run("swtpm killed", func(t *testing.T) {
		tp := testenv.StartSwtpm(t, "")
		var log logRecorder
		g := openSwtpm(t, tp, Config{Logf: log.logf})
		if err := g.Raise(ctx, "3815.2.0"); err != nil {
			t.Fatal(err)
		}
		req := openSwtpm(t, tp, Config{Require: true})
		tp.Kill(t)

		if _, err := g.Floor(ctx); !errors.Is(err, ErrTPM) {
			t.Errorf("Floor = %v, want ErrTPM", err)
		}
		if err := g.Raise(ctx, "3816.0.0"); !errors.Is(err, ErrTPM) {
			t.Errorf("Raise = %v, want ErrTPM", err)
		}
		if _, err := g.ExtendPCR(ctx, 16, make([]byte, 32)); !errors.Is(err, ErrTPM) {
			t.Errorf("ExtendPCR = %v, want ErrTPM", err)
		}
		if err := g.Check(ctx, "1.0.0", false); err != nil {
			t.Errorf("Check with a failing optional TPM = %v, want nil (skipped)", err)
		}
		if !containsLine(log.all(), "skipped, cannot read the TPM floor") {
			t.Errorf("skipped check not logged: %q", log.all())
		}
		if err := req.Check(ctx, "1.0.0", false); !errors.Is(err, ErrTPM) {
			t.Errorf("Check with a failing required TPM = %v, want ErrTPM", err)
		}
		if err := req.Check(ctx, "1.0.0", true); err != nil {
			t.Errorf("operator rollback with a failing required TPM = %v, want nil", err)
		}
		// Back up: the same Guard works again, the floor is still there.
		tp.Restart(t)
		if err := g.Check(ctx, "1.0.0", false); !errors.Is(err, ErrBelowFloor) {
			t.Errorf("Check after restart = %v, want ErrBelowFloor", err)
		}
	})
	t.Run("wrong owner password", func(t *testing.T) {
		tp := testenv.StartSwtpm(t, "")
		if _, err := tpm2Tool(t, tp, "tpm2_changeauth", "-c", "o", "s3cret"); err != nil {
			t.Fatal(err)
		}
		g := openSwtpm(t, tp, Config{})
		err := g.Raise(ctx, "3815.2.0")
		if !errors.Is(err, ErrTPM) || !errors.Is(err, tpm2.TPMRCBadAuth) {
			t.Fatalf("Raise with no owner password = %v, want ErrTPM and TPM_RC_BAD_AUTH", err)
		}
		t.Logf("Raise with no owner password: %v", err)
		g = openSwtpm(t, tp, Config{OwnerAuth: []byte("s3cret")})
		if err := g.Raise(ctx, "3815.2.0"); err != nil {
			t.Fatalf("Raise with the owner password: %v", err)
		}
		if v, err := nvread(t, tp, DefaultNVIndex); err != nil || v != mustVersion(t, "3815.2.0") {
			t.Fatalf("tpm2_nvread = %s, %v", v, err)
		}
	})
	t.Run("context canceled", func(t *testing.T) {
		tp := testenv.StartSwtpm(t, "")
		g := openSwtpm(t, tp, Config{})
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := g.Raise(cctx, "3815.2.0"); !errors.Is(err, context.Canceled) {
			t.Fatalf("Raise = %v, want context.Canceled", err)
		}
		if err := g.Check(cctx, "1.0.0", false); !errors.Is(err, context.Canceled) {
			t.Fatalf("Check = %v, want context.Canceled", err)
		}
	})
	t.Run("unreachable address", func(t *testing.T) {
		g, err := Open(ctx, Config{Addr: "127.0.0.1:1", Require: true})
		if err != nil {
			t.Fatal(err)
		}
		_, err = g.Floor(ctx)
		if !errors.Is(err, ErrTPM) {
			t.Fatalf("Floor = %v, want ErrTPM", err)
		}
		t.Log(fmt.Sprint(err))
	})
}
