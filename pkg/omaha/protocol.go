package omaha

import "encoding/xml"

// The typed Omaha v3 documents. Servers decode requests and encode
// responses with them (encoding/xml); the client builds its requests byte for
// byte (request.go) and parses responses with FUE's XPath rules
// (response.go), so these types are a superset for interop: attributes of
// FUE, go-omaha (coreos and flatcar forks) and Nebraska. Attributes are
// strings where a server may send anything, so decoding never fails on a
// value. Field order is the order encoding/xml writes attributes in.

// DefaultAppID is the Omaha app id of CoreOS and Flatcar Container Linux.
const DefaultAppID = "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}"

// Request is <request>.
type Request struct {
	XMLName        xml.Name `xml:"request"`
	Protocol       string   `xml:"protocol,attr"`
	Version        string   `xml:"version,attr,omitempty"`
	UpdaterVersion string   `xml:"updaterversion,attr,omitempty"`
	InstallSource  string   `xml:"installsource,attr,omitempty"`
	IsMachine      string   `xml:"ismachine,attr,omitempty"`
	RequestID      string   `xml:"requestid,attr,omitempty"` // go-omaha
	SessionID      string   `xml:"sessionid,attr,omitempty"` // go-omaha
	UserID         string   `xml:"userid,attr,omitempty"`    // go-omaha
	OS             *OS      `xml:"os"`
	Apps           []*App   `xml:"app"`
}

// OS is <os>. Flatcar sends version="Chateau" platform="CoreOS"
// sp="<version>_<uname -m>".
type OS struct {
	Version     string `xml:"version,attr,omitempty"`
	Platform    string `xml:"platform,attr,omitempty"`
	ServicePack string `xml:"sp,attr,omitempty"`
	Arch        string `xml:"arch,attr,omitempty"` // go-omaha
}

// App is a request's <app>. Flatcar quirk: an update check carries ping,
// updatecheck and an event in the same app.
type App struct {
	ID            string `xml:"appid,attr"`
	Version       string `xml:"version,attr,omitempty"`
	Track         string `xml:"track,attr,omitempty"`
	BootID        string `xml:"bootid,attr,omitempty"`
	OEM           string `xml:"oem,attr,omitempty"`
	OEMVersion    string `xml:"oemversion,attr,omitempty"`
	AlephVersion  string `xml:"alephversion,attr,omitempty"`
	MachineID     string `xml:"machineid,attr,omitempty"`
	MachineAlias  string `xml:"machinealias,attr,omitempty"` // Flatcar
	Lang          string `xml:"lang,attr,omitempty"`
	Board         string `xml:"board,attr,omitempty"`
	HardwareClass string `xml:"hardware_class,attr,omitempty"`
	DeltaOK       string `xml:"delta_okay,attr,omitempty"`
	// go-omaha / ChromeOS extras.
	Client          string `xml:"client,attr,omitempty"`
	InstallAge      string `xml:"installage,attr,omitempty"`
	NextVersion     string `xml:"nextversion,attr,omitempty"`
	FromTrack       string `xml:"from_track,attr,omitempty"`
	GroupID         string `xml:"groupid,attr,omitempty"`
	PreviousBootID  string `xml:"previousbootid,attr,omitempty"`
	MultiManifestOK string `xml:"multi_manifest_ok,attr,omitempty"` // flatcar/go-omaha

	Ping        *Ping        `xml:"ping"`
	UpdateCheck *UpdateCheck `xml:"updatecheck"`
	Events      []*Event     `xml:"event"`
}

// Ping is a request's <ping>.
type Ping struct {
	Active         string `xml:"active,attr,omitempty"`
	LastActiveDays string `xml:"a,attr,omitempty"` // go-omaha
	LastReportDays string `xml:"r,attr,omitempty"` // go-omaha
}

// UpdateCheck is a request's <updatecheck>.
type UpdateCheck struct {
	TargetVersionPrefix string `xml:"targetversionprefix,attr,omitempty"` // ChromeOS
}

// Event is a request's <event>. ErrorCode is sent only when the result is
// not success (FUE); it is a signed decimal carrying flag bits.
type Event struct {
	Type            EventType   `xml:"eventtype,attr"`
	Result          EventResult `xml:"eventresult,attr"`
	ErrorCode       string      `xml:"errorcode,attr,omitempty"`
	PreviousVersion string      `xml:"previousversion,attr,omitempty"`
}

// Response is <response>.
type Response struct {
	XMLName  xml.Name       `xml:"response"`
	Protocol string         `xml:"protocol,attr"`
	Server   string         `xml:"server,attr,omitempty"`
	DayStart *DayStart      `xml:"daystart"`
	Apps     []*AppResponse `xml:"app"`
}

// DayStart is <daystart>.
type DayStart struct {
	ElapsedSeconds string `xml:"elapsed_seconds,attr"`
	ElapsedDays    string `xml:"elapsed_days,attr,omitempty"`
}

// AppResponse is a response's <app>. Status is "ok" or an
// "error-…" string (Omaha: error-unknownApplication, Nebraska:
// error-instanceRegistrationFailed, …).
type AppResponse struct {
	ID          string           `xml:"appid,attr"`
	Status      string           `xml:"status,attr,omitempty"`
	Ping        *PingResponse    `xml:"ping"`
	UpdateCheck *UpdateResponse  `xml:"updatecheck"`
	Events      []*EventResponse `xml:"event"`
}

// PingResponse is a response's <ping status="ok">.
type PingResponse struct {
	Status string `xml:"status,attr"`
}

// EventResponse is a response's <event status="ok">.
type EventResponse struct {
	Status string `xml:"status,attr"`
}

// UpdateResponse is a response's <updatecheck>: status "ok", "noupdate" or
// "error-…". PollInterval (seconds) is an FUE extension.
type UpdateResponse struct {
	Status       string    `xml:"status,attr"`
	PollInterval string    `xml:"PollInterval,attr,omitempty"`
	URLs         *URLs     `xml:"urls"`
	Manifest     *Manifest `xml:"manifest"`
}

// URLs is <urls>.
type URLs struct {
	URLs []URL `xml:"url"`
}

// URL is <url codebase="…">; the payload URL is codebase + package name.
type URL struct {
	CodeBase string `xml:"codebase,attr"`
}

// Manifest is <manifest>.
type Manifest struct {
	Version     string    `xml:"version,attr"`
	IsFloor     string    `xml:"is_floor,attr,omitempty"`     // flatcar/go-omaha
	FloorReason string    `xml:"floor_reason,attr,omitempty"` // flatcar/go-omaha
	IsTarget    string    `xml:"is_target,attr,omitempty"`    // flatcar/go-omaha
	Packages    *Packages `xml:"packages"`
	Actions     *Actions  `xml:"actions"`
}

// Packages is <packages>.
type Packages struct {
	Packages []Package `xml:"package"`
}

// Package is <package>. SHA1 (hash) is base64 SHA-1, ignored by FUE.
// SHA256 (hash_sha256) is hex for Flatcar, base64 for go-omaha.
type Package struct {
	Name     string `xml:"name,attr"`
	SHA1     string `xml:"hash,attr,omitempty"`
	SHA256   string `xml:"hash_sha256,attr,omitempty"`
	Size     string `xml:"size,attr"`
	Required string `xml:"required,attr,omitempty"`
}

// Actions is <actions>.
type Actions struct {
	Actions []Action `xml:"action"`
}

// Action is <action>. FUE reads the action whose event is "postinstall":
// sha256 (base64 SHA-256 of the payload, required), MaxFailureCountPerUrl,
// IsDeltaPayload, DisablePayloadBackoff; CUE also MoreInfo, needsadmin,
// Prompt, deadline. ChromeOS attributes are carried for interop only.
type Action struct {
	Event                 string `xml:"event,attr"`
	ChromeOSVersion       string `xml:"ChromeOSVersion,attr,omitempty"`
	SHA256                string `xml:"sha256,attr,omitempty"`
	NeedsAdmin            string `xml:"needsadmin,attr,omitempty"`
	IsDelta               string `xml:"IsDelta,attr,omitempty"`
	IsDeltaPayload        string `xml:"IsDeltaPayload,attr,omitempty"`
	DisablePayloadBackoff string `xml:"DisablePayloadBackoff,attr,omitempty"`
	MaxFailureCountPerURL string `xml:"MaxFailureCountPerUrl,attr,omitempty"`
	MaxDaysToScatter      string `xml:"MaxDaysToScatter,attr,omitempty"`
	MetadataSize          string `xml:"MetadataSize,attr,omitempty"`
	MetadataSignatureRsa  string `xml:"MetadataSignatureRsa,attr,omitempty"`
	MoreInfo              string `xml:"MoreInfo,attr,omitempty"`
	Prompt                string `xml:"Prompt,attr,omitempty"`
	Deadline              string `xml:"deadline,attr,omitempty"`
}
