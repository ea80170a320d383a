package puff

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"errors"
	"image"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

const testLimit = 64 << 20

// roundTrip puffs data's located deflates, huffs the puff back and checks
// that the result is data, bit for bit. It returns the streams found.
func roundTrip(t *testing.T, name string, data []byte) int {
	t.Helper()
	defl := Locate(data, testLimit)
	puff, puffs, err := Puff(data, defl, testLimit)
	if err != nil {
		t.Fatalf("%s: puff: %v", name, err)
	}
	out := make([]byte, len(data))
	if err := Huff(puff, defl, puffs, out); err != nil {
		t.Fatalf("%s: huff: %v", name, err)
	}
	if !bytes.Equal(out, data) {
		t.Fatalf("%s: huffed data differs from the original", name)
	}
	return len(defl)
}

func TestRoundTripSystemFiles(t *testing.T) {
	var files []string
	for _, g := range []string{"/usr/share/doc/*/*.gz", "/usr/share/java/*.jar"} {
		m, _ := filepath.Glob(g)
		if len(m) > 150 {
			m = m[:150]
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Skip("no .gz or .jar files on this host")
	}
	streams := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil || len(data) > 8<<20 {
			continue
		}
		streams += roundTrip(t, f, data)
	}
	if streams < len(files)/2 {
		t.Fatalf("%d deflate streams found in %d files", streams, len(files))
	}
	t.Logf("%d files, %d deflate streams", len(files), streams)
}

// testInput is compressible data with some randomness.
func testInput(rng *rand.Rand, n int) []byte {
	words := []string{"alpha ", "beta ", "gamma\n", "delta\t", "\x00\x01", "epsilon "}
	var b bytes.Buffer
	for b.Len() < n {
		if rng.IntN(10) == 0 {
			b.WriteByte(byte(rng.Uint32()))
		} else {
			b.WriteString(words[rng.IntN(len(words))])
		}
	}
	return b.Bytes()[:n]
}

func TestRoundTripFlateLevels(t *testing.T) {
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	refused := 0
	for _, level := range []int{flate.NoCompression, flate.HuffmanOnly, flate.BestSpeed, 3, flate.DefaultCompression, flate.BestCompression} {
		for _, n := range []int{0, 1, 40, 5000, 70000, 300000} {
			var gz bytes.Buffer
			w, _ := gzip.NewWriterLevel(&gz, level)
			w.Write(testInput(rng, n))
			w.Close()
			data := append([]byte("prefix"), gz.Bytes()...)
			defl := Locate(data, testLimit)
			if len(defl) == 0 {
				// Go's encoder may emit a code length repeat across the
				// two parts, which puffin's format cannot carry.
				refused++
				continue
			}
			roundTrip(t, "gzip", data)
		}
	}
	t.Logf("%d streams refused", refused)
}

// TestFixedAndStoredBlocks builds streams with fixed and stored blocks
// (a stored block after a fixed one starts mid-byte: padding bits).
func TestFixedAndStoredBlocks(t *testing.T) {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestSpeed)
	w.Write([]byte("abc"))
	w.Flush() // a small block (fixed) and an empty stored block
	w.Write(bytes.Repeat([]byte("xyz"), 10))
	w.Close()
	gz := append([]byte{0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 3}, b.Bytes()...)
	gz = append(gz, 0, 0, 0, 0, 0, 0, 0, 0)
	if roundTrip(t, "fixed", gz) != 1 {
		t.Fatal("stream not found")
	}
}

func TestCorruptPuffRefused(t *testing.T) {
	data, err := gzipped(t)
	if err != nil {
		t.Fatal(err)
	}
	defl := Locate(data, testLimit)
	puff, puffs, err := Puff(data, defl, testLimit)
	if err != nil || len(defl) != 1 {
		t.Fatalf("puff: %v, %d streams", err, len(defl))
	}
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	out := make([]byte, len(data))
	bad := 0
	for range 3000 {
		p := bytes.Clone(puff)
		for range 1 + rng.IntN(3) {
			p[rng.IntN(len(p))] ^= byte(1 + rng.IntN(255))
		}
		if err := Huff(p, defl, puffs, out); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			bad++
		}
	}
	if bad == 0 {
		t.Fatal("no corruption detected")
	}
	end := puffs[0].Offset + puffs[0].Length
	if err := Huff(puff[:end-1], defl, puffs, out); err == nil {
		t.Fatal("truncated puff accepted")
	}
}

func TestCorruptDeflateRefused(t *testing.T) {
	data, err := gzipped(t)
	if err != nil {
		t.Fatal(err)
	}
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	defl := Locate(data, testLimit)
	for range 3000 {
		d := bytes.Clone(data)
		d[10+rng.IntN(len(d)-10)] ^= byte(1 + rng.IntN(255))
		if p, puffs, err := Puff(d, defl, testLimit); err == nil {
			// Still a deflate stream: it must come back as it was.
			out := make([]byte, len(d))
			if err := Huff(p, defl, puffs, out); err != nil || !bytes.Equal(out, d) {
				t.Fatalf("mutated stream puffed but did not round-trip: %v", err)
			}
		}
		Locate(d, testLimit)
	}
	if _, _, err := Puff(data, defl, 100); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("limit: %v", err)
	}
}

func gzipped(t *testing.T) ([]byte, error) {
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, 9)
	w.Write(testInput(rand.New(rand.NewPCG(1, 1)), 20000))
	if err := w.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func TestPatchHeaderRoundTrip(t *testing.T) {
	p := &Patch{
		Src:    StreamInfo{PuffLength: 0},
		Dst:    StreamInfo{Deflates: []BitExtent{{80, 1000}, {2000, 7}}, Puffs: []ByteExtent{{10, 300}, {400, 2}}, PuffLength: 500},
		Bsdiff: []byte("BSDF2..."),
	}
	enc := p.Encode()
	got, err := Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Bsdiff) != "BSDF2..." || got.Dst.PuffLength != 500 || len(got.Dst.Deflates) != 2 ||
		got.Dst.Deflates[1] != (BitExtent{2000, 7}) || got.Dst.Puffs[0] != (ByteExtent{10, 300}) || len(got.Src.Deflates) != 0 {
		t.Fatalf("decoded %+v", got)
	}
	for i := range len(enc) - len(p.Bsdiff) {
		if _, err := Decode(enc[:i]); err == nil && i < 8 {
			t.Fatalf("truncated patch of %d bytes accepted", i)
		}
	}
}

// TestRoundTripPNG puffs the zlib streams of PNG images: one IDAT chunk
// (small image) and several (large: its stream is not located whole).
func TestRoundTripPNG(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	for _, side := range []int{40, 400} {
		img := image.NewNRGBA(image.Rect(0, 0, side, side))
		for i := range img.Pix {
			img.Pix[i] = byte(i/97) ^ byte(rng.IntN(4))
		}
		var b bytes.Buffer
		if err := png.Encode(&b, img); err != nil {
			t.Fatal(err)
		}
		n := roundTrip(t, "png", b.Bytes())
		if side == 40 && n != 1 {
			t.Fatalf("%d streams in a one-IDAT PNG", n)
		}
	}
}
