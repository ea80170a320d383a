package server

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/abupdate/update_engine/pkg/semver"
)

// Metadata is one payload's OUT.json as payload_generator writes it
// (cmd/payload_generator's Metadata; docs/man/payload_generator.1.md).
type Metadata struct {
	File          string `json:"file"`           // basename of the payload, next to the .json
	Version       string `json:"version"`        // target version
	SourceVersion string `json:"source_version"` // delta source; "" for full payloads
	Delta         bool   `json:"delta"`
	Size          int64  `json:"size"`
	SHA256        string `json:"sha256"` // base64 SHA-256 of the whole file
	SHA1          string `json:"sha1"`   // base64 SHA-1 of the whole file
	AppID         string `json:"appid"`  // "" = the CoreOS/Flatcar app id
	Track         string `json:"track"`  // "" = every track
}

// Sentinel errors of the catalog.
var (
	// ErrBadMetadata: a metadata file is not usable (bad JSON, missing
	// file name or version, bad hash).
	ErrBadMetadata = errors.New("omaha/server: bad payload metadata")
)

// LoadDir reads every *.json in dir as payload Metadata. Files that are
// not payload metadata (no "file" and "version") are skipped. Broken ones
// are left out, and the error (ErrBadMetadata, naming each such file)
// comes with the good ones, so that a caller may serve those.
func LoadDir(dir string) ([]Metadata, error) {
	if st, err := os.Stat(dir); err != nil {
		return nil, err
	} else if !st.IsDir() {
		return nil, fmt.Errorf("omaha/server: %s is not a directory", dir)
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Metadata
	var bad []error
	for _, n := range names {
		m, err := loadFile(n)
		switch {
		case err != nil:
			bad = append(bad, err)
		case m.File != "" || m.Version != "":
			out = append(out, m)
		}
	}
	return out, errors.Join(bad...)
}

func loadFile(name string) (Metadata, error) {
	var m Metadata
	b, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil // removed since the Glob
	} else if err != nil {
		return m, fmt.Errorf("%w: %v", ErrBadMetadata, err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%w: %s: %v", ErrBadMetadata, name, err)
	}
	if m.File == "" && m.Version == "" {
		return m, nil
	}
	if err := m.check(); err != nil {
		return m, fmt.Errorf("%w: %s: %v", ErrBadMetadata, name, err)
	}
	return m, nil
}

func (m *Metadata) check() error {
	switch {
	case m.File == "" || m.File != filepath.Base(m.File) || m.File == "." || m.File == "..":
		return fmt.Errorf("file %q is not a basename", m.File)
	case m.Version == "":
		return errors.New("no version")
	case m.Size <= 0:
		return fmt.Errorf("size %d", m.Size)
	case m.Delta && m.SourceVersion == "":
		return errors.New("delta without source_version")
	}
	if b, err := base64.StdEncoding.DecodeString(m.SHA256); err != nil || len(b) != 32 {
		return fmt.Errorf("sha256 %q is not base64 SHA-256", m.SHA256)
	}
	return nil
}

// normalizeAppID strips braces and lowercases, as Nebraska compares ids.
func normalizeAppID(id string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(id), "{"), "}"))
}

// CompareVersions orders two versions by pkg/semver's rules (the
// anti-rollback floor's too). Returns -1, 0 or 1.
func CompareVersions(a, b string) int { return semver.Compare(a, b) }
