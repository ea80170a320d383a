package antirollback

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/abupdate/update_engine/pkg/semver"
)

func TestParseVersion(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Version
		wantErr error
	}{
		{"flatcar", "3815.2.0", 0x0EE7_0002_0000_0000, nil},
		{"chromeos", "15183.78.0", 0x3B4F_004E_0000_0000, nil},
		{"one component", "7", 0x0007_0000_0000_0000, nil},
		{"four components", "1.2.3.4", 0x0001_0002_0003_0004, nil},
		{"max", "65535.65535.65535.65535", 0xFFFF_FFFF_FFFF_FFFF, nil},
		{"zero", "0.0.0", 0, nil},
		{"leading zeros", "01.002.0", 0x0001_0002_0000_0000, nil},
		{"build metadata ignored", "3850.0.0+nightly-20240320-2100", 0x0F0A_0000_0000_0000, nil},
		{"pre-release is release minus one", "1.2.3-rc1", 0x0001_0002_0002_FFFF, nil},
		{"pre-release with build", "1.2.3-rc1+b5", 0x0001_0002_0002_FFFF, nil},
		{"empty", "", 0, ErrVersion},
		{"five components", "1.2.3.4.5", 0, ErrVersion},
		{"component too big", "65536.0.0", 0, ErrVersion},
		{"date version", "20240320.1", 0, ErrVersion},
		{"empty component", "1..2", 0, ErrVersion},
		{"trailing dot", "1.2.", 0, ErrVersion},
		{"letters", "1.2.x", 0, ErrVersion},
		{"sign", "+1.2", 0, ErrVersion},
		{"space", " 1.2", 0, ErrVersion},
		{"empty pre-release", "1.2.3-", 0, ErrVersion},
		{"pre-release of zero", "0.0.0-rc1", 0, ErrVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseVersion(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseVersion(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ParseVersion(%q) = %#x, want %#x", tt.in, uint64(got), uint64(tt.want))
			}
		})
	}
}

func TestVersionString(t *testing.T) {
	tests := []struct {
		name string
		in   Version
		want string
	}{
		{"zero", 0, "0.0.0"},
		{"three", 0x0EE7_0002_0000_0000, "3815.2.0"},
		{"fourth shown when set", 0x0001_0002_0002_FFFF, "1.2.2.65535"},
		{"max", 0xFFFF_FFFF_FFFF_FFFF, "65535.65535.65535.65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestVersionOrder(t *testing.T) {
	// Each version is strictly below the next one.
	ordered := []string{"0.0.1", "0.1.0", "1.0.0-alpha", "1.0.0", "1.0.0.1", "1.0.1", "1.9.0", "1.10.0", "3815.1.9", "3815.2.0", "3815.2.1", "3816.0.0", "15183.78.0", "65535.0.0"}
	for i := 1; i < len(ordered); i++ {
		a, err := ParseVersion(ordered[i-1])
		if err != nil {
			t.Fatal(err)
		}
		b, err := ParseVersion(ordered[i])
		if err != nil {
			t.Fatal(err)
		}
		if a >= b {
			t.Errorf("%s (%#x) not below %s (%#x)", ordered[i-1], uint64(a), ordered[i], uint64(b))
		}
	}
}

// FuzzParseVersion checks that a parsed release version prints back to
// itself and that the encoding orders like the components do.
func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"3815.2.0", "1.2.3.4", "1.2.3-rc1", "3850.0.0+nightly", "65535.65535.65535.65535", "1..2", "", "0.0.0-x", "1.10"} {
		f.Add(s, "3815.2.0")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		va, errA := ParseVersion(a)
		vb, errB := ParseVersion(b)
		if errA != nil || errB != nil {
			return
		}
		if !strings.ContainsAny(a, "-") {
			back, err := ParseVersion(va.String())
			if err != nil || back != va {
				t.Fatalf("%q → %s → %#x, %v", a, va, uint64(back), err)
			}
		}
		if strings.ContainsAny(a+b, "-+") {
			return
		}
		if got, want := cmpInt(uint64(va), uint64(vb)), cmpComponents(a, b); got != want {
			t.Fatalf("%q vs %q: encoding compares %d, components %d", a, b, got, want)
		}
	})
}

func cmpInt(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// cmpComponents compares dotted versions component by component.
func cmpComponents(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := range 4 {
		var x, y uint64
		if i < len(pa) {
			x, _ = strconv.ParseUint(pa[i], 10, 64)
		}
		if i < len(pb) {
			y, _ = strconv.ParseUint(pb[i], 10, 64)
		}
		if c := cmpInt(x, y); c != 0 {
			return c
		}
	}
	return 0
}

// TestEncodingKeepsSemverOrder: the floor's encoding never reverses
// pkg/semver's order (a newer version never encodes lower), so the floor
// and the update server agree on "older"; pre-releases of one release
// encode alike, just below it.
func TestEncodingKeepsSemverOrder(t *testing.T) {
	vs := []string{"1.2.2", "1.2.2.65535", "1.2.3-alpha", "1.2.3-rc.2", "1.2.3-rc.10", "1.2.3-rc1", "1.2.3", "1.2.3.1-rc1", "1.2.3.1", "3815.2.0", "3850.0.0-rc1", "3850.0.0+nightly"}
	for _, a := range vs {
		for _, b := range vs {
			ea, erra := ParseVersion(a)
			eb, errb := ParseVersion(b)
			if erra != nil || errb != nil {
				t.Fatal(erra, errb)
			}
			if semver.Compare(a, b) < 0 && ea > eb {
				t.Errorf("%q < %q in semver, but encodes %s > %s", a, b, ea, eb)
			}
		}
	}
	rc1, _ := ParseVersion("1.2.3-rc1")
	rc2, _ := ParseVersion("1.2.3-rc2")
	if rc1 != rc2 {
		t.Errorf("pre-releases of one release encode %s and %s, want alike", rc1, rc2)
	}
}
