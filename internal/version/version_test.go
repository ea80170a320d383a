package version

import (
	"bytes"
	"strings"
	"testing"
)

func TestRequested(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"--version"}, true},
		{[]string{"-version"}, true},
		{[]string{"-v", "--version"}, false},
		{nil, false},
		{[]string{"generate", "--version", "1.0.0"}, false},
		{[]string{"--", "--version"}, false},
		{[]string{"--version=1.0.0"}, false},
	} {
		if got := Requested(c.args); got != c.want {
			t.Errorf("Requested(%q) = %v, want %v", c.args, got, c.want)
		}
	}
}

func TestPrint(t *testing.T) {
	var b bytes.Buffer
	Print(&b, "prog")
	if !strings.HasPrefix(b.String(), "prog "+Version+" (go") || !strings.HasSuffix(b.String(), "\n") {
		t.Fatalf("Print = %q", b.String())
	}
}
