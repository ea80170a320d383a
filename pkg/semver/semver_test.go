package semver

import (
	"errors"
	"slices"
	"testing"
)

// TestPrereleaseOrder pins the order of pre-releases, where the server's
// old comparator (string suffixes) and the floor's (all pre-releases of a
// core equal) disagreed: semver precedence, older first.
func TestPrereleaseOrder(t *testing.T) {
	ordered := []string{
		"1.2.2",
		"1.2.3-alpha",
		"1.2.3-alpha.1",
		"1.2.3-alpha.beta",
		"1.2.3-beta",
		"1.2.3-beta.2",
		"1.2.3-beta.11",
		"1.2.3-rc.1",
		"1.2.3-rc1",
		"1.2.3-rc10", // identifiers that are not numbers compare as text
		"1.2.3-rc2",
		"1.2.3",
		"1.2.3.1-rc1",
		"1.2.3.1",
		"3850.0.0",
	}
	for i := range ordered {
		for j := range ordered {
			want := compareUint(uint64(i), uint64(j))
			if got := Compare(ordered[i], ordered[j]); got != want {
				t.Errorf("Compare(%q, %q) = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
}

func TestCompareEqual(t *testing.T) {
	for _, p := range [][2]string{
		{"1.2", "1.2.0"},
		{"1.2.0+build5", "1.2.0"},
		{"3850.0.0-rc1+nightly", "3850.0.0-rc1"},
		{"0.0.0.0", "0"},
	} {
		if c := Compare(p[0], p[1]); c != 0 {
			t.Errorf("Compare(%q, %q) = %d, want 0", p[0], p[1], c)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, s := range []string{"", "1..2", "1.x.3", "1.2.3-", "-rc1", "1.2.99999999999999999999"} {
		if _, err := Parse(s); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) = %v, want ErrSyntax", s, err)
		}
	}
	v, err := Parse("3850.0.0-rc.2+x")
	if err != nil || !slices.Equal(v.Core, []uint64{3850, 0, 0}) || !slices.Equal(v.Pre, []string{"rc", "2"}) || !v.IsPrerelease() {
		t.Errorf("Parse = %+v, %v", v, err)
	}
}

// TestCompareInvalid: a bad string sorts below every valid version, so
// a catalog with one still has a total order.
func TestCompareInvalid(t *testing.T) {
	if Compare("bogus", "0.0.1") != -1 || Compare("0.0.1", "bogus") != 1 {
		t.Error("an invalid version must sort below a valid one")
	}
	if Compare("a", "b") != -1 || Compare("b", "b") != 0 {
		t.Error("two invalid versions compare as strings")
	}
}
