package fleetlock

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestClientRequests(t *testing.T) {
	type seen struct{ path, header, ctype, body string }
	var got []seen
	full := false
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, seen{r.URL.Path, r.Header.Get("fleet-lock-protocol"), r.Header.Get("Content-Type"), string(b)})
		switch {
		case full:
			w.WriteHeader(http.StatusConflict)
			json.NewEncoder(w).Encode(Error{Kind: "failed_lock_semaphore_full", Value: "semaphore currently full"})
		case strings.HasSuffix(r.URL.Path, "/teapot"):
			w.WriteHeader(http.StatusTeapot)
		}
	}))
	defer ts.Close()
	c := &Client{BaseURL: ts.URL + "/base/", ID: "c988d2509fdf4cdcbed39037c56406fb", HTTP: ts.Client()}

	tests := []struct {
		name    string
		full    bool
		op      func() error
		path    string
		wantErr error
		wantMsg string
	}{
		{name: "lock", op: func() error { return c.Lock(t.Context()) }, path: "/base/v1/pre-reboot"},
		{name: "unlock", op: func() error { return c.Unlock(t.Context()) }, path: "/base/v1/steady-state"},
		{name: "full", full: true, op: func() error { return c.Lock(t.Context()) }, path: "/base/v1/pre-reboot",
			wantErr: ErrRefused, wantMsg: "failed_lock_semaphore_full: semaphore currently full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, full = nil, tt.full
			err := tt.op()
			if !errors.Is(err, tt.wantErr) || (tt.wantMsg != "" && !strings.Contains(err.Error(), tt.wantMsg)) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.wantErr, tt.wantMsg)
			}
			want := seen{tt.path, "true", "application/json", `{"client_params":{"id":"c988d2509fdf4cdcbed39037c56406fb","group":"default"}}`}
			if len(got) != 1 || got[0] != want {
				t.Fatalf("server saw %+v, want %+v", got, want)
			}
		})
	}
	bad := &Client{BaseURL: ts.URL + "/teapot", ID: "x", Group: "g", HTTP: ts.Client()}
	full = false
	if err := bad.post(t.Context(), ""); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "418") {
		t.Fatalf("non-JSON refusal: %v", err)
	}
}
