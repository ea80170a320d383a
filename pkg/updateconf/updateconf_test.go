package updateconf

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		want      map[string]string
		wantWarns []string // "line:substring"
	}{
		{name: "plain", in: "A=1\nB=two words\n", want: map[string]string{"A": "1", "B": "two words"}},
		{name: "comments and blanks", in: "# c\n; c\n\n   \nA=1 # not a comment\n", want: map[string]string{"A": "1 # not a comment"}},
		{name: "spaces around", in: "  A =  x  \n", want: map[string]string{"A": "x"}},
		{name: "export", in: "export GROUP=beta\nexport\tB='x y'\nexportC=1\n", want: map[string]string{"GROUP": "beta", "B": "x y", "exportC": "1"}},
		{name: "export alone", in: "export\nA=1\n", want: map[string]string{"A": "1"}, wantWarns: []string{"1:no '='"}},
		{name: "double quotes", in: `A="a \"b\" \\ \$x"` + "\n", want: map[string]string{"A": `a "b" \ $x`}},
		{name: "single quotes literal", in: `A='a \n b'`, want: map[string]string{"A": `a \n b`}},
		{name: "empty value", in: "A=\nB=\"\"\n", want: map[string]string{"A": "", "B": ""}},
		{name: "equals in value", in: "A=b=c\n", want: map[string]string{"A": "b=c"}},
		{name: "continuation", in: "A=one \\\n two\nB=3\n", want: map[string]string{"A": "one two", "B": "3"}},
		{name: "last wins", in: "A=1\nA=2\n", want: map[string]string{"A": "2"}},
		{name: "crlf", in: "A=1\r\n", want: map[string]string{"A": "1"}},
		{name: "no newline at end", in: "A=1", want: map[string]string{"A": "1"}},
		{name: "malformed lines skipped, the rest kept",
			in:        "A=1\nJUNK\n1B=x\nC=\"\\q\"\nD=\"a\"b\"\nE='open\nF=2\n",
			want:      map[string]string{"A": "1", "F": "2"},
			wantWarns: []string{"2:no '='", "3:invalid key", "4:unknown escape", "5:stray double quote", "6:unterminated"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, warns := Parse("f", []byte(tc.in))
			got := map[string]string{}
			for k, e := range m {
				got[k] = e.Value
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if len(warns) != len(tc.wantWarns) {
				t.Fatalf("warnings %v, want %v", warns, tc.wantWarns)
			}
			for i, w := range tc.wantWarns {
				line, sub, _ := strings.Cut(w, ":")
				if !strings.HasPrefix(warns[i].Error(), "f:"+line+":") || !strings.Contains(warns[i].Error(), sub) || !errors.Is(warns[i], ErrSyntax) {
					t.Errorf("warning %d = %v, want line %s with %q", i, warns[i], line, sub)
				}
			}
		})
	}
}

func TestLoadLookup(t *testing.T) {
	dir := t.TempDir()
	etc, usr := filepath.Join(dir, "etc.conf"), filepath.Join(dir, "usr.conf")
	if err := os.WriteFile(etc, []byte("GROUP=beta\nCOREOS_RELEASE_VERSION=1\nODD_KEY=x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(usr, []byte("GROUP=stable\nSERVER=http://s/\nFLATCAR_RELEASE_VERSION=2\nbad line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, warns, err := Load([]string{etc, filepath.Join(dir, "missing"), usr})
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || warns[0].File != usr || warns[0].Line != 4 {
		t.Errorf("warnings %v", warns)
	}
	if e, _ := s.Lookup("GROUP"); e.Value != "beta" || e.Where() != etc+":1" {
		t.Errorf("GROUP %+v", e)
	}
	// An earlier file beats a preferred name in a later one.
	if e, _ := s.Lookup("FLATCAR_RELEASE_VERSION", "COREOS_RELEASE_VERSION"); e.Value != "1" {
		t.Errorf("release version %+v", e)
	}
	if m := s.Merged(); m["GROUP"] != "beta" || m["SERVER"] != "http://s/" {
		t.Errorf("merged %v", m)
	}
	u := Unknown(s[0])
	if len(u) != 1 || !errors.Is(u[0], ErrUnknownKey) || !strings.Contains(u[0].Error(), "ODD_KEY") || u[0].Line != 3 {
		t.Errorf("unknown %v", u)
	}
	if _, _, err := Load([]string{dir}); err == nil {
		t.Error("a directory as a config file loaded")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"GROUP=beta\n", "A=\"x\\\"y\"\n# c\n", "A='b'\nB=c \\\n d", "no equals", "A=\"", "export A=1", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, warns := Parse("fuzz", data)
		for k, e := range m {
			if !ValidKey(k) || e.Line < 1 {
				t.Fatalf("bad entry %q %+v", k, e)
			}
		}
		for _, w := range warns {
			if !errors.Is(w, ErrSyntax) || w.Line < 1 {
				t.Fatalf("bad warning %+v", w)
			}
		}
	})
}
