package omaha

import "strconv"

// EventType is an Omaha v3 event's eventtype attribute (Omaha V3 doc,
// go-omaha codes.go). Flatcar sends only 3, 13 and 14.
type EventType int

// Event types.
const (
	EventTypeUnknown                 EventType = 0
	EventTypeDownloadComplete        EventType = 1
	EventTypeInstallComplete         EventType = 2
	EventTypeUpdateComplete          EventType = 3
	EventTypeUninstall               EventType = 4
	EventTypeDownloadStarted         EventType = 5
	EventTypeInstallStarted          EventType = 6
	EventTypeNewApplicationInstall   EventType = 9
	EventTypeSetupStarted            EventType = 10
	EventTypeSetupFinished           EventType = 11
	EventTypeUpdateApplicationStart  EventType = 12
	EventTypeUpdateDownloadStarted   EventType = 13
	EventTypeUpdateDownloadFinished  EventType = 14
	EventTypeUpdateInstallerStarted  EventType = 15
	EventTypeSetupUpdateBegin        EventType = 16
	EventTypeSetupUpdateComplete     EventType = 17
	EventTypeRegisterProductComplete EventType = 20
	EventTypeOEMInstallFirstCheck    EventType = 30
	EventTypeAppSpecificCommandStart EventType = 40
	EventTypeAppSpecificCommandEnded EventType = 41
	EventTypeSetupFailure            EventType = 100
	EventTypeComServerFailure        EventType = 102
	EventTypeSetupUpdateFailure      EventType = 103
	// EventTypeNebraskaInstalled is Nebraska's custom "installed" event (800/1).
	EventTypeNebraskaInstalled EventType = 800
)

var eventTypeNames = map[EventType]string{
	EventTypeUnknown:                 "unknown",
	EventTypeDownloadComplete:        "download complete",
	EventTypeInstallComplete:         "install complete",
	EventTypeUpdateComplete:          "update complete",
	EventTypeUninstall:               "uninstall",
	EventTypeDownloadStarted:         "download started",
	EventTypeInstallStarted:          "install started",
	EventTypeNewApplicationInstall:   "new application install started",
	EventTypeSetupStarted:            "setup started",
	EventTypeSetupFinished:           "setup finished",
	EventTypeUpdateApplicationStart:  "update application started",
	EventTypeUpdateDownloadStarted:   "update download started",
	EventTypeUpdateDownloadFinished:  "update download finished",
	EventTypeUpdateInstallerStarted:  "update installer started",
	EventTypeSetupUpdateBegin:        "setup update begin",
	EventTypeSetupUpdateComplete:     "setup update complete",
	EventTypeRegisterProductComplete: "register product complete",
	EventTypeOEMInstallFirstCheck:    "OEM install first check",
	EventTypeAppSpecificCommandStart: "app-specific command started",
	EventTypeAppSpecificCommandEnded: "app-specific command ended",
	EventTypeSetupFailure:            "setup failure",
	EventTypeComServerFailure:        "COM server failure",
	EventTypeSetupUpdateFailure:      "setup update failure",
	EventTypeNebraskaInstalled:       "installed (nebraska)",
}

func (t EventType) String() string {
	if s, ok := eventTypeNames[t]; ok {
		return s
	}
	return "event type " + strconv.Itoa(int(t))
}

// EventResult is an Omaha v3 event's eventresult attribute. Flatcar sends
// only 0, 1, 2 and 9.
type EventResult int

// Event results.
const (
	EventResultError                 EventResult = 0
	EventResultSuccess               EventResult = 1
	EventResultSuccessReboot         EventResult = 2
	EventResultSuccessRestartBrowser EventResult = 3
	EventResultCancelled             EventResult = 4
	EventResultErrorInstallerMSI     EventResult = 5
	EventResultErrorInstallerOther   EventResult = 6
	EventResultNoUpdate              EventResult = 7
	EventResultErrorInstallerSystem  EventResult = 8
	EventResultUpdateDeferred        EventResult = 9
	EventResultHandoffError          EventResult = 10
)

var eventResultNames = map[EventResult]string{
	EventResultError:                 "error",
	EventResultSuccess:               "success",
	EventResultSuccessReboot:         "success, reboot",
	EventResultSuccessRestartBrowser: "success, restart browser",
	EventResultCancelled:             "cancelled",
	EventResultErrorInstallerMSI:     "installer error (MSI)",
	EventResultErrorInstallerOther:   "installer error (other)",
	EventResultNoUpdate:              "no update",
	EventResultErrorInstallerSystem:  "installer error (system)",
	EventResultUpdateDeferred:        "update deferred",
	EventResultHandoffError:          "handoff error",
}

func (r EventResult) String() string {
	if s, ok := eventResultNames[r]; ok {
		return s
	}
	return "event result " + strconv.Itoa(int(r))
}
