package payload_test

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"github.com/abupdate/update_engine/pkg/payload"
)

// Example generates a full payload for a small image and applies it to a
// file, the way the engine applies a downloaded payload to the passive slot.
func Example() {
	ctx := context.Background()
	img := bytes.Repeat([]byte("a small root filesystem\n"), 10000)

	var p bytes.Buffer
	_, err := payload.Generate(ctx, &p, payload.GenerateOptions{
		New: bytes.NewReader(img), NewSize: int64(len(img)), Version: "1.2.3", TempDir: os.TempDir(),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	target, err := os.CreateTemp("", "slot-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.Remove(target.Name())
	defer target.Close()

	res, err := payload.Apply(ctx, &p, target, payload.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	got := make([]byte, len(img))
	target.ReadAt(got, 0)
	fmt.Println(res.Partition, res.PartitionSize, bytes.Equal(got, img))
	// Output: root 240000 true
}
