// Package version owns the version every binary of this project reports
// with --version. The Makefile sets Version from `git describe` through
// -ldflags "-X github.com/abupdate/update_engine/internal/version.Version=…";
// a build without it (go build, go test) reports "devel".
package version

import (
	"fmt"
	"io"
	"runtime"
)

// Version is the project's version, set at link time.
var Version = "devel"

// Print writes "<prog> <version> (<go version> <os>/<arch>)" and a newline,
// the line every binary's --version prints.
func Print(w io.Writer, prog string) {
	fmt.Fprintf(w, "%s %s (%s %s/%s)\n", prog, Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// Requested reports whether a command line of subcommands (args without
// the program name) asks for the version: its first argument is -version
// or --version.
func Requested(args []string) bool {
	return len(args) > 0 && (args[0] == "-version" || args[0] == "--version")
}
