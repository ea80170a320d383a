package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/abupdate/update_engine/internal/testenv"
)

// TestCLIDelta: generate --old writes a delta and OUT.json says so; apply
// takes the source from a device larger than the old image (a slot) and
// writes the target O_DIRECT; a wrong source fails before any write.
func TestCLIDelta(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "losetup")
	dir := t.TempDir()
	key, pub := filepath.Join(dir, "k.pem"), filepath.Join(dir, "k.pub.pem")
	mustRun(t, "keygen", "--private", key, "--public", pub)
	oldImg, old := imageSize(t, dir, "old.img", 7, 3<<20)
	nw := append(append([]byte(nil), old[1<<20:]...), old[:1<<20]...) // moved blocks
	nw[5000] ^= 1
	newImg := filepath.Join(dir, "new.img")
	if err := os.WriteFile(newImg, nw, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "delta.payload")
	g := mustRun(t, "generate", "--old", oldImg, "--new", newImg, "--key", key, "--version", "3.0.0",
		"--old-version", "2.0.0", "-o", out)
	if !strings.Contains(g, "SOURCE_COPY=") {
		t.Errorf("generate output %q has no SOURCE_COPY", g)
	}
	var md Metadata
	jb, err := os.ReadFile(out + ".json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(jb, &md); err != nil {
		t.Fatal(err)
	}
	if !md.Delta || md.SourceVersion != "2.0.0" || md.Version != "3.0.0" {
		t.Errorf("OUT.json %+v: want delta 2.0.0 -> 3.0.0", md)
	}
	if st, _ := os.Stat(out); st.Size() > 64<<10 {
		t.Errorf("delta is %d bytes for a move and one changed byte", st.Size())
	}

	// Slots: 4 MiB each, the old image at the start of the source.
	slot := func(name string, content []byte, fill byte) string {
		b := bytes.Repeat([]byte{fill}, 4<<20)
		copy(b, content)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return testenv.LoopDevice(t, p)
	}
	src := slot("a.img", old, 0x55)
	badOld := append([]byte(nil), old...)
	badOld[len(badOld)-1] ^= 1
	bad := slot("bad.img", badOld, 0x55)
	tests := []struct {
		name     string
		src      string
		wantCode int
	}{
		{"active slot", src, 0},
		{"wrong slot", bad, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tgt := slot("b-"+strings.ReplaceAll(tc.name, " ", "_")+".img", nil, 0xEE)
			code, _, e := run(t, nil, "apply", out, "--key", pub, "--target", tgt, "--source", tc.src)
			if code != tc.wantCode {
				t.Fatalf("apply exit %d, want %d: %s", code, tc.wantCode, e)
			}
			got := readHead(t, tgt, len(nw))
			want := nw
			if code != 0 {
				want = bytes.Repeat([]byte{0xEE}, len(nw))
				if !strings.Contains(e, "does not match") {
					t.Errorf("error %q does not say the source does not match", e)
				}
			}
			if !bytes.Equal(got, want) {
				t.Fatal("target content wrong")
			}
		})
	}
}

// TestCLIVerifyDelta: verify checks a delta against its source image
// (--source, a file or a device larger than the image): the payload, its
// signature, the source and the new partition hash; without --source, or
// with a source that does not match, it fails and says why.
func TestCLIVerifyDelta(t *testing.T) {
	dir := t.TempDir()
	key, pub := filepath.Join(dir, "k.pem"), filepath.Join(dir, "k.pub.pem")
	mustRun(t, "keygen", "--private", key, "--public", pub)
	oldImg, old := imageSize(t, dir, "old.img", 11, 2<<20)
	nw := append(append([]byte(nil), old[1<<20:]...), old[:1<<20]...)
	nw[7000] ^= 1
	newImg := filepath.Join(dir, "new.img")
	if err := os.WriteFile(newImg, nw, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "delta.payload")
	mustRun(t, "generate", "--old", oldImg, "--new", newImg, "--key", key, "--version", "3.0.0", "-o", out)
	// A slot: the old image followed by other bytes.
	slotFile := filepath.Join(dir, "slot.img")
	if err := os.WriteFile(slotFile, append(append([]byte(nil), old...), bytes.Repeat([]byte{0x55}, 1<<20)...), 0o644); err != nil {
		t.Fatal(err)
	}
	badOld := append([]byte(nil), old...)
	badOld[100] ^= 1
	badImg := filepath.Join(dir, "bad.img")
	if err := os.WriteFile(badImg, badOld, 0o644); err != nil {
		t.Fatal(err)
	}
	scratch := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{"source image", []string{"--source", oldImg, "--scratch", scratch}, 0, "payload OK"},
		{"source slot, target checked", []string{"--source", slotFile, "--target", newImg}, 0, "target OK"},
		{"no source", nil, 1, "--source"},
		{"wrong source", []string{"--source", badImg}, 1, "source"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, o, e := run(t, nil, append([]string{"verify", out, "--key", pub}, tc.args...)...)
			if code != tc.wantCode || !strings.Contains(o+e, tc.want) {
				t.Fatalf("verify %v: exit %d, want %d with %q\nstdout %s\nstderr %s", tc.args, code, tc.wantCode, tc.want, o, e)
			}
		})
	}
	if left, _ := os.ReadDir(scratch); len(left) != 0 {
		t.Fatalf("verify left %v in --scratch", left)
	}
}
