package antirollback

import (
	"errors"
	"strings"
	"testing"

	"github.com/abupdate/update_engine/internal/testenv"
)

func TestFloorRaiseAndCheck(t *testing.T) {
	tp := testenv.StartSwtpm(t, "")
	var log logRecorder
	g := openSwtpm(t, tp, Config{Logf: log.logf})
	ctx := t.Context()

	// Fresh TPM: no index, floor 0, anything passes.
	if v, err := g.Floor(ctx); err != nil || v != 0 {
		t.Fatalf("fresh Floor = %s, %v; want 0.0.0, nil", v, err)
	}
	if _, err := nvread(t, tp, DefaultNVIndex); err == nil {
		t.Fatal("tpm2_nvread found the floor index on a fresh TPM")
	}
	for _, c := range []string{"1.0.0", "20240320.1"} {
		if err := g.Check(ctx, c, false); err != nil {
			t.Fatalf("Check(%s) on fresh TPM: %v", c, err)
		}
	}

	if err := g.Raise(ctx, "3815.2.0"); err != nil {
		t.Fatalf("Raise: %v", err)
	}
	if got, err := nvread(t, tp, DefaultNVIndex); err != nil || got != mustVersion(t, "3815.2.0") {
		t.Fatalf("tpm2_nvread after Raise = %s, %v; want 3815.2.0", got, err)
	}

	checks := []struct {
		name          string
		candidate     string
		allowRollback bool
		wantErr       error
	}{
		{"equal passes", "3815.2.0", false, nil},
		{"higher patch passes", "3815.2.1", false, nil},
		{"higher major passes", "3816.0.0", false, nil},
		{"lower minor refused", "3815.1.9", false, ErrBelowFloor},
		{"lower major refused", "3510.3.0", false, ErrBelowFloor},
		{"pre-release of floor refused", "3815.2.0-rc1", false, ErrBelowFloor},
		{"rollback allowed by operator", "3510.3.0", true, nil},
		{"unencodable refused", "20240320.1", false, ErrVersion},
		{"unencodable allowed by operator", "20240320.1", true, nil},
	}
	for _, tt := range checks {
		t.Run(tt.name, func(t *testing.T) {
			err := g.Check(ctx, tt.candidate, tt.allowRollback)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Check(%s, %v) = %v, want %v", tt.candidate, tt.allowRollback, err, tt.wantErr)
			}
		})
	}
	if !containsLine(log.all(), "allowed by the operator") {
		t.Errorf("allowed rollback not logged; log: %q", log.all())
	}

	raises := []struct {
		name    string
		booted  string
		want    string // floor afterwards, read with tpm2_nvread
		wantErr error
	}{
		{"lower is ignored", "3000.0.0", "3815.2.0", nil},
		{"equal is a no-op", "3815.2.0", "3815.2.0", nil},
		{"higher raises", "3850.1.0", "3850.1.0", nil},
		{"four components", "3850.1.0.7", "3850.1.0.7", nil},
		{"unencodable refused", "1.2.3.4.5", "3850.1.0.7", ErrVersion},
	}
	for _, tt := range raises {
		t.Run(tt.name, func(t *testing.T) {
			if err := g.Raise(ctx, tt.booted); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Raise(%s) = %v, want %v", tt.booted, err, tt.wantErr)
			}
			got, err := nvread(t, tp, DefaultNVIndex)
			if err != nil || got != mustVersion(t, tt.want) {
				t.Fatalf("tpm2_nvread = %s, %v; want %s", got, err, tt.want)
			}
			if v, err := g.Floor(ctx); err != nil || v != got {
				t.Fatalf("Floor = %s, %v; tpm2_nvread says %s", v, err, got)
			}
		})
	}
}

func TestFloorPersists(t *testing.T) {
	tp := testenv.StartSwtpm(t, "")
	ctx := t.Context()
	const index = 0x01000123 // a configured index, not the default
	cfg := Config{NVIndex: index}
	g := openSwtpm(t, tp, cfg)
	if err := g.Raise(ctx, "3815.2.0"); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name  string
		apply func()
	}{
		{"reopen", func() {}},
		{"swtpm restart", func() { tp.Restart(t) }},
		{"swtpm crash and restart", func() { tp.Kill(t); tp.Restart(t) }},
	}
	want := mustVersion(t, "3815.2.0")
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.apply()
			g := openSwtpm(t, tp, cfg)
			if v, err := g.Floor(ctx); err != nil || v != want {
				t.Fatalf("Floor = %s, %v; want %s", v, err, want)
			}
			if v, err := nvread(t, tp, index); err != nil || v != want {
				t.Fatalf("tpm2_nvread = %s, %v; want %s", v, err, want)
			}
			if err := g.Check(ctx, "3815.1.0", false); !errors.Is(err, ErrBelowFloor) {
				t.Fatalf("Check(3815.1.0) = %v, want ErrBelowFloor", err)
			}
		})
	}
	if _, err := nvread(t, tp, DefaultNVIndex); err == nil {
		t.Error("the default index was defined although another was configured")
	}
}

func TestIndexConflict(t *testing.T) {
	tp := testenv.StartSwtpm(t, "")
	ctx := t.Context()
	// Someone else's 16-byte index sits at our handle.
	if _, err := tpm2Tool(t, tp, "tpm2_nvdefine", "-C", "o", "-s", "16", "-a", "ownerwrite|ownerread|authread|authwrite", "0x01005545"); err != nil {
		t.Fatal(err)
	}
	g := openSwtpm(t, tp, Config{Require: true})
	if _, err := g.Floor(ctx); !errors.Is(err, ErrIndexConflict) {
		t.Fatalf("Floor = %v, want ErrIndexConflict", err)
	}
	if err := g.Raise(ctx, "1.0.0"); !errors.Is(err, ErrIndexConflict) {
		t.Fatalf("Raise = %v, want ErrIndexConflict", err)
	}
	if err := g.Check(ctx, "1.0.0", false); !errors.Is(err, ErrIndexConflict) {
		t.Fatalf("Check with a required TPM = %v, want ErrIndexConflict", err)
	}
}

func TestConcurrentRaises(t *testing.T) {
	tp := testenv.StartSwtpm(t, "")
	g := openSwtpm(t, tp, Config{})
	versions := []string{"3815.2.0", "3900.0.0", "3816.1.0", "3899.9.9", "3000.0.0", "3850.0.0"}
	errs := make(chan error, len(versions))
	for _, v := range versions {
		go func() { errs <- g.Raise(t.Context(), v) }()
	}
	for range versions {
		if err := <-errs; err != nil {
			t.Fatalf("Raise: %v", err)
		}
	}
	if v, err := nvread(t, tp, DefaultNVIndex); err != nil || v != mustVersion(t, "3900.0.0") {
		t.Fatalf("tpm2_nvread after concurrent raises = %s, %v; want the highest, 3900.0.0", v, err)
	}
}

func containsLine(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}
