package omaha

import (
	"fmt"
	"strconv"
	"strings"
)

// Constants FUE puts in every request.
const (
	// UpdaterVersion is FUE's autoconf PACKAGE_NAME-PACKAGE_VERSION, sent as
	// request version and updaterversion.
	UpdaterVersion = "update_engine-0.4.10"
	// OSVersion and OSPlatform are constants, also on Flatcar.
	OSVersion  = "Chateau"
	OSPlatform = "CoreOS"
	// DefaultLang is FUE's app lang.
	DefaultLang = "en-US"
	// InitialPreviousVersion is what FUE reports as previousversion when
	// the previous-version pref never existed.
	InitialPreviousVersion = "0.0.0.0"
)

// Params are the values of one request, filled by the engine from its
// configuration (update.conf, release files, /etc/machine-id, the boot id,
// oem-release, prefs). Empty strings are sent as empty attributes, as FUE
// does; only AppID, Lang and UpdaterVersion have defaults.
type Params struct {
	AppID         string // FLATCAR_RELEASE_APPID; "" = DefaultAppID
	Version       string // FLATCAR_RELEASE_VERSION
	Track         string // GROUP
	BootID        string // /proc/sys/kernel/random/boot_id; braces added when missing
	MachineID     string // /etc/machine-id (32 hex)
	OEM           string // ID of oem-release
	OEMVersion    string // VERSION_ID of oem-release
	AlephVersion  string // pref aleph-version
	MachineAlias  string // MACHINE_ALIAS
	Lang          string // "" = DefaultLang
	Board         string // FLATCAR_RELEASE_BOARD
	HardwareClass string // always "" on Flatcar
	Arch          string // uname -m, for os sp = Version_Arch
	DeltaOK       bool   // FUE always sends false
	// Interactive selects installsource="ondemandupdate" (D-Bus
	// AttemptUpdate) instead of "scheduler".
	Interactive bool
	// PreviousVersion is the previous-version pref for the update-check
	// event: the version that ran before the last applied update. The engine
	// passes InitialPreviousVersion when the pref never existed and "" once
	// it has been cleared (FUE clears it after every check). When it equals
	// Version a rollback is reported (3/0 errorcode=44) instead of 3/2.
	PreviousVersion string
	UpdaterVersion  string // "" = UpdaterVersion
}

// RollbackErrorCode is FUE's kActionCodeRollbackError, sent as 3/0 on the
// first check after the new slot failed to boot.
const RollbackErrorCode = RollbackError

// Event constructors for what Flatcar sends.
var (
	EventDownloadStarted  = Event{Type: EventTypeUpdateDownloadStarted, Result: EventResultSuccess}  // 13/1
	EventDownloadFinished = Event{Type: EventTypeUpdateDownloadFinished, Result: EventResultSuccess} // 14/1
	EventUpdateApplied    = Event{Type: EventTypeUpdateComplete, Result: EventResultSuccess}         // 3/1
)

// ErrorEvent is the event for a failed attempt: 3/0 with errorcode = code,
// the already-flagged code (flag bits 28-31 included) as FUE reports it. For
// the policy codes 35, 36 and 40 the result is 9 (update deferred).
func ErrorEvent(code int32) Event {
	r := EventResultError
	switch code & 0x0FFFFFFF {
	case 35, 36, 40:
		r = EventResultUpdateDeferred
	}
	return Event{Type: EventTypeUpdateComplete, Result: r, ErrorCode: strconv.FormatInt(int64(code), 10)}
}

// CheckRequest returns the update-check request: ping, updatecheck and the
// previous-version (3/2) or rollback (3/0 errorcode=44) event.
func CheckRequest(p Params) []byte {
	var b strings.Builder
	b.WriteString("        <ping active=\"1\"></ping>\n")
	b.WriteString("        <updatecheck></updatecheck>\n")
	if p.PreviousVersion != "" && p.PreviousVersion == p.Version {
		fmt.Fprintf(&b, "        <event eventtype=\"%d\" eventresult=\"%d\" errorcode=\"%d\"></event>\n",
			EventTypeUpdateComplete, EventResultError, RollbackErrorCode)
	} else {
		fmt.Fprintf(&b, "        <event eventtype=\"%d\" eventresult=\"%d\" previousversion=\"%s\"></event>\n",
			EventTypeUpdateComplete, EventResultSuccessReboot, xmlEncode(p.PreviousVersion))
	}
	return requestXML(p, b.String())
}

// PingRequest returns a ping-only request (scheduled checks while an
// update waits for reboot).
func PingRequest(p Params) []byte {
	return requestXML(p, "        <ping active=\"1\"></ping>\n")
}

// EventRequest returns an event-only request. errorcode is written only
// when the result is not success (FUE), as ev.ErrorCode or "0".
func EventRequest(p Params, ev Event) []byte {
	ec := ""
	if ev.Result != EventResultSuccess {
		code := ev.ErrorCode
		if code == "" {
			code = "0"
		}
		ec = " errorcode=\"" + xmlEncode(code) + "\""
	}
	return requestXML(p, fmt.Sprintf("        <event eventtype=\"%d\" eventresult=\"%d\"%s></event>\n",
		int(ev.Type), int(ev.Result), ec))
}

// requestXML wraps an app body as FUE's GetRequestXml does, whitespace
// included.
func requestXML(p Params, appBody string) []byte {
	uv := p.UpdaterVersion
	if uv == "" {
		uv = UpdaterVersion
	}
	src := "scheduler"
	if p.Interactive {
		src = "ondemandupdate"
	}
	appID := p.AppID
	if appID == "" {
		appID = DefaultAppID
	}
	lang := p.Lang
	if lang == "" {
		lang = DefaultLang
	}
	bootID := p.BootID
	if bootID != "" && !strings.HasPrefix(bootID, "{") {
		bootID = "{" + bootID + "}"
	}
	delta := "false"
	if p.DeltaOK {
		delta = "true"
	}
	var b strings.Builder
	b.WriteString("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
	b.WriteString("<request protocol=\"3.0\" version=\"" + xmlEncode(uv) + "\" updaterversion=\"" + xmlEncode(uv) +
		"\" installsource=\"" + src + "\" ismachine=\"1\">\n")
	b.WriteString("    <os version=\"" + OSVersion + "\" platform=\"" + OSPlatform + "\" sp=\"" +
		xmlEncode(p.Version+"_"+p.Arch) + "\"></os>\n")
	attrs := [][2]string{
		{"appid", appID}, {"version", p.Version}, {"track", p.Track}, {"bootid", bootID},
		{"oem", p.OEM}, {"oemversion", p.OEMVersion}, {"alephversion", p.AlephVersion},
		{"machineid", p.MachineID}, {"machinealias", p.MachineAlias}, {"lang", lang},
		{"board", p.Board}, {"hardware_class", p.HardwareClass}, {"delta_okay", delta},
	}
	b.WriteString("    <app")
	for _, a := range attrs {
		b.WriteString(" " + a[0] + "=\"" + xmlEncode(a[1]) + "\"")
	}
	b.WriteString(" >\n")
	b.WriteString(appBody)
	b.WriteString("    </app>\n")
	b.WriteString("</request>\n")
	return []byte(b.String())
}

// xmlEncode escapes like libxml2's xmlEncodeEntitiesReentrant without a
// document (FUE's XmlEncode): & < > and CR as entities, non-ASCII as
// &#xHEX;, other control characters but TAB and LF dropped. libxml2 leaves '"' alone, which breaks the attribute; we escape it
// as &quot; so the request stays well-formed.
func xmlEncode(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '&':
			b.WriteString("&amp;")
		case r == '<':
			b.WriteString("&lt;")
		case r == '>':
			b.WriteString("&gt;")
		case r == '"':
			b.WriteString("&quot;")
		case r == '\r':
			b.WriteString("&#13;")
		case r >= 0x80:
			fmt.Fprintf(&b, "&#x%X;", r)
		case r < 0x20 && r != '\t' && r != '\n':
			// libxml2 drops characters XML cannot carry.
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
