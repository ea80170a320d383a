package bsdiff_test

import (
	"bytes"
	"context"
	"fmt"
	"log"

	"github.com/abupdate/update_engine/pkg/bsdiff"
)

func Example() {
	ctx := context.Background()
	old := []byte("update_engine 1.0: apply payloads to the passive slot")
	nw := []byte("update_engine 1.1: apply delta payloads to the passive slot")

	// Generator side: a BSDF2/brotli patch, as BROTLI_BSDIFF carries.
	var patch bytes.Buffer
	if err := bsdiff.Diff(ctx, old, nw, &patch, bsdiff.Options{}); err != nil {
		log.Fatal(err)
	}

	// Client side: old is read through an io.ReaderAt (the source
	// extents of the active slot), new is streamed to a writer.
	var out bytes.Buffer
	n, err := bsdiff.Apply(ctx, bytes.NewReader(old), int64(len(old)), patch.Bytes(), &out)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n, out.String())
	// Output: 59 update_engine 1.1: apply delta payloads to the passive slot
}
