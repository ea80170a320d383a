package server

import "testing"

func TestEventsString(t *testing.T) {
	code := int64(268435465)
	evs := []RecordedEvent{
		{Type: 3, Result: 2, PreviousVersion: "1.0.0"},
		{Type: 13, Result: 1},
		{Type: 3, Result: 0, ErrorCode: &code},
	}
	if got, want := EventsString(evs), "3/2 previousversion=1.0.0, 13/1, 3/0 errorcode=268435465"; got != want {
		t.Fatalf("EventsString = %q, want %q", got, want)
	}
	if got := EventsString(nil); got != "" {
		t.Fatalf("EventsString(nil) = %q", got)
	}
}
