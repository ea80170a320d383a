package antirollback

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"

	"github.com/abupdate/update_engine/internal/testenv"
)

func TestExtendPCR(t *testing.T) {
	tp := testenv.StartSwtpm(t, "")
	g := openSwtpm(t, tp, Config{})
	ctx := t.Context()
	imageA := sha256.Sum256([]byte("image A"))
	imageB := sha256.Sum256([]byte("image B"))

	// expected[pcr] follows the PCR locally: new = SHA-256(old || digest).
	expected := map[int][]byte{}
	tests := []struct {
		name  string
		pcr   int
		image [32]byte
	}{
		{"first extend of PCR 16", 16, imageA},
		{"second extend chains", 16, imageB},
		{"PCR 23", 23, imageB},
		{"PCR 0 extendable from the OS", 0, imageA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, ok := expected[tt.pcr]
			if !ok {
				before = make([]byte, 32)
				if tt.pcr == 0 { // swtpm's PCR 0 starts at zero as well
					before = pcrread(t, tp, 0)
				}
			}
			h := sha256.New()
			h.Write(before)
			h.Write(tt.image[:])
			want := h.Sum(nil)
			expected[tt.pcr] = want

			rec, err := g.ExtendPCR(ctx, tt.pcr, tt.image[:])
			if err != nil {
				t.Fatalf("ExtendPCR: %v", err)
			}
			wantRec := PCRRecord{PCR: tt.pcr, Bank: "sha256", ImageSHA256: hex.EncodeToString(tt.image[:]),
				Before: hex.EncodeToString(before), Expected: hex.EncodeToString(want)}
			if rec != wantRec {
				t.Fatalf("record = %+v, want %+v", rec, wantRec)
			}
			if got := pcrread(t, tp, tt.pcr); !bytes.Equal(got, want) {
				t.Fatalf("tpm2_pcrread = %x, want %x", got, want)
			}
		})
	}

	t.Run("record JSON", func(t *testing.T) {
		rec, err := g.ExtendPCR(ctx, 23, imageA[:])
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"pcr", "bank", "image_sha256", "before", "expected"} {
			if _, ok := m[k]; !ok {
				t.Errorf("JSON %s lacks %q", b, k)
			}
		}
	})
}

func TestExtendPCRBadInput(t *testing.T) {
	tp := testenv.StartSwtpm(t, "")
	g := openSwtpm(t, tp, Config{})
	tests := []struct {
		name  string
		pcr   int
		image []byte
	}{
		{"PCR above 23", 24, make([]byte, 32)},
		{"negative PCR", -1, make([]byte, 32)},
		{"short hash", 16, make([]byte, 31)},
		{"SHA-1 sized hash", 16, make([]byte, 20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := g.ExtendPCR(t.Context(), tt.pcr, tt.image); err == nil {
				t.Fatal("ExtendPCR accepted bad input")
			}
		})
	}
	if got := pcrread(t, tp, 16); !bytes.Equal(got, make([]byte, 32)) {
		t.Fatalf("PCR 16 = %x after refused extends, want zeros", got)
	}
}
