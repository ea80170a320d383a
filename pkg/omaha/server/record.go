package server

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/abupdate/update_engine/pkg/omaha"
)

// Results of an update check, as recorded.
const (
	ResultUpdate     = "update"      // an update was offered
	ResultNoUpdate   = "noupdate"    // the client is current
	ResultPaused     = "paused"      // an update exists but the server is paused
	ResultHeldBack   = "held-back"   // an update exists but the machine is outside the rollout
	ResultUnknownApp = "unknown-app" // no payload for this app id
)

// Record is what one <app> of one request carried, and what the server
// answered. It is also the JSON line written to Config.Log.
type Record struct {
	Time          time.Time       `json:"time"`
	Remote        string          `json:"remote"`
	InstallSource string          `json:"installsource,omitempty"`
	AppID         string          `json:"appid"`
	Version       string          `json:"version"`
	Track         string          `json:"track"`
	MachineID     string          `json:"machineid"`
	MachineAlias  string          `json:"machinealias,omitempty"`
	BootID        string          `json:"bootid,omitempty"`
	OEM           string          `json:"oem,omitempty"`
	OEMVersion    string          `json:"oemversion,omitempty"`
	AlephVersion  string          `json:"alephversion,omitempty"`
	Board         string          `json:"board,omitempty"`
	DeltaOK       bool            `json:"delta_okay"`
	Ping          bool            `json:"ping"`
	UpdateCheck   bool            `json:"updatecheck"`
	Events        []RecordedEvent `json:"events,omitempty"`
	// Result is one of the Result… constants for an update check, "" for
	// pings and events.
	Result         string `json:"result,omitempty"`
	Offered        string `json:"offered,omitempty"`         // payload file offered
	OfferedVersion string `json:"offered_version,omitempty"` // its version
}

// RecordedEvent is one <event> a client sent.
type RecordedEvent struct {
	MachineID       string            `json:"machineid"`
	Type            omaha.EventType   `json:"eventtype"`
	Result          omaha.EventResult `json:"eventresult"`
	ErrorCode       *int64            `json:"errorcode,omitempty"`
	PreviousVersion string            `json:"previousversion,omitempty"`
}

// String is the event in short form: "13/1", "3/0 errorcode=268435465",
// "3/2 previousversion=1.0.0".
func (e RecordedEvent) String() string {
	s := fmt.Sprintf("%d/%d", int(e.Type), int(e.Result))
	if e.ErrorCode != nil {
		s += fmt.Sprintf(" errorcode=%d", *e.ErrorCode)
	}
	if e.PreviousVersion != "" {
		s += " previousversion=" + e.PreviousVersion
	}
	return s
}

// EventsString joins the short forms of evs with ", ".
func EventsString(evs []RecordedEvent) string {
	parts := make([]string, len(evs))
	for i, e := range evs {
		parts[i] = e.String()
	}
	return strings.Join(parts, ", ")
}

func newRecord(now time.Time, remote string, req *omaha.Request, app *omaha.App) Record {
	rec := Record{
		Time: now, Remote: remote, InstallSource: req.InstallSource,
		AppID: app.ID, Version: app.Version, Track: app.Track, MachineID: app.MachineID,
		MachineAlias: app.MachineAlias, BootID: app.BootID, OEM: app.OEM, OEMVersion: app.OEMVersion,
		AlephVersion: app.AlephVersion, Board: app.Board, DeltaOK: app.DeltaOK == "true",
		Ping: app.Ping != nil, UpdateCheck: app.UpdateCheck != nil,
	}
	for _, e := range app.Events {
		re := RecordedEvent{MachineID: app.MachineID, Type: e.Type, Result: e.Result, PreviousVersion: e.PreviousVersion}
		if n, err := strconv.ParseInt(e.ErrorCode, 10, 64); err == nil {
			re.ErrorCode = &n
		}
		rec.Events = append(rec.Events, re)
	}
	return rec
}
