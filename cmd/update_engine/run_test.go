package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/abupdate/update_engine/internal/version"
)

// TestVersionFlags: --version alone prints the version; --version V (and
// --version=V) is the deprecated spelling of --release-version V and warns.
func TestVersionFlags(t *testing.T) {
	var out, errs bytes.Buffer
	if _, _, code := parse([]string{"--version"}, &out, &errs); code != 0 || !strings.HasPrefix(out.String(), "update_engine "+version.Version+" ") {
		t.Fatalf("--version: code %d, stdout %q, stderr %q", code, out.String(), errs.String())
	}
	for _, args := range [][]string{
		{"--disk", "d.img", "--version", "1.2.3"},
		{"-version=1.2.3", "--disk", "d.img"},
	} {
		out.Reset()
		errs.Reset()
		o, _, code := parse(args, &out, &errs)
		if code != -1 || o.Overrides["FLATCAR_RELEASE_VERSION"] != "1.2.3" || o.Disk != "d.img" {
			t.Errorf("%q: code %d, overrides %v, disk %q", args, code, o.Overrides, o.Disk)
		}
		if !strings.Contains(errs.String(), "deprecated") || !strings.Contains(errs.String(), "--release-version") {
			t.Errorf("%q: no deprecation warning: %q", args, errs.String())
		}
	}
	errs.Reset()
	o, _, code := parse([]string{"--release-version", "2.0.0"}, &out, &errs)
	if code != -1 || o.Overrides["FLATCAR_RELEASE_VERSION"] != "2.0.0" || errs.Len() != 0 {
		t.Errorf("--release-version: code %d, overrides %v, stderr %q", code, o.Overrides, errs.String())
	}
	// The new spelling wins over the old one.
	o, _, _ = parse([]string{"--release-version", "2.0.0", "--version", "1.0.0"}, &out, &errs)
	if o.Overrides["FLATCAR_RELEASE_VERSION"] != "2.0.0" {
		t.Errorf("both spellings: %v", o.Overrides)
	}
	if _, _, code := parse([]string{"--version", "1", "extra"}, &out, &errs); code != 2 {
		t.Errorf("extra argument: code %d, want 2", code)
	}
}
