// Command gptprio is the slot choice of an initramfs: GRUB's gptprio.next
// as a static binary. It waits for the disk to appear, picks the /usr slot
// to boot (internal/gptprio), spends its try, writes the GPT back and
// prints the choice as shell assignments:
//
//	GPTPRIO_INDEX=4
//	GPTPRIO_PARTUUID=e03dd35c-7c2d-4a47-b3fe-27f15780a57c
//	GPTPRIO_LABEL=USR-B
//	GPTPRIO_TRIES_WAS=1
//
// Exit status 1 when no slot may boot or the disk cannot be read.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/abupdate/update_engine/internal/gptprio"
)

func main() {
	disk := flag.String("disk", "/dev/vda", "disk holding the GPT with the USR-A/USR-B slots")
	wait := flag.Duration("wait", 30*time.Second, "how long to wait for the disk to appear")
	flag.Parse()
	deadline := time.Now().Add(*wait)
	for {
		if _, err := os.Stat(*disk); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	c, err := gptprio.Next(*disk)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if c.Repaired != "" {
		fmt.Fprintf(os.Stderr, "gptprio: %s: repaired GPT (%s)\n", *disk, c.Repaired)
	}
	fmt.Print(c.Env())
}
