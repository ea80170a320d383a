package antirollback

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/abupdate/update_engine/pkg/semver"
)

// Version is a dotted version encoded as a monotonic uint64: up to four
// components of 16 bits each, the first in bits 63–48, the second in 47–32,
// the third in 31–16, the fourth in 15–0; missing components are 0. So
// "3815.2.0" is 0x0EE7_0002_0000_0000, and comparing two Versions as
// integers compares the versions.
type Version uint64

// ParseVersion encodes s ("3815.2.0", "15183.78.0", "1.2.3.4"), read by
// pkg/semver, the one parser and order of versions: the encoding keeps
// semver's order except that all pre-releases of a release encode alike.
//
// Build metadata after '+' is ignored, as semver says it does not take part
// in ordering ("3850.0.0+nightly-20240320-2100" is 3850.0.0). A pre-release
// after '-' sorts below its release in semver; it is encoded as the release
// minus one ("1.2.3-rc1" is 1.2.2.65535), the largest value below the
// release. That keeps the floor a lower bound: a floor raised to a
// pre-release never refuses the release, and never refuses another
// pre-release of the same version.
//
// Versions that do not fit (more than four components, a component above
// 65535, an empty or non-decimal component, "0-x") are refused with an
// error wrapping ErrVersion: the floor cannot vouch for them.
func ParseVersion(s string) (Version, error) {
	sv, err := semver.Parse(s)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrVersion, err)
	}
	if len(sv.Core) > 4 {
		return 0, fmt.Errorf("%w: %q: %d components, at most 4 fit", ErrVersion, s, len(sv.Core))
	}
	var v uint64
	for i, n := range sv.Core {
		if n > 0xFFFF {
			return 0, fmt.Errorf("%w: %q: component %d (%d) is above 65535", ErrVersion, s, i+1, n)
		}
		v |= n << (48 - 16*uint(i))
	}
	if sv.IsPrerelease() {
		if v == 0 {
			return 0, fmt.Errorf("%w: %q: a pre-release of 0 has no encoding", ErrVersion, s)
		}
		v--
	}
	return Version(v), nil
}

// String renders v as dotted decimal with at least three components:
// 0x0EE7_0002_0000_0000 is "3815.2.0", a non-zero fourth one is shown.
func (v Version) String() string {
	c := [4]uint64{uint64(v) >> 48, uint64(v) >> 32 & 0xFFFF, uint64(v) >> 16 & 0xFFFF, uint64(v) & 0xFFFF}
	n := 3
	if c[3] != 0 {
		n = 4
	}
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.FormatUint(c[i], 10))
	}
	return b.String()
}
