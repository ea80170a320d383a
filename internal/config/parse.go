package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// ErrSyntax is wrapped by errors for lines that are not KEY=VALUE.
var ErrSyntax = errors.New("config: syntax error")

// entry is one assignment and where it was made.
type entry struct {
	value string
	file  string // path as searched (with Root), or "override"
	line  int    // 1-based; 0 for overrides and defaults
}

func (e entry) where() string {
	if e.line == 0 {
		return e.file
	}
	return fmt.Sprintf("%s:%d", e.file, e.line)
}

// parseFile reads a KEY=VALUE file. A missing file is an empty one.
func parseFile(path string) (map[string]entry, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parse(path, b)
}

// parse reads KEY=VALUE lines the way systemd reads an EnvironmentFile:
// blank lines and lines starting with '#' or ';' are skipped, white space
// around the key and value is trimmed, a value wholly in double quotes may
// use \" \\ \n \t \$ escapes, a value in single quotes is literal, and a
// trailing backslash outside quotes continues the value on the next line.
// The last assignment of a key in a file wins.
func parse(name string, data []byte) (map[string]entry, error) {
	out := map[string]entry{}
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
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%w: %s:%d: no '=' in %q", ErrSyntax, name, start, line)
		}
		k = strings.TrimSpace(k)
		if !validKey(k) {
			return nil, fmt.Errorf("%w: %s:%d: invalid key %q", ErrSyntax, name, start, k)
		}
		val, err := unquote(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("%w: %s:%d: %s: %v", ErrSyntax, name, start, k, err)
		}
		out[k] = entry{value: val, file: name, line: start}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("config: %s: %w", name, err)
	}
	return out, nil
}

func validKey(k string) bool {
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
