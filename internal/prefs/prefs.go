// Package prefs is the engine's durable key → value store: one file per key
// in a directory, the layout Flatcar/CoreOS update_engine keeps in
// /var/lib/update_engine/prefs (a file named after the key, holding the value
// as text, integers in decimal).
//
// Crash safety: Set writes the value to a temporary file in the same
// directory (name ".tmp-<key>-<random>"), fsyncs it, renames it over the
// key's file and fsyncs the directory. A reader therefore sees either the
// old value or the new one, never a torn one, even across power loss. A
// process killed between create and rename leaves a ".tmp-*" file behind:
// such files are never read as keys (a key cannot begin with '.') and Open
// removes them.
//
// Concurrency: a Store has no mutable state of its own; the directory is
// the only state and rename(2) orders concurrent writers (the last rename
// wins, every reader sees a whole value). Any number of goroutines may use
// one Store. Two processes must not share a directory.
package prefs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/abupdate/update_engine/internal/crashpoint"
	"github.com/abupdate/update_engine/pkg/atomicfile"
)

// DefaultDir is where update_engine keeps its prefs.
const DefaultDir = "/var/lib/update_engine/prefs"

// Key names used by Flatcar/CoreOS update_engine (FUE constants.cc). The
// engine may use other keys; these are listed so the names stay Flatcar's.
const (
	KeyUpdateStateNextOperation     = "update-state-next-operation"
	KeyUpdateStateNextDataOffset    = "update-state-next-data-offset"
	KeyUpdateStateSHA256Context     = "update-state-sha-256-context"
	KeyUpdateStateSignedSHA256Ctx   = "update-state-signed-sha-256-context"
	KeyUpdateStateSignatureBlob     = "update-state-signature-blob"
	KeyManifestMetadataSize         = "manifest-metadata-size"
	KeyUpdateCheckResponseHash      = "update-check-response-hash"
	KeyResumedUpdateFailures        = "resumed-update-failures"
	KeyPreviousVersion              = "previous-version"
	KeyFullResponse                 = "full-response" // the last update check's response body (flatcar-postinst reads it)
	KeyAlephVersion                 = "aleph-version"
	KeyBackoffExpiryTime            = "backoff-expiry-time"
	KeyPayloadAttemptNumber         = "payload-attempt-number"
	KeyCurrentURLIndex              = "current-url-index"
	KeyCurrentURLFailureCount       = "current-url-failure-count"
	KeyCurrentBytesDownloaded       = "current-bytes-downloaded"
	KeyTotalBytesDownloaded         = "total-bytes-downloaded"
	KeyDeltaUpdateFailures          = "delta-update-failures"
	KeyCurrentResponseSignature     = "current-response-signature"
	KeyLastActivePingDay            = "last-active-ping-day"
	KeyLastRollCallPingDay          = "last-roll-call-ping-day"
	KeyNumReboots                   = "num-reboots"
	KeySystemUpdatedMarkerTimestamp = "system-updated-marker"
)

// Errors. None of them leaves the process as an update_engine code by
// itself; the engine maps a failing checkpoint write to
// DownloadStateInitializationError (20) or DownloadWriteError (14).
var (
	// ErrNotFound is returned by the getters for a key that has no value.
	ErrNotFound = errors.New("prefs: key not found")
	// ErrInvalidKey is returned for a key outside [A-Za-z0-9_-]+ (so a key
	// can never name a path outside the directory or a temporary file).
	ErrInvalidKey = errors.New("prefs: invalid key")
	// ErrBadValue is returned by GetInt64 when the stored text is not a
	// decimal int64.
	ErrBadValue = errors.New("prefs: bad value")
)

// tmpPrefix begins Set's temp files (atomicfile's), removed at Open.
const tmpPrefix = atomicfile.TempPrefix

// Store is a prefs directory. Create it with Open.
type Store struct {
	dir string // immutable
}

// Open returns the store in dir, creating the directory (mode 0755) if
// needed and removing temporary files that a killed writer left behind.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("prefs: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("prefs: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("prefs: removing leftover %s: %w", e.Name(), err)
			}
		}
	}
	return &Store{dir: dir}, nil
}

// Dir returns the directory the store lives in.
func (s *Store) Dir() string { return s.dir }

func checkKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%w: %q", ErrInvalidKey, key)
		}
	}
	return nil
}

// Get returns the value of key, or an error wrapping ErrNotFound.
func (s *Store) Get(key string) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(s.dir, key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if err != nil {
		return nil, fmt.Errorf("prefs: get %s: %w", key, err)
	}
	return b, nil
}

// Exists reports whether key has a value.
func (s *Store) Exists(key string) bool {
	_, err := s.Get(key)
	return err == nil
}

// Set stores value under key atomically and durably (see the package doc):
// when Set returns nil the value survives a crash or power loss.
func (s *Store) Set(key string, value []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	crashpoint.Hit("pref " + key)
	if err := s.write(key, value); err != nil {
		return fmt.Errorf("prefs: set %s: %w", key, err)
	}
	return nil
}

func (s *Store) write(key string, value []byte) error {
	return atomicfile.WriteFile(filepath.Join(s.dir, key), value, 0o644)
}

// Delete removes key durably. Deleting a missing key is not an error.
func (s *Store) Delete(key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	crashpoint.Hit("pref delete " + key)
	err := os.Remove(filepath.Join(s.dir, key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("prefs: delete %s: %w", key, err)
	}
	if err := atomicfile.SyncDir(s.dir); err != nil {
		return fmt.Errorf("prefs: delete %s: %w", key, err)
	}
	return nil
}

// Keys returns the keys that have a value, sorted.
func (s *Store) Keys() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("prefs: %w", err)
	}
	var keys []string
	for _, e := range ents {
		if e.Type().IsRegular() && checkKey(e.Name()) == nil {
			keys = append(keys, e.Name())
		}
	}
	return keys, nil
}

// GetString returns the value of key as a string.
func (s *Store) GetString(key string) (string, error) {
	b, err := s.Get(key)
	return string(b), err
}

// SetString stores a string value.
func (s *Store) SetString(key, value string) error {
	return s.Set(key, []byte(value))
}

// GetInt64 returns the value of key parsed as a decimal int64 (surrounding
// white space is ignored, as Flatcar's prefs do). A value that does not
// parse gives an error wrapping ErrBadValue.
func (s *Store) GetInt64(key string) (int64, error) {
	b, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %q is not an int64", ErrBadValue, key, b)
	}
	return n, nil
}

// SetInt64 stores n as decimal text.
func (s *Store) SetInt64(key string, n int64) error {
	return s.Set(key, strconv.AppendInt(nil, n, 10))
}
