package payload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
)

// firstUnwritten is the target byte offset before which a failure at
// payload offset off may have written, and from which it must not have: the
// dst start of the first operation whose data reaches off.
func firstUnwritten(t testing.TB, p []byte, off int, imgLen int) int {
	m, err := ReadMetadata(bytes.NewReader(p))
	if err != nil {
		t.Fatal(err)
	}
	if uint64(off) < m.DataStart() {
		return 0
	}
	pos := m.DataStart()
	for _, op := range m.Partitions[0].Ops {
		dl := op.GetDataLength()
		if dl > 0 && pos+dl > uint64(off) {
			return int(op.DstExtents[0].GetStartBlock() * uint64(m.BlockSize))
		}
		pos += dl
	}
	return imgLen
}

// checkPrefix asserts the target holds the image up to upto and was not
// written from there on.
func checkPrefix(t testing.TB, got, img []byte, upto int, what string) {
	t.Helper()
	if !bytes.Equal(got[:upto], img[:upto]) {
		t.Errorf("%s: target differs from the image before %d", what, upto)
	}
	for i := upto; i < len(got); i++ {
		if got[i] != 0xEE {
			t.Errorf("%s: target written at %d, past the first failing op (%d)", what, i, upto)
			return
		}
	}
}

type corruption struct {
	name    string
	off     int // byte flipped, or truncation length
	trunc   bool
	wantErr []error // any of
}

func TestCorruptionMatrix(t *testing.T) {
	for _, major := range []uint64{2, 1} {
		t.Run(fmt.Sprintf("v%d", major), func(t *testing.T) { corruptionMatrix(t, major) })
	}
}

func corruptionMatrix(t *testing.T, major uint64) {
	img := testImage(384<<10, 9)
	k := keys(t, 1)
	p := generate(t, img, GenerateOptions{Major: major, Keys: k, ChunkSize: 32 << 10})
	m, err := ReadMetadata(bytes.NewReader(p))
	if err != nil {
		t.Fatal(err)
	}
	sigStart := int(m.DataStart() + m.SignaturesOffset)
	sum := sha256.Sum256(p)
	var cases []corruption
	add := func(name string, off int, trunc bool, want ...error) {
		cases = append(cases, corruption{name, off, trunc, want})
	}
	metaErrs := []error{ErrMetadataSignatureMismatch, ErrMetadataSignatureInvalid}
	if major == 1 {
		// v1 metadata is covered only by the payload signature.
		metaErrs = []error{ErrSignatureMismatch, ErrManifestParse, ErrInvalidManifest, ErrUnknownOperation,
			ErrOperationHashMismatch, ErrOperationHashMissing, ErrTruncated, ErrNewPartitionHash, ErrOperationExecution, ErrSignatureInvalid, ErrPayloadHash,
			ErrSignatureMissing}
	}
	add("header magic", 0, false, ErrBadMagic)
	add("header major", 11, false, ErrUnsupportedVersion)
	add("header manifest size", 12, false, ErrMetadataSize)
	if major == 2 {
		add("header metadata signature size", 20, false, ErrMetadataSize)
	}
	for i := int(m.Len()); i < int(m.MetadataSize()); i += 7 {
		add(fmt.Sprintf("manifest byte %d", i), i, false, metaErrs...)
	}
	for i := int(m.MetadataSize()); i < int(m.DataStart()); i += 5 {
		add(fmt.Sprintf("metadata signature byte %d", i), i, false, ErrMetadataSignatureMismatch, ErrMetadataSignatureInvalid)
	}
	pos := int(m.DataStart())
	for j, op := range m.Partitions[0].Ops {
		dl := int(op.GetDataLength())
		if dl == 0 {
			continue
		}
		for _, d := range []int{0, dl / 2, dl - 1} {
			add(fmt.Sprintf("op %d (%v) data byte %d", j, op.GetType(), d), pos+d, false, ErrOperationHashMismatch)
		}
		pos += dl
	}
	for i := sigStart; i < len(p); i += 11 {
		add(fmt.Sprintf("payload signature byte %d", i), i, false, ErrSignatureMismatch, ErrSignatureInvalid, ErrPayloadHash)
	}
	for n := 0; n < len(p); n += max(1, len(p)/97) {
		add(fmt.Sprintf("truncated to %d", n), n, true, ErrTruncated)
	}
	for _, n := range []int{3, 19, int(m.MetadataSize()), int(m.DataStart()), sigStart, len(p) - 1} {
		add(fmt.Sprintf("truncated to boundary %d", n), n, true, ErrTruncated)
	}
	for _, tc := range cases {
		q := append([]byte(nil), p...)
		if tc.trunc {
			q = q[:tc.off]
		} else {
			q[tc.off] ^= 0x10
		}
		f := targetFile(t, len(img))
		// As the engine does, pass Omaha's sha256 (but not the size, so that
		// truncation is found by the stream itself).
		res, err := Apply(context.Background(), bytes.NewReader(q), f, Options{Keys: pubs(k[0]), ExpectedSHA256: sum[:]})
		if err == nil {
			t.Errorf("%s: success (%+v)", tc.name, res)
			continue
		}
		ok := false
		for _, w := range tc.wantErr {
			ok = ok || errors.Is(err, w)
		}
		if !ok {
			t.Errorf("%s: err %v, want one of %v", tc.name, err, tc.wantErr)
		}
		if major == 2 || tc.off >= int(m.DataStart()) {
			checkPrefix(t, readAll(t, f, len(img)), img, firstUnwritten(t, p, tc.off, len(img)), tc.name)
		}
	}
	t.Run("trailing data", func(t *testing.T) {
		_, err := Apply(context.Background(), bytes.NewReader(append(append([]byte(nil), p...), 0)), targetFile(t, 0), Options{Keys: pubs(k[0])})
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("err %v, want ErrTruncated", err)
		}
	})
}

func TestExpectedSizeAndHash(t *testing.T) {
	img := testImage(100<<10, 11)
	p := generate(t, img, GenerateOptions{ChunkSize: 16 << 10})
	sum := sha256.Sum256(p)
	tests := []struct {
		name    string
		opts    Options
		wantErr error
	}{
		{"both right", Options{ExpectedSize: int64(len(p)), ExpectedSHA256: sum[:]}, nil},
		{"size wrong", Options{ExpectedSize: int64(len(p)) + 1}, ErrTruncated},
		{"hash wrong", Options{ExpectedSHA256: make([]byte, 32)}, ErrPayloadHash},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := targetFile(t, 0)
			_, err := Apply(context.Background(), bytes.NewReader(p), f, tc.opts)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if st, _ := f.Stat(); tc.wantErr == ErrTruncated && st.Size() != 0 {
				t.Errorf("size mismatch found after writing %d bytes", st.Size())
			}
		})
	}
}
