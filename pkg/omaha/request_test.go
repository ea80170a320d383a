package omaha

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"testing"
)

func golden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "omaha", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// specParams are the values of SPEC.md section 3's request example.
func specParams() Params {
	return Params{
		Version:         "3815.2.0",
		Track:           "stable",
		BootID:          "4f1c2a4e-8e0b-4b0d-9a57-2b1bd1c0a7d3",
		MachineID:       "0123456789abcdef0123456789abcdef",
		OEM:             "azure",
		OEMVersion:      "2.9.1.1",
		AlephVersion:    "3510.2.0",
		Board:           "amd64-usr",
		Arch:            "x86_64",
		PreviousVersion: "3760.2.0",
	}
}

func TestRequestGolden(t *testing.T) {
	initial := specParams()
	initial.PreviousVersion = InitialPreviousVersion
	initial.Interactive = true
	rollback := specParams()
	rollback.PreviousVersion = rollback.Version
	braced := specParams()
	braced.BootID = "{4f1c2a4e-8e0b-4b0d-9a57-2b1bd1c0a7d3}"
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"check after update", CheckRequest(specParams()), "request_check.xml"},
		{"check with boot id in braces", CheckRequest(braced), "request_check.xml"},
		{"first check ever, on demand", CheckRequest(initial), "request_check_initial.xml"},
		{"rollback", CheckRequest(rollback), "request_rollback.xml"},
		{"ping only", PingRequest(specParams()), "request_ping.xml"},
		{"download started", EventRequest(specParams(), EventDownloadStarted), "request_event_download_started.xml"},
		{"error with test-server flag", EventRequest(specParams(), ErrorEvent(9|1<<28)), "request_event_error.xml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if want := golden(t, tt.want); string(tt.got) != string(want) {
				t.Errorf("request differs from %s:\ngot:\n%s\nwant:\n%s", tt.want, tt.got, want)
			}
		})
	}
}

func TestRequestDecodes(t *testing.T) {
	p := specParams()
	p.MachineAlias = `web <1> & "prod" café`
	var req Request
	if err := xml.Unmarshal(CheckRequest(p), &req); err != nil {
		t.Fatal(err)
	}
	if len(req.Apps) != 1 {
		t.Fatalf("apps = %d", len(req.Apps))
	}
	app := req.Apps[0]
	if app.MachineAlias != p.MachineAlias || app.ID != DefaultAppID || app.BootID != "{"+p.BootID+"}" {
		t.Errorf("app = %+v", app)
	}
	if app.Ping == nil || app.UpdateCheck == nil || len(app.Events) != 1 {
		t.Fatalf("app body = %+v", app)
	}
	ev := app.Events[0]
	if ev.Type != EventTypeUpdateComplete || ev.Result != EventResultSuccessReboot || ev.PreviousVersion != "3760.2.0" {
		t.Errorf("event = %+v", ev)
	}
	if req.OS.ServicePack != "3815.2.0_x86_64" || req.InstallSource != "scheduler" {
		t.Errorf("request = %+v os = %+v", req, req.OS)
	}
}

func TestXMLEncode(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "stable", "stable"},
		{"markup", `a<b>&c`, "a&lt;b&gt;&amp;c"},
		{"quote", `say "hi"`, "say &quot;hi&quot;"},
		{"non-ASCII as hex reference", "café", "caf&#xE9;"},
		{"CR", "a\rb", "a&#13;b"},
		{"control dropped", "a\x01b\tc", "ab\tc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := xmlEncode(tt.in); got != tt.want {
				t.Errorf("xmlEncode(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestErrorEvent(t *testing.T) {
	tests := []struct {
		name       string
		code       int32
		wantResult EventResult
		wantCode   string
	}{
		{"transfer error", 9, EventResultError, "9"},
		{"flagged", 9 | 1<<28 | 1<<30, EventResultError, "1342177289"},
		{"deferred per policy", 36 | 1<<28, EventResultUpdateDeferred, "268435492"},
		{"backoff", 40, EventResultUpdateDeferred, "40"},
		{"dev mode bit is negative", -1<<31 | 10, EventResultError, "-2147483638"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := ErrorEvent(tt.code)
			if ev.Type != EventTypeUpdateComplete || ev.Result != tt.wantResult || ev.ErrorCode != tt.wantCode {
				t.Errorf("ErrorEvent(%d) = %+v", tt.code, ev)
			}
		})
	}
}

func TestEnumStrings(t *testing.T) {
	if s := EventTypeUpdateDownloadStarted.String(); s != "update download started" {
		t.Errorf("13 = %q", s)
	}
	if s := EventType(77).String(); s != "event type 77" {
		t.Errorf("77 = %q", s)
	}
	if s := EventResultSuccessReboot.String(); s != "success, reboot" {
		t.Errorf("2 = %q", s)
	}
	if s := EventResult(42).String(); s != "event result 42" {
		t.Errorf("42 = %q", s)
	}
}

func readGolden(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join("..", "..", "testdata", "omaha", name))
}
