// Package packaging owns what turns the build into something a host
// installs: the man pages (docs/man/*.md, rendered to roff with
// go-md2man), and the tests of `make install`, `make deb` (lintian, an
// install into a throwaway root, systemd-analyze verify), the bash
// completion (dist/bash-completion) and the operator's guide's commands.
package packaging

import (
	"bytes"

	"github.com/cpuguy83/go-md2man/v2/md2man"
)

// RenderMan renders one Markdown man page to roff. "@VERSION@" in the
// source (its title line) becomes version.
func RenderMan(md []byte, version string) []byte {
	return md2man.Render(bytes.ReplaceAll(md, []byte("@VERSION@"), []byte(version)))
}
