package omaha

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultMaxFailureCountPerURL is FUE's kDefaultMaxFailureCountPerUrl, used
// when the response names none (or an unparsable one).
const DefaultMaxFailureCountPerURL = 10

// Plan is what an update-check response offers, after FUE's rules.
// When NoUpdate is true only PollInterval (and Raw) are set.
type Plan struct {
	NoUpdate bool
	// PollInterval is the server-dictated check interval (updatecheck
	// PollInterval, seconds), 0 when absent or not an integer.
	PollInterval time.Duration

	Version     string   // manifest version
	URLs        []string // codebase (+ "/" if missing) + package name, in response order
	PackageName string   // first package's name
	Size        int64    // first package's size, > 0
	// SHA256 is the postinstall action's sha256: base64 SHA-256 of the whole
	// payload, as sent (compare with SHA256Bytes or the base64 string).
	SHA256 string

	MaxFailureCountPerURL int  // MaxFailureCountPerUrl, default 10
	IsDeltaPayload        bool // IsDeltaPayload="true"
	DisablePayloadBackoff bool // DisablePayloadBackoff="true"
	// CUE's informational postinstall attributes.
	MoreInfo, Deadline string
	NeedsAdmin, Prompt bool

	// Packages lists every package of the manifest (the first is the
	// payload; Flatcar's postinst fetches extra ones such as oem-<id>.gz).
	Packages []PackageInfo
	// Raw is the whole response body (FUE saves it as the full-response pref).
	Raw []byte
}

// PackageInfo is one <package> with its hashes decoded where possible.
type PackageInfo struct {
	Name     string
	Size     int64
	Required bool
	SHA1     []byte // decoded base64 hash; nil when absent or undecodable
	// SHA256 is hash_sha256 decoded from hex (Flatcar) or base64 (go-omaha);
	// nil when absent or neither.
	SHA256 []byte
}

// SHA256Bytes decodes the postinstall sha256 (base64, 32 bytes).
func (p *Plan) SHA256Bytes() ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(p.SHA256)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("%w: postinstall sha256 %q is not base64 SHA-256", ErrInvalidResponse, p.SHA256)
	}
	return b, nil
}

// ParseResponse applies FUE's ParseResponse rules to an update-check
// response body:
//   - empty body: ErrEmptyResponse (30); not well-formed: ErrXMLParse (31);
//   - first /response/app/updatecheck, its status: "noupdate" gives a Plan
//     with NoUpdate, "ok" continues, missing or other: ErrInvalidResponse (34);
//   - first …/updatecheck/manifest (version); every …/urls/url with a
//     non-empty codebase; first …/packages/package with a name and size > 0;
//     the first …/actions/action with event="postinstall" and a non-empty
//     sha256; anything missing: ErrInvalidResponse (34).
//
// Paths are matched across all apps in document order, first match used,
// as FUE's XPath lookups do.
func ParseResponse(body []byte) (*Plan, error) {
	if len(body) == 0 {
		return nil, ErrEmptyResponse
	}
	root, err := parseTree(body)
	if err != nil {
		return nil, err
	}
	plan := &Plan{Raw: body}
	if err := plan.readUpdateCheck(root); err != nil {
		return nil, err
	}
	if plan.NoUpdate {
		return plan, nil
	}
	manifests := root.xpath("response", "app", "updatecheck", "manifest")
	if len(manifests) == 0 {
		return nil, invalid("no manifest")
	}
	plan.Version = manifests[0].get("version")
	for _, step := range []func(*node) error{plan.readURLs, plan.readPackages, plan.readPostinstall} {
		if err := step(root); err != nil {
			return nil, err
		}
	}
	return plan, nil
}

// invalid is an ErrInvalidResponse saying what is wrong.
func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidResponse}, a...)...)
}

// readUpdateCheck reads <updatecheck>: its PollInterval and status
// (noupdate sets NoUpdate; anything but ok is invalid).
func (plan *Plan) readUpdateCheck(root *node) error {
	ucs := root.xpath("response", "app", "updatecheck")
	if len(ucs) == 0 {
		return invalid("no /response/app/updatecheck")
	}
	uc := ucs[0]
	if n, err := strconv.Atoi(uc.get("PollInterval")); err == nil && n > 0 {
		plan.PollInterval = time.Duration(n) * time.Second
	}
	status, ok := uc.attr("status")
	switch {
	case !ok:
		return invalid("updatecheck has no status")
	case status == "noupdate":
		plan.NoUpdate = true
	case status != "ok":
		return invalid("updatecheck status %q", status)
	}
	return nil
}

// readURLs reads the codebases of <urls>.
func (plan *Plan) readURLs(root *node) error {
	urls := root.xpath("response", "app", "updatecheck", "urls", "url")
	if len(urls) == 0 {
		return invalid("no urls")
	}
	for i, u := range urls {
		cb := u.get("codebase")
		if cb == "" {
			return invalid("url %d has an empty codebase", i)
		}
		plan.URLs = append(plan.URLs, cb)
	}
	return nil
}

// readPackages reads the packages; the first is the payload, so its name
// completes the URLs and its size is required.
func (plan *Plan) readPackages(root *node) error {
	pkgs := root.xpath("response", "app", "updatecheck", "manifest", "packages", "package")
	if len(pkgs) == 0 {
		return invalid("no package")
	}
	for _, pn := range pkgs {
		plan.Packages = append(plan.Packages, packageInfo(pn))
	}
	plan.PackageName = pkgs[0].get("name")
	if plan.PackageName == "" {
		return invalid("package has an empty name")
	}
	for i, u := range plan.URLs {
		if !strings.HasSuffix(u, "/") {
			u += "/"
		}
		plan.URLs[i] = u + plan.PackageName
	}
	plan.Size = parseCInt(pkgs[0].get("size"))
	if plan.Size <= 0 {
		return invalid("package size %q", pkgs[0].get("size"))
	}
	return nil
}

// readPostinstall reads the postinstall action: the payload's SHA-256
// (required) and FUE's flags.
func (plan *Plan) readPostinstall(root *node) error {
	var pie *node
	for _, a := range root.xpath("response", "app", "updatecheck", "manifest", "actions", "action") {
		if a.get("event") == "postinstall" {
			pie = a
			break
		}
	}
	if pie == nil {
		return invalid("no postinstall action")
	}
	plan.SHA256 = pie.get("sha256")
	if plan.SHA256 == "" {
		return invalid("postinstall action has an empty sha256")
	}
	plan.MoreInfo = pie.get("MoreInfo")
	plan.NeedsAdmin = pie.get("needsadmin") == "true"
	plan.Prompt = pie.get("Prompt") == "true"
	plan.Deadline = pie.get("deadline")
	plan.MaxFailureCountPerURL = DefaultMaxFailureCountPerURL
	if n, err := strconv.ParseUint(pie.get("MaxFailureCountPerUrl"), 10, 32); err == nil {
		plan.MaxFailureCountPerURL = int(n)
	}
	plan.IsDeltaPayload = pie.get("IsDeltaPayload") == "true"
	plan.DisablePayloadBackoff = pie.get("DisablePayloadBackoff") == "true"
	return nil
}

func packageInfo(n *node) PackageInfo {
	pi := PackageInfo{
		Name:     n.get("name"),
		Size:     parseCInt(n.get("size")),
		Required: n.get("required") == "true",
	}
	if b, err := base64.StdEncoding.DecodeString(n.get("hash")); err == nil && len(b) == 20 {
		pi.SHA1 = b
	}
	pi.SHA256 = DecodeSHA256(n.get("hash_sha256"))
	return pi
}

// DecodeSHA256 decodes a SHA-256 written as 64 hex digits (Flatcar,
// Nebraska) or base64 (go-omaha); nil when it is neither.
func DecodeSHA256(s string) []byte {
	if len(s) == 64 {
		if b, err := hex.DecodeString(s); err == nil {
			return b
		}
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == 32 {
		return b
	}
	return nil
}

// parseCInt parses like sscanf("%" PRIi64): leading space, optional sign,
// 0x hex or leading-0 octal or decimal, stopping at the first non-digit; 0
// when no digit is found. Overflow saturates.
func parseCInt(s string) int64 {
	s = strings.TrimLeft(s, " \t\n\v\f\r")
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	base := int64(10)
	switch {
	case len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && isDigit(s[2], 16):
		base, s = 16, s[2:]
	case len(s) > 1 && s[0] == '0':
		base, s = 8, s[1:]
	}
	const max = int64(^uint64(0) >> 1)
	var v int64
	for i := 0; i < len(s) && isDigit(s[i], base); i++ {
		d := digitVal(s[i])
		if v > (max-d)/base {
			v = max
			break
		}
		v = v*base + d
	}
	if neg {
		return -v
	}
	return v
}

func digitVal(c byte) int64 {
	switch {
	case c >= '0' && c <= '9':
		return int64(c - '0')
	case c >= 'a' && c <= 'f':
		return int64(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int64(c-'A') + 10
	}
	return 99
}

func isDigit(c byte, base int64) bool { return digitVal(c) < base }
