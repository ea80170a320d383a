// Package updateconf reads update.conf, the KEY=VALUE file that Flatcar's
// update_engine and locksmithd share (SPEC.md section 6). It is the one
// parser of that file in this project: the update engine
// (internal/config) and the reboot manager (pkg/rebootmgr) both use it, so
// a line means the same to both daemons.
//
// Syntax, as systemd reads an EnvironmentFile= and as a shell sources it:
//
//	# comment            ; comment            blank lines
//	KEY=value            white space around KEY and value trimmed
//	export KEY=value     the shell's export prefix is ignored
//	KEY="a \"b\" \\ \$c" double quotes: \" \\ \n \t \$ \` \' escapes
//	KEY='literal'        single quotes: no escapes
//	KEY=one \            a trailing backslash (outside quotes)
//	    two              continues the value on the next line
//
// The last assignment of a key in one file wins. Files are searched in
// order and the first file that assigns a key wins for that key.
//
// Leniency (Flatcar's update_engine never refuses its configuration, and a
// daemon that exits on a typo leaves the booted slot unconfirmed): a line
// that does not parse is reported as a Warning and skipped, and the rest of
// the file still counts. Keys nobody knows are reported by Unknown, also as
// warnings. Nothing in this package makes a configuration fatal; values
// are the caller's to judge.
package updateconf

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
)

// ErrSyntax is wrapped by every Warning about a line that is not
// KEY=VALUE.
var ErrSyntax = errors.New("updateconf: syntax error")

// ErrUnknownKey is wrapped by Warnings about keys neither daemon reads.
var ErrUnknownKey = errors.New("updateconf: unknown key")

// Entry is one assignment and where it was made.
type Entry struct {
	Value string
	File  string // the path as read
	Line  int    // 1-based
}

// Where is "file:line", or File alone when Line is 0 (a value that came
// from elsewhere, e.g. a command-line override).
func (e Entry) Where() string {
	if e.Line == 0 {
		return e.File
	}
	return fmt.Sprintf("%s:%d", e.File, e.Line)
}

// Warning is a line that was skipped, or a key nobody reads. It wraps
// ErrSyntax or ErrUnknownKey.
type Warning struct {
	File string
	Line int
	Err  error
}

func (w Warning) Error() string { return fmt.Sprintf("%s:%d: %v", w.File, w.Line, w.Err) }
func (w Warning) Unwrap() error { return w.Err }

// File is one parsed file: key → its last assignment.
type File map[string]Entry

// Parse reads data (named name in entries and warnings). Lines that do not
// parse are skipped and returned as warnings.
func Parse(name string, data []byte) (File, []Warning) {
	out := File{}
	var warns []Warning
	warn := func(line int, format string, a ...any) {
		warns = append(warns, Warning{File: name, Line: line, Err: fmt.Errorf("%w: %s", ErrSyntax, fmt.Sprintf(format, a...))})
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		start := lineNo
		line := strings.TrimSpace(sc.Text())
		for strings.HasSuffix(line, `\`) && !strings.HasPrefix(line, "#") && sc.Scan() {
			lineNo++
			line = strings.TrimSuffix(line, `\`) + strings.TrimSpace(sc.Text())
		}
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "export"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			line = strings.TrimSpace(rest)
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			warn(start, "no '=' in %q", line)
			continue
		}
		k = strings.TrimSpace(k)
		if !ValidKey(k) {
			warn(start, "invalid key %q", k)
			continue
		}
		val, err := unquote(strings.TrimSpace(v))
		if err != nil {
			warn(start, "%s: %v", k, err)
			continue
		}
		out[k] = Entry{Value: val, File: name, Line: start}
	}
	if err := sc.Err(); err != nil {
		warn(lineNo+1, "%v (the rest of the file is ignored)", err)
	}
	return out, warns
}

// ParseFile reads and parses path. A missing file is (nil, nil, nil);
// other read errors are returned.
func ParseFile(path string) (File, []Warning, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("updateconf: %w", err)
	}
	f, warns := Parse(path, b)
	return f, warns, nil
}

// Set is files in search order.
type Set []File

// Load parses paths in search order, skipping missing files. A file that
// exists but cannot be read is an error (permissions, a directory).
func Load(paths []string) (Set, []Warning, error) {
	var s Set
	var warns []Warning
	for _, p := range paths {
		f, w, err := ParseFile(p)
		if err != nil {
			return nil, nil, err
		}
		warns = append(warns, w...)
		if f != nil {
			s = append(s, f)
		}
	}
	return s, warns, nil
}

// Lookup returns the first assignment of any of names: files in search
// order, and within one file the names in the order given (so a file's
// FLATCAR_ name beats its COREOS_ name, but an earlier file beats both).
func (s Set) Lookup(names ...string) (Entry, bool) {
	for _, f := range s {
		for _, n := range names {
			if e, ok := f[n]; ok {
				return e, true
			}
		}
	}
	return Entry{}, false
}

// Merged returns key → value with the first file holding each key winning.
func (s Set) Merged() map[string]string {
	out := map[string]string{}
	for _, f := range s {
		for k, e := range f {
			if _, ok := out[k]; !ok {
				out[k] = e.Value
			}
		}
	}
	return out
}

// Keys are the update.conf keys that Flatcar's update_engine and
// locksmithd read, and this project's extensions; Unknown warns about the
// others.
var Keys = []string{
	// update_engine (Flatcar, CoreOS)
	"GROUP", "SERVER", "MACHINE_ALIAS", "DOWNLOAD_USER", "DOWNLOAD_PASSWORD", "PCR_POLICY_SERVER",
	"FLATCAR_RELEASE_VERSION", "FLATCAR_RELEASE_BOARD", "FLATCAR_RELEASE_APPID",
	"COREOS_RELEASE_VERSION", "COREOS_RELEASE_BOARD", "COREOS_RELEASE_APPID",
	// locksmithd
	"REBOOT_STRATEGY", "LOCKSMITHD_REBOOT_WINDOW_START", "LOCKSMITHD_REBOOT_WINDOW_LENGTH",
	"REBOOT_WINDOW_START", "REBOOT_WINDOW_LENGTH", "LOCKSMITHD_ENDPOINT", "LOCKSMITHD_GROUP",
	"LOCKSMITHD_ETCD_CAFILE", "LOCKSMITHD_ETCD_CERTFILE", "LOCKSMITHD_ETCD_KEYFILE",
	"LOCKSMITHD_ETCD_USERNAME", "LOCKSMITHD_ETCD_PASSWORD",
	// extensions of this project
	"LOCKSMITHD_ETCD_API", "FLEETLOCK_URL", "REBOOT_LOCK_TTL",
	"UPDATE_ENGINE_IO_WRITE_BPS", "UPDATE_ENGINE_IO_LIMIT", "UPDATE_ENGINE_IO_LIMIT_FLOOR",
	"UPDATE_ENGINE_IO_LIMIT_CEILING", "UPDATE_ENGINE_IO_LIMIT_TARGET", "UPDATE_ENGINE_METRICS_LISTEN", "UPDATE_ENGINE_METRICS_ALLOW_REMOTE",
	"UPDATE_ENGINE_METRICS_SOCKET",
	"UPDATE_ENGINE_PUBKEY", "UPDATE_ENGINE_PREFS_DIR", "UPDATE_ENGINE_HEALTH_DELAY",
	"UPDATE_ENGINE_HEALTH_UNITS", "UPDATE_ENGINE_HEALTH_COMMAND", "UPDATE_ENGINE_HEALTH_TIMEOUT",
}

// Unknown returns a warning for each key of f that is not in Keys, in
// line order. Call it on update.conf files only: release files carry
// other keys (NAME, ID, …) by design.
func Unknown(f File) []Warning {
	var out []Warning
	for k, e := range f {
		if !slices.Contains(Keys, k) {
			out = append(out, Warning{File: e.File, Line: e.Line, Err: fmt.Errorf("%w %s (ignored)", ErrUnknownKey, k)})
		}
	}
	slices.SortFunc(out, func(a, b Warning) int { return a.Line - b.Line })
	return out
}

// ValidKey reports whether k is a shell variable name.
func ValidKey(k string) bool {
	if k == "" || k[0] >= '0' && k[0] <= '9' {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func unquote(v string) (string, error) {
	if len(v) == 0 || (v[0] != '"' && v[0] != '\'') {
		return v, nil
	}
	q := v[0]
	if len(v) < 2 || v[len(v)-1] != q {
		return "", fmt.Errorf("unterminated %c quote", q)
	}
	body := v[1 : len(v)-1]
	if q == '\'' {
		if strings.ContainsRune(body, '\'') {
			return "", errors.New("stray single quote")
		}
		return body, nil
	}
	var sb strings.Builder
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c == '"':
			return "", errors.New("stray double quote")
		case c != '\\':
			sb.WriteByte(c)
		case i+1 == len(body):
			return "", errors.New("backslash at end of quoted value")
		default:
			i++
			switch body[i] {
			case 'n':
				sb.WriteByte('\n')
			case 't':
				sb.WriteByte('\t')
			case '"', '\\', '$', '`', '\'':
				sb.WriteByte(body[i])
			default:
				return "", fmt.Errorf("unknown escape \\%c", body[i])
			}
		}
	}
	return sb.String(), nil
}
