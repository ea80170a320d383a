// Package semver orders OS versions ("3815.2.0", "3850.0.0-rc1",
// "3850.0.0+nightly") by SemVer 2.0 precedence (semver.org, section 11),
// on a dotted numeric core of any length: missing core fields count as 0
// ("1.2" == "1.2.0"), build metadata after '+' is ignored, and a
// pre-release after '-' sorts below its release, pre-releases of the same
// core ordered identifier by identifier ("rc.2" < "rc.10" < "rc1" <
// "rc2", numeric identifiers below alphanumeric ones).
//
// Why a package of its own: the update server (pkg/omaha/server) picks
// the newest payload and the anti-rollback floor (internal/antirollback)
// refuses older ones; both must agree on "older", and a pkg/ leaf is the
// one place both may import. The floor's TPM encoding stays in
// internal/antirollback; it is built on Parse and never orders two
// versions against Compare (its test checks that).
//
// The package imports only the standard library.
package semver

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrSyntax: a version with an empty or non-decimal core field, or an
// empty pre-release.
var ErrSyntax = errors.New("semver: malformed version")

// Version is a parsed version.
type Version struct {
	// Core is the dotted numeric part, as written (no padding).
	Core []uint64
	// Pre is the pre-release's dot-separated identifiers; nil for a
	// release.
	Pre []string
}

// Parse reads s: core fields, then optionally '-' and a pre-release,
// then optionally '+' and build metadata (dropped).
func Parse(s string) (Version, error) {
	rest, _, _ := strings.Cut(s, "+")
	core, pre, hasPre := strings.Cut(rest, "-")
	var v Version
	for i, f := range strings.Split(core, ".") {
		n, err := strconv.ParseUint(f, 10, 64)
		if f == "" || strings.TrimLeft(f, "0123456789") != "" || err != nil {
			return Version{}, fmt.Errorf("%w: %q: core field %d (%q) is not a decimal number", ErrSyntax, s, i+1, f)
		}
		v.Core = append(v.Core, n)
	}
	if hasPre {
		if pre == "" {
			return Version{}, fmt.Errorf("%w: %q: empty pre-release", ErrSyntax, s)
		}
		v.Pre = strings.Split(pre, ".")
	}
	return v, nil
}

// IsPrerelease reports whether v has a pre-release part.
func (v Version) IsPrerelease() bool { return v.Pre != nil }

// Compare returns -1, 0 or 1 as v is older than, equal to or newer than w.
func (v Version) Compare(w Version) int {
	for i := range max(len(v.Core), len(w.Core)) {
		if c := compareUint(field(v.Core, i), field(w.Core, i)); c != 0 {
			return c
		}
	}
	switch {
	case v.Pre == nil && w.Pre == nil:
		return 0
	case v.Pre == nil: // 1.0.0 > 1.0.0-rc1
		return 1
	case w.Pre == nil:
		return -1
	}
	return comparePre(v.Pre, w.Pre)
}

// Compare orders two version strings. A string Parse refuses sorts below
// every valid version, and two such strings compare as strings, so that
// sorting a list with a bad entry still gives one order.
func Compare(a, b string) int {
	va, erra := Parse(a)
	vb, errb := Parse(b)
	switch {
	case erra != nil && errb != nil:
		return strings.Compare(a, b)
	case erra != nil:
		return -1
	case errb != nil:
		return 1
	}
	return va.Compare(vb)
}

func field(core []uint64, i int) uint64 {
	if i < len(core) {
		return core[i]
	}
	return 0
}

func compareUint(x, y uint64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// comparePre applies semver 11.4: identifier by identifier, numeric ones
// numerically and below alphanumeric ones, which compare in ASCII order;
// a longer list wins when all before are equal.
func comparePre(a, b []string) int {
	for i := range min(len(a), len(b)) {
		x, xerr := strconv.ParseUint(a[i], 10, 64)
		y, yerr := strconv.ParseUint(b[i], 10, 64)
		var c int
		switch {
		case xerr == nil && yerr == nil:
			c = compareUint(x, y)
		case xerr == nil:
			c = -1
		case yerr == nil:
			c = 1
		default:
			c = strings.Compare(a[i], b[i])
		}
		if c != 0 {
			return c
		}
	}
	return compareUint(uint64(len(a)), uint64(len(b)))
}
