// Package gptprio is the boot-time half of the A/B scheme: what GRUB's
// `gptprio.next` does before the kernel runs, for hosts whose slot choice
// is made in the initramfs instead (and for the whole-host VM test).
//
// Next opens the disk, repairs a damaged GPT copy from the good one (as
// GRUB does before writing), picks the /usr slot to boot by the rule of
// SPEC.md section 5 (pkg/gpt Table.NextBoot with RuleGRUB: highest
// priority among the usr-type entries with tries > 0 or successful, lowest
// index on ties), spends one try when tries > 0 and writes the table back
// (both copies, ordered by pkg/gpt so a torn write leaves one valid copy).
// The caller then mounts the chosen partition read-only at /usr and tells
// userspace which one it is with usr=PARTUUID=<guid> on the command line it
// passes on, as grub.cfg does.
package gptprio

import (
	"fmt"
	"os"
	"strings"

	"github.com/abupdate/update_engine/pkg/gpt"
)

// Choice is the slot to boot.
type Choice struct {
	Index    int      // partition number (3 = USR-A on Flatcar's layout)
	PartUUID gpt.GUID // unique partition GUID
	Label    string   // partition name
	TriesWas int      // tries before this boot spent one
	Repaired string   // non-empty when a GPT copy was repaired: what was wrong
}

// Next picks the usr slot of the disk at path and spends its try, writing
// the GPT. It fails with gpt.ErrNoBootable when no slot may boot.
func Next(path string) (Choice, error) {
	d, err := gpt.Open(path, os.O_RDWR, 0)
	if err != nil {
		return Choice{}, err
	}
	defer d.Close()
	var c Choice
	rep, err := d.Update(func(t *gpt.Table) error {
		i, err := t.Next(gpt.TypeCoreOSUsr)
		if err != nil {
			return err
		}
		e := t.Entries[i-1]
		c = Choice{Index: i, PartUUID: e.GUID, Label: e.Name, TriesWas: e.Tries()}
		_, err = t.NextBoot(gpt.TypeCoreOSUsr, gpt.RuleGRUB)
		return err
	})
	if err != nil {
		return Choice{}, fmt.Errorf("gptprio: %s: %w", path, err)
	}
	if rep != nil && rep.NeedsRepair() {
		c.Repaired = rep.String()
	}
	return c, nil
}

// Env renders the choice as shell assignments for an init script's eval.
func (c Choice) Env() string {
	var b strings.Builder
	fmt.Fprintf(&b, "GPTPRIO_INDEX=%d\n", c.Index)
	fmt.Fprintf(&b, "GPTPRIO_PARTUUID=%s\n", c.PartUUID)
	fmt.Fprintf(&b, "GPTPRIO_LABEL=%s\n", c.Label)
	fmt.Fprintf(&b, "GPTPRIO_TRIES_WAS=%d\n", c.TriesWas)
	return b.String()
}
