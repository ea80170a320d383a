package slot

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/abupdate/update_engine/pkg/gpt"
)

// Info is one slot as listed by List.
type Info struct {
	Slot
	Priority   int
	Tries      int
	Successful bool
}

// List reads path's A/B slots without writing anything (a damaged copy is
// read around, not repaired). next is the partition index the bootloader
// picks next, 0 when no slot is bootable.
func List(path string) (slots []Info, next int, err error) {
	g, err := gpt.Open(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, 0, err
	}
	defer g.Close()
	tab, _, err := g.Read()
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	pair, err := pair(tab)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	for _, s := range pair {
		e := &tab.Entries[s.Index-1]
		slots = append(slots, Info{Slot: s, Priority: e.Priority(), Tries: e.Tries(), Successful: e.Successful()})
	}
	next, _ = tab.Next(gpt.TypeCoreOSUsr) // 0 when none
	return slots, next, nil
}

// WriteTable prints slots as an aligned table with a header line:
//
//	SLOT INDEX LABEL PRIORITY TRIES SUCCESSFUL NEXT PARTUUID TYPE
//	A    3     USR-A 1        0     1          yes  7130c94a-… 5dfbf5f4-…
//
// SUCCESSFUL is 0 or 1, NEXT is yes or no; GUIDs are lower case.
func WriteTable(w io.Writer, slots []Info, next int) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tINDEX\tLABEL\tPRIORITY\tTRIES\tSUCCESSFUL\tNEXT\tPARTUUID\tTYPE")
	for _, s := range slots {
		ok, nx := 0, "no"
		if s.Successful {
			ok = 1
		}
		if s.Index == next {
			nx = "yes"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%s\t%s\t%s\n", s.Name, s.Index, s.Label, s.Priority, s.Tries, ok, nx, s.GUID, s.Type)
	}
	return tw.Flush()
}
