package gpt_test

import (
	"errors"
	"github.com/abupdate/update_engine/pkg/gpt"
	"testing"
)

func TestGUID(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{name: "lower", in: "5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6", want: "5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6"},
		{name: "upper braces", in: "{7130C94A-213A-4E5A-8E26-6CCE9662F132}", want: "7130c94a-213a-4e5a-8e26-6cce9662f132"},
		{name: "short", in: "5dfbf5f4-2848-4bac-aa5e", wantErr: true},
		{name: "not hex", in: "5dfbf5f4-2848-4bac-aa5e-0d9a20b745zz", wantErr: true},
		{name: "dashes moved", in: "5dfbf5f42-848-4bac-aa5e-0d9a20b745a6", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := gpt.ParseGUID(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, gpt.ErrInvalid) {
					t.Fatalf("err %v is not ErrInvalid", err)
				}
				return
			}
			if g.String() != tt.want {
				t.Fatalf("got %s, want %s", g, tt.want)
			}
		})
	}
	// On-disk byte order is mixed-endian: the first field is little-endian.
	g := gpt.MustParseGUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
	if g[0] != 0x28 || g[3] != 0xc1 || g[4] != 0x1f || g[6] != 0xd2 || g[8] != 0xba || g[15] != 0x3b {
		t.Fatalf("byte order % x", g[:])
	}
	n := gpt.NewGUID()
	if n.String()[14] != '4' || n == gpt.NewGUID() {
		t.Fatalf("NewGUID %s: not a random v4 GUID", n)
	}
}

func TestAttributeBits(t *testing.T) {
	const others = uint64(1)<<63 | 1<<62 | 1<<60 | 1<<57 | 1<<47 | 1<<2 | 1
	tests := []struct {
		name        string
		prio, tries int
		ok          bool
		want        uint64
		wantErr     bool
	}{
		{name: "zero", want: others},
		{name: "prio 15", prio: 15, want: others | 0xf<<48},
		{name: "tries 15", tries: 15, want: others | 0xf<<52},
		{name: "successful", ok: true, want: others | 1<<56},
		{name: "flatcar trial", prio: 2, tries: 1, want: others | 2<<48 | 1<<52},
		{name: "all", prio: 3, tries: 5, ok: true, want: others | 0x0153<<48},
		{name: "prio 16", prio: 16, wantErr: true},
		{name: "tries -1", tries: -1, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := gpt.Entry{Attributes: others | 0x01ff<<48}
			err1, err2 := e.SetPriority(tt.prio), e.SetTries(tt.tries)
			if tt.wantErr {
				if !errors.Is(err1, gpt.ErrInvalid) && !errors.Is(err2, gpt.ErrInvalid) {
					t.Fatalf("want ErrInvalid, got %v %v", err1, err2)
				}
				return
			}
			e.SetSuccessful(tt.ok)
			if e.Attributes != tt.want {
				t.Fatalf("attributes %#016x, want %#016x", e.Attributes, tt.want)
			}
			if e.Priority() != tt.prio || e.Tries() != tt.tries || e.Successful() != tt.ok {
				t.Fatalf("read back %d %d %v", e.Priority(), e.Tries(), e.Successful())
			}
		})
	}
}

func TestRoundTripMemory(t *testing.T) {
	for _, ss := range []int{512, 4096} {
		t.Run(map[int]string{512: "512", 4096: "4096"}[ss], func(t *testing.T) {
			want := abTable(t, 32<<20, ss)
			m := memImage(t, want)
			if got := gpt.DetectSectorSize(m, int64(len(m))); got != ss {
				t.Fatalf("DetectSectorSize = %d", got)
			}
			got, rep, err := gpt.Read(m, int64(len(m)), ss)
			if err != nil {
				t.Fatal(err)
			}
			if rep.NeedsRepair() {
				t.Fatalf("fresh table needs repair: %v", rep)
			}
			equalTables(t, got, want)
			if got.FirstUsableLBA != 2+uint64(16384/ss) || got.LastUsableLBA != got.Sectors-2-uint64(16384/ss) {
				t.Fatalf("usable %d..%d", got.FirstUsableLBA, got.LastUsableLBA)
			}
			if e := got.Entries[2]; e.FirstLBA*uint64(ss)%gpt.Align != 0 || e.Sectors()*uint64(ss) != 4<<20 {
				t.Fatalf("USR-A at %d+%d", e.FirstLBA, e.Sectors())
			}
			// Rewriting what was read is byte-identical.
			again := make(memDisk, len(m))
			copy(again, m)
			if err := got.Write(again); err != nil {
				t.Fatal(err)
			}
			if string(again) != string(m) {
				t.Fatal("rewrite of an unchanged table changed bytes")
			}
		})
	}
}

func TestLookup(t *testing.T) {
	tab := abTable(t, 32<<20, 512)
	tests := []struct {
		name    string
		find    func() (int, error)
		want    int
		wantErr error
	}{
		{"label", func() (int, error) { return tab.FindLabel("USR-B") }, 4, nil},
		{"label missing", func() (int, error) { return tab.FindLabel("USR-C") }, 0, gpt.ErrNotFound},
		{"guid", func() (int, error) { return tab.FindGUID(gpt.MustParseGUID("7130c94a-213a-4e5a-8e26-6cce9662f132")) }, 3, nil},
		{"guid missing", func() (int, error) { return tab.FindGUID(gpt.NewGUID()) }, 0, gpt.ErrNotFound},
		{"index 9", func() (int, error) {
			e, err := tab.Entry(9)
			return map[bool]int{true: 9}[err == nil && e.Name == "ROOT"], err
		}, 9, nil},
		{"index 0", func() (int, error) { _, err := tab.Entry(0); return 0, err }, 0, gpt.ErrNotFound},
		{"index 129", func() (int, error) { _, err := tab.Entry(129); return 0, err }, 0, gpt.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.find()
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("got %d, want %d", got, tt.want)
			}
		})
	}
	if got := tab.FindType(gpt.TypeCoreOSUsr); len(got) != 2 || got[0] != 3 || got[1] != 4 {
		t.Fatalf("FindType = %v", got)
	}
	tab.Entries[5].Name = "USR-B"
	if _, err := tab.FindLabel("USR-B"); !errors.Is(err, gpt.ErrInvalid) {
		t.Fatalf("duplicate label: err = %v", err)
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name  string
		size  int64
		ss    int
		parts []gpt.Partition
	}{
		{"sector size 520", 8 << 20, 520, nil},
		{"disk too small", 16 << 10, 512, nil},
		{"too big", 8 << 20, 512, []gpt.Partition{{Name: "X", Type: gpt.TypeLinuxData, Size: 8 << 20}}},
		{"zero type", 8 << 20, 512, []gpt.Partition{{Name: "X", Size: 1 << 20}}},
		{"index twice", 8 << 20, 512, []gpt.Partition{{Index: 2, Name: "X", Type: gpt.TypeLinuxData, Size: 1 << 20}, {Index: 2, Name: "Y", Type: gpt.TypeLinuxData, Size: 1 << 20}}},
		{"index 200", 8 << 20, 512, []gpt.Partition{{Index: 200, Name: "X", Type: gpt.TypeLinuxData, Size: 1 << 20}}},
		{"long name", 8 << 20, 512, []gpt.Partition{{Name: "0123456789012345678901234567890123456", Type: gpt.TypeLinuxData, Size: 1 << 20}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := gpt.New(tt.size, tt.ss, tt.parts); !errors.Is(err, gpt.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}
