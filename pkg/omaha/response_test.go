package omaha

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseResponseGolden(t *testing.T) {
	oemSum, _ := hex.DecodeString("4321c39bec40289e14ab42503a533efb43dbe0e355be787bb3c89f4519f503b7")
	tests := []struct {
		name string
		file string
		want Plan
	}{
		{"flatcar-update shape, hex hash_sha256", "response_update_flatcar.xml", Plan{
			Version:               "3850.0.0",
			URLs:                  []string{"http://localhost:9091/flatcar_production_update.gz"},
			PackageName:           "flatcar_production_update.gz",
			Size:                  16,
			SHA256:                "TLcHrRa+zwl7tFr0TVm1/m6FtAhYoVBil+81buhyvxg=",
			MaxFailureCountPerURL: 10,
			DisablePayloadBackoff: true,
		}},
		{"go-omaha base64 style, two mirrors", "response_update_goomaha.xml", Plan{
			Version: "3850.0.0",
			URLs: []string{
				"https://mirror-a.example.com/flatcar/3850.0.0/flatcar_production_update.gz",
				"https://mirror-b.example.com/flatcar/3850.0.0/flatcar_production_update.gz",
			},
			PackageName:           "flatcar_production_update.gz",
			Size:                  16,
			SHA256:                "TLcHrRa+zwl7tFr0TVm1/m6FtAhYoVBil+81buhyvxg=",
			MaxFailureCountPerURL: 3,
			IsDeltaPayload:        true,
		}},
		{"noupdate with PollInterval", "response_noupdate.xml", Plan{NoUpdate: true, PollInterval: time.Hour}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := golden(t, tt.file)
			got, err := ParseResponse(body)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Raw, body) {
				t.Error("Raw is not the body")
			}
			pkgs := got.Packages
			got.Raw, got.Packages = nil, nil
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("plan:\n got %+v\nwant %+v", *got, tt.want)
			}
			if tt.want.NoUpdate {
				return
			}
			sum, err := got.SHA256Bytes()
			if err != nil || len(sum) != 32 {
				t.Errorf("SHA256Bytes = %x, %v", sum, err)
			}
			// hash_sha256, hex or base64, decodes to the same digest here.
			if tt.file == "response_update_goomaha.xml" && !bytes.Equal(pkgs[0].SHA256, sum) {
				t.Errorf("base64 hash_sha256 = %x, want %x", pkgs[0].SHA256, sum)
			}
			if tt.file == "response_update_flatcar.xml" {
				if len(pkgs) != 2 || !bytes.Equal(pkgs[1].SHA256, oemSum) || pkgs[1].Required || !pkgs[0].Required || len(pkgs[0].SHA1) != 20 {
					t.Errorf("packages = %+v", pkgs)
				}
			}
		})
	}
}

const okUpdate = `<response protocol="3.0"><app appid="x" status="ok"><updatecheck status="ok">` +
	`<urls><url codebase="http://a/"/></urls><manifest version="2.0.0"><packages>` +
	`<package name="p.gz" size="100"/></packages><actions>` +
	`<action event="postinstall" sha256="TLcHrRa+zwl7tFr0TVm1/m6FtAhYoVBil+81buhyvxg="/></actions></manifest></updatecheck></app></response>`

func TestParseResponseRules(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		check   func(*Plan) bool
		wantErr error
	}{
		{"empty body is 30", "", nil, ErrEmptyResponse},
		{"whitespace is bad XML", " \n", nil, ErrXMLParse},
		{"malformed", "<response><app></response>", nil, ErrXMLParse},
		{"truncated", okUpdate[:100], nil, ErrXMLParse},
		{"trailing garbage", okUpdate + "junk", nil, ErrXMLParse},
		{"second root", okUpdate + "<response/>", nil, ErrXMLParse},
		{"duplicate attribute", `<response><app><updatecheck status="ok" status="noupdate"/></app></response>`, nil, ErrXMLParse},
		{"not a response", `<request><app><updatecheck status="noupdate"/></app></request>`, nil, ErrInvalidResponse},
		{"no updatecheck", `<response><app status="ok"><ping status="ok"/></app></response>`, nil, ErrInvalidResponse},
		{"updatecheck without status", `<response><app><updatecheck/></app></response>`, nil, ErrInvalidResponse},
		{"error status", `<response><app status="error-unknownApplication"><updatecheck status="error-internal"/></app></response>`, nil, ErrInvalidResponse},
		{"noupdate", `<response><app><updatecheck status="noupdate"/></app></response>`, func(p *Plan) bool { return p.NoUpdate && p.PollInterval == 0 }, nil},
		{"bad PollInterval ignored", `<response><app><updatecheck PollInterval="1h" status="noupdate"/></app></response>`, func(p *Plan) bool { return p.NoUpdate && p.PollInterval == 0 }, nil},
		{"ok", okUpdate, func(p *Plan) bool { return p.Version == "2.0.0" && p.URLs[0] == "http://a/p.gz" && p.Size == 100 }, nil},
		{"first app's updatecheck wins", `<response><app><updatecheck status="noupdate"/></app>` + okUpdate[len("<response protocol=\"3.0\">"):], func(p *Plan) bool { return p.NoUpdate }, nil},
		{"no manifest", strings.Replace(okUpdate, "manifest", "manifestx", 2), nil, ErrInvalidResponse},
		{"no urls", strings.Replace(okUpdate, `<urls><url codebase="http://a/"/></urls>`, "", 1), nil, ErrInvalidResponse},
		{"empty codebase", strings.Replace(okUpdate, `codebase="http://a/"`, `codebase=""`, 1), nil, ErrInvalidResponse},
		{"codebase without slash", strings.Replace(okUpdate, `codebase="http://a/"`, `codebase="http://a/b"`, 1), func(p *Plan) bool { return p.URLs[0] == "http://a/b/p.gz" }, nil},
		{"no package", strings.Replace(okUpdate, `<package name="p.gz" size="100"/>`, "", 1), nil, ErrInvalidResponse},
		{"empty package name", strings.Replace(okUpdate, `name="p.gz"`, `name=""`, 1), nil, ErrInvalidResponse},
		{"size 0", strings.Replace(okUpdate, `size="100"`, `size="0"`, 1), nil, ErrInvalidResponse},
		{"size missing", strings.Replace(okUpdate, `size="100"`, ``, 1), nil, ErrInvalidResponse},
		{"size negative", strings.Replace(okUpdate, `size="100"`, `size="-5"`, 1), nil, ErrInvalidResponse},
		{"size like sscanf %i: hex", strings.Replace(okUpdate, `size="100"`, `size=" 0x10kB"`, 1), func(p *Plan) bool { return p.Size == 16 }, nil},
		{"size like sscanf %i: octal", strings.Replace(okUpdate, `size="100"`, `size="010"`, 1), func(p *Plan) bool { return p.Size == 8 }, nil},
		{"no postinstall action", strings.Replace(okUpdate, `event="postinstall"`, `event="update"`, 1), nil, ErrInvalidResponse},
		{"empty sha256", strings.Replace(okUpdate, `sha256="TLcHrRa+zwl7tFr0TVm1/m6FtAhYoVBil+81buhyvxg="`, `sha256=""`, 1), nil, ErrInvalidResponse},
		{"bad MaxFailureCountPerUrl means 10", strings.Replace(okUpdate, `event="postinstall"`, `event="postinstall" MaxFailureCountPerUrl="-1"`, 1), func(p *Plan) bool { return p.MaxFailureCountPerURL == 10 }, nil},
		{"IsDeltaPayload is case-sensitive", strings.Replace(okUpdate, `event="postinstall"`, `event="postinstall" IsDeltaPayload="True"`, 1), func(p *Plan) bool { return !p.IsDeltaPayload }, nil},
		{"attribute names are case-sensitive", strings.Replace(okUpdate, `<updatecheck status="ok">`, `<updatecheck Status="ok">`, 1), nil, ErrInvalidResponse},
		{"namespaced root is not /response", strings.Replace(strings.Replace(okUpdate, `<response protocol="3.0">`, `<x:response xmlns:x="urn:x" protocol="3.0">`, 1), "</response>", "</x:response>", 1), nil, ErrInvalidResponse},
		{"mismatched end tag", strings.Replace(okUpdate, "</response>", "</responsex>", 1), nil, ErrXMLParse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParseResponse([]byte(tt.body))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(p) {
				t.Errorf("plan = %+v", p)
			}
		})
	}
}

func TestDecodeSHA256(t *testing.T) {
	hexs := "4321c39bec40289e14ab42503a533efb43dbe0e355be787bb3c89f4519f503b7"
	b64 := "QyHDm+xAKJ4Uq0JQOlM++0Pb4ONVvnh7s8ifRRn1A7c="
	h, b := DecodeSHA256(hexs), DecodeSHA256(b64)
	if len(h) != 32 || !bytes.Equal(h, b) {
		t.Errorf("hex %x base64 %x", h, b)
	}
	if DecodeSHA256("zz") != nil || DecodeSHA256("") != nil {
		t.Error("garbage decoded")
	}
}

func FuzzParseResponse(f *testing.F) {
	for _, name := range []string{"response_update_flatcar.xml", "response_update_goomaha.xml", "response_noupdate.xml"} {
		b, err := readGolden(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(okUpdate))
	f.Add([]byte(""))
	f.Add([]byte("<response><app><updatecheck status=\"ok\"><manifest/></updatecheck></app></response>"))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParseResponse(body)
		if err != nil {
			if !errors.Is(err, ErrEmptyResponse) && !errors.Is(err, ErrXMLParse) && !errors.Is(err, ErrInvalidResponse) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if p.NoUpdate {
			return
		}
		if len(p.URLs) == 0 || p.Size <= 0 || p.PackageName == "" || p.SHA256 == "" || p.MaxFailureCountPerURL < 0 {
			t.Fatalf("accepted an invalid plan %+v", p)
		}
	})
}
