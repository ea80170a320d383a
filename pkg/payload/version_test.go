package payload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
)

// TestSignedVersion: the generator writes the image version into the
// manifest (v2 PartitionUpdate.version, v1 new_image_info), the applier
// refuses a payload offered under another version, or without a version
// when one is required, before the first write; and a version edited in
// the manifest breaks the signature.
func TestSignedVersion(t *testing.T) {
	img := testImage(96<<10, 21)
	old := testImage(96<<10, 22)
	k := keys(t, 1)
	for _, kind := range []string{"v2 full", "v2 delta", "v1 full"} {
		t.Run(kind, func(t *testing.T) {
			o := GenerateOptions{Keys: k, ChunkSize: 32 << 10}
			if kind == "v1 full" {
				o.Major = 1
			}
			var src *bytes.Reader
			if kind == "v2 delta" {
				o.Old, o.OldSize = bytes.NewReader(old), int64(len(old))
				src = bytes.NewReader(old)
			}
			unversioned := generate(t, img, o)
			o.Version = "2.0.0"
			p := generate(t, img, o)
			m, err := ReadMetadata(bytes.NewReader(p))
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Partitions[0].Version; got != "2.0.0" {
				t.Fatalf("manifest carries version %q, want 2.0.0", got)
			}
			// The same payload with "2.0.0" edited to "4.0.0" inside the manifest.
			forged := bytes.Replace(bytes.Clone(p), []byte("2.0.0"), []byte("4.0.0"), 1)
			if bytes.Equal(forged, p) || bytes.Index(p, []byte("2.0.0")) >= int(m.MetadataSize()) {
				t.Fatal("version not found in the manifest bytes")
			}
			forgedErr := ErrMetadataSignatureMismatch
			if o.Major == 1 {
				forgedErr = ErrSignatureMismatch // v1 metadata is covered by the payload signature only
			}
			tests := []struct {
				name    string
				p       []byte
				version string
				require bool
				wantErr error
				want    string // Result.Version
			}{
				{"offered as its own version", p, "2.0.0", false, nil, "2.0.0"},
				{"no offered version", p, "", false, nil, "2.0.0"},
				{"required and present", p, "2.0.0", true, nil, "2.0.0"},
				{"offered as newer", p, "4.0.0", false, ErrVersionMismatch, ""},
				{"offered as newer, version required", p, "4.0.0", true, ErrVersionMismatch, ""},
				{"offered as older", p, "1.0.0", false, ErrVersionMismatch, ""},
				{"unversioned payload", unversioned, "4.0.0", false, nil, ""},
				{"unversioned payload, version required", unversioned, "4.0.0", true, ErrVersionMissing, ""},
				{"version edited in the manifest", forged, "4.0.0", false, forgedErr, ""},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					f := targetFile(t, 0)
					opts := Options{Keys: pubs(k...), Version: tc.version, RequireVersion: tc.require}
					if src != nil {
						opts.Source = src
					}
					res, err := Apply(context.Background(), bytes.NewReader(tc.p), f, opts)
					if !errors.Is(err, tc.wantErr) {
						t.Fatalf("err %v, want %v", err, tc.wantErr)
					}
					if err != nil {
						if st, _ := f.Stat(); st.Size() != 0 && !errors.Is(err, ErrSignatureMismatch) {
							t.Fatalf("target written (%d bytes) before %v", st.Size(), err)
						}
						return
					}
					if res.Version != tc.want {
						t.Fatalf("Result.Version %q, want %q", res.Version, tc.want)
					}
					if got := readAll(t, f, len(img)); !bytes.Equal(got, img) {
						t.Fatal("target differs from the image")
					}
				})
			}
		})
	}
}

// TestResumeChecksVersion: a resumed apply checks the offered version
// again (the checkpoint's metadata is the payload's), before any write.
func TestResumeChecksVersion(t *testing.T) {
	img := testImage(128<<10, 23)
	k := keys(t, 1)
	p := generate(t, img, GenerateOptions{Keys: k, ChunkSize: 32 << 10, Version: "2.0.0"})
	var cps []*Checkpoint
	f := targetFile(t, 0)
	if _, err := Apply(context.Background(), bytes.NewReader(p), f, Options{Keys: pubs(k...), Version: "2.0.0",
		Checkpoint: func(cp *Checkpoint) error { cps = append(cps, cp); return nil }}); err != nil {
		t.Fatal(err)
	}
	if len(cps) < 2 {
		t.Fatalf("%d checkpoints", len(cps))
	}
	cp := cps[0]
	for _, tc := range []struct {
		version string
		wantErr error
	}{{"4.0.0", ErrVersionMismatch}, {"2.0.0", nil}} {
		t.Run(fmt.Sprintf("offered %s", tc.version), func(t *testing.T) {
			tf := targetFile(t, 0)
			_, err := Resume(context.Background(), cp, bytes.NewReader(p[cp.Offset:]), tf, Options{Keys: pubs(k...), Version: tc.version})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if st, _ := tf.Stat(); err != nil && st.Size() != 0 {
				t.Fatalf("target written (%d bytes) before %v", st.Size(), err)
			}
		})
	}
}
