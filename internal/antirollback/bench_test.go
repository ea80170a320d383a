package antirollback

import (
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/abupdate/update_engine/internal/testenv"
)

// BenchmarkCheck measures Check (NV_ReadPublic + NV_Read) and Raise against
// swtpm, next to the floor for any TPM call: one TPM2_GetRandom round trip
// on the same connection scheme.
func BenchmarkCheck(b *testing.B) {
	tp := testenv.StartSwtpm(b, "")
	g, err := Open(b.Context(), Config{Addr: tp.Addr})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	if err := g.Raise(b.Context(), "3815.2.0"); err != nil {
		b.Fatal(err)
	}
	const n = 50
	raw := ctxTPM{b.Context(), &tcpSender{addr: tp.Addr}}
	per := func(f func() error) float64 {
		start := time.Now()
		for range n {
			if err := f(); err != nil {
				b.Fatal(err)
			}
		}
		return float64(time.Since(start).Microseconds()) / n
	}
	for b.Loop() {
		rt := per(func() error {
			_, err := tpm2.GetRandom{BytesRequested: 8}.Execute(raw)
			return err
		})
		check := per(func() error { return g.Check(b.Context(), "3815.2.1", false) })
		raise := 0
		rs := per(func() error {
			raise++
			return g.Raise(b.Context(), (mustVersion(b, "3815.2.0") + Version(raise)).String())
		})
		testenv.Bench(b, "antirollback_tpm_roundtrip", rt, "us")
		testenv.Bench(b, "antirollback_check", check, "us")
		testenv.Bench(b, "antirollback_check_per_roundtrip", check/rt, "x")
		testenv.Bench(b, "antirollback_raise", rs, "us")
		testenv.Bench(b, "antirollback_raise_per_roundtrip", rs/rt, "x")
	}
}
