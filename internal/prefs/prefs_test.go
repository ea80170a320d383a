package prefs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestGetSetDelete(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "prefs"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		key     string
		value   string
		wantErr error
	}{
		{name: "flatcar key", key: KeyUpdateStateNextOperation, value: "42"},
		{name: "empty value", key: KeyPreviousVersion, value: ""},
		{name: "binary value", key: KeyUpdateStateSHA256Context, value: "\x00\xff\n"},
		{name: "underscore", key: "a_B-9", value: "x"},
		{name: "empty key", key: "", wantErr: ErrInvalidKey},
		{name: "slash", key: "../etc/passwd", wantErr: ErrInvalidKey},
		{name: "dot", key: ".tmp-x", wantErr: ErrInvalidKey},
		{name: "space", key: "a b", wantErr: ErrInvalidKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.SetString(tc.key, tc.value)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("SetString err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil {
				if _, err := s.Get(tc.key); !errors.Is(err, tc.wantErr) {
					t.Errorf("Get err = %v, want %v", err, tc.wantErr)
				}
				if err := s.Delete(tc.key); !errors.Is(err, tc.wantErr) {
					t.Errorf("Delete err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			got, err := s.GetString(tc.key)
			if err != nil || got != tc.value {
				t.Fatalf("GetString = %q, %v; want %q", got, err, tc.value)
			}
			if !s.Exists(tc.key) {
				t.Errorf("Exists = false after Set")
			}
			if err := s.Delete(tc.key); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Get(tc.key); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get after Delete err = %v, want ErrNotFound", err)
			}
			if err := s.Delete(tc.key); err != nil {
				t.Errorf("second Delete = %v, want nil", err)
			}
		})
	}
}

func TestInt64(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		raw     string // written as is, when set
		n       int64  // written with SetInt64 when raw is ""
		want    int64
		wantErr error
	}{
		{name: "zero", n: 0, want: 0},
		{name: "max", n: 1<<63 - 1, want: 1<<63 - 1},
		{name: "negative", n: -5, want: -5},
		{name: "flatcar trailing newline", raw: "1234\n", want: 1234},
		{name: "garbage", raw: "12x", wantErr: ErrBadValue},
		{name: "overflow", raw: "9223372036854775808", wantErr: ErrBadValue},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.raw != "" {
				err = s.SetString(KeyManifestMetadataSize, tc.raw)
			} else {
				err = s.SetInt64(KeyManifestMetadataSize, tc.n)
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.GetInt64(KeyManifestMetadataSize)
			if !errors.Is(err, tc.wantErr) || got != tc.want {
				t.Errorf("GetInt64 = %d, %v; want %d, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
	if _, err := s.GetInt64("missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetInt64(missing) err = %v, want ErrNotFound", err)
	}
}

func TestLeftoverTempIgnoredAndCleaned(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetString(KeyPreviousVersion, "old"); err != nil {
		t.Fatal(err)
	}
	// What a writer killed before its rename leaves behind.
	tmp := filepath.Join(dir, tmpPrefix+KeyPreviousVersion+"-123")
	if err := os.WriteFile(tmp, []byte("torn"), 0o644); err != nil {
		t.Fatal(err)
	}
	keys, err := s.Keys()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != KeyPreviousVersion {
		t.Errorf("Keys = %q, want only %q", keys, KeyPreviousVersion)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("leftover temp file still there after Open: %v", err)
	}
	if v, err := s.GetString(KeyPreviousVersion); v != "old" || err != nil {
		t.Errorf("value = %q, %v; want old", v, err)
	}
}

func TestConcurrentUse(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const writers, rounds = 8, 50
	value := func(w, i int) []byte { return bytes.Repeat([]byte{byte('a' + w)}, 1000+i) }
	var wg sync.WaitGroup
	errc := make(chan error, writers*2)
	for w := range writers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range rounds {
				if err := s.Set("shared", value(w, i)); err != nil {
					errc <- err
					return
				}
				if err := s.SetInt64("own-"+strconv.Itoa(w), int64(i)); err != nil {
					errc <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range rounds {
				b, err := s.Get("shared")
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					errc <- err
					return
				}
				// A whole value is one repeated letter.
				if len(b) < 1000 || bytes.Count(b, b[:1]) != len(b) {
					errc <- fmt.Errorf("torn read: %d bytes starting %q", len(b), b[:min(len(b), 8)])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	for w := range writers {
		if n, err := s.GetInt64("own-" + strconv.Itoa(w)); n != rounds-1 || err != nil {
			t.Errorf("own-%d = %d, %v; want %d", w, n, err, rounds-1)
		}
	}
	ents, _ := os.ReadDir(s.Dir())
	if len(ents) != writers+1 {
		t.Errorf("directory holds %d files, want %d (temp files left?)", len(ents), writers+1)
	}
}

// TestKillDuringWrites kills a child process with SIGKILL while it rewrites
// a key in a loop, then checks the key holds one whole value.
func TestKillDuringWrites(t *testing.T) {
	if dir := os.Getenv("PREFS_TEST_CHILD_DIR"); dir != "" {
		childWriter(dir)
		return
	}
	dir := t.TempDir()
	for round := range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillDuringWrites$")
		cmd.Env = append(os.Environ(), "PREFS_TEST_CHILD_DIR="+dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until the child has written at least once, then kill it.
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := os.Stat(filepath.Join(dir, "big")); err == nil {
				break
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatal("child never wrote the key")
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(time.Duration(5+round*7) * time.Millisecond)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()

		s, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.Get("big")
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != 256<<10 || bytes.Count(b, b[:1]) != len(b) {
			t.Fatalf("round %d: torn value: %d bytes", round, len(b))
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) != 1 {
			t.Errorf("round %d: %d files after Open, want 1", round, len(ents))
		}
	}
}

func childWriter(dir string) {
	s, err := Open(dir)
	if err != nil {
		os.Exit(2)
	}
	for i := 0; ; i++ {
		if err := s.Set("big", bytes.Repeat([]byte{byte('a' + i%26)}, 256<<10)); err != nil {
			os.Exit(3)
		}
	}
}
