// Command mangen renders the Markdown man pages of docs/man (NAME.SECTION.md)
// to roff, one NAME.SECTION file each in -o: the Makefile's `man` target.
//
//	go run ./internal/packaging/cmd/mangen -o bin/man docs/man/*.md
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/abupdate/update_engine/internal/packaging"
	"github.com/abupdate/update_engine/internal/version"
)

func main() {
	out := flag.String("o", "", "output directory")
	flag.Parse()
	if *out == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: mangen -o DIR PAGE.N.md...")
		os.Exit(2)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "mangen:", err)
		os.Exit(1)
	}
	for _, src := range flag.Args() {
		md, err := os.ReadFile(src)
		if err == nil {
			dst := filepath.Join(*out, strings.TrimSuffix(filepath.Base(src), ".md"))
			err = os.WriteFile(dst, packaging.RenderMan(md, version.Version), 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "mangen:", err)
			os.Exit(1)
		}
	}
}
