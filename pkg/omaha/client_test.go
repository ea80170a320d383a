package omaha

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCheckSendsFUERequest(t *testing.T) {
	want := golden(t, "request_check.xml")
	resp := golden(t, "response_update_flatcar.xml")
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "text/xml" || string(body) != string(want) {
			http.Error(w, fmt.Sprintf("bad request %s %q:\n%s", r.Method, r.Header.Get("Content-Type"), body), http.StatusBadRequest)
			return
		}
		w.Write(resp)
	})
	c := newTestClient(t, s.URL+"/v1/update/")
	plan, err := c.Check(testCtx(t), specParams())
	if err != nil {
		t.Fatal(err)
	}
	if plan.NoUpdate || plan.Version != "3850.0.0" || plan.Size != 16 {
		t.Errorf("plan = %+v", plan)
	}
	if n := s.requests.Load(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestCheckFaults(t *testing.T) {
	huge := func(w http.ResponseWriter, r *http.Request, declare bool) {
		const total = 100 << 20
		if declare {
			w.Header().Set("Content-Length", fmt.Sprint(total))
		}
		buf := []byte(strings.Repeat("<response>", 6554))
		for sent := 0; sent < total; sent += len(buf) {
			if _, err := w.Write(buf[:min(len(buf), total-sent)]); err != nil {
				return
			}
		}
	}
	tests := []struct {
		name        string
		handler     http.HandlerFunc
		timeout     time.Duration
		wantErr     error
		wantStatus  int // for *HTTPError
		wantCode    int32
		wantBackoff bool
	}{
		{"500", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }, 0, ErrHTTPStatus, 500, 2500, true},
		{"503", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "busy", 503) }, 0, ErrHTTPStatus, 503, 2503, true},
		{"404 no backoff", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, 0, ErrHTTPStatus, 404, 2404, false},
		{"502 no backoff", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "bad gateway", 502) }, 0, ErrHTTPStatus, 502, 2502, false},
		{"empty body", func(w http.ResponseWriter, r *http.Request) {}, 0, ErrEmptyResponse, -1, 0, false},
		{"malformed XML", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<response><app>") }, 0, ErrXMLParse, -1, 0, false},
		{"truncated body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "500")
			io.WriteString(w, okUpdate[:50])
		}, 0, io.ErrUnexpectedEOF, 200, 2200, false},
		{"100 MB body, chunked", func(w http.ResponseWriter, r *http.Request) { huge(w, r, false) }, 0, ErrResponseTooLarge, 200, 2200, false},
		{"100 MB body, declared", func(w http.ResponseWriter, r *http.Request) { huge(w, r, true) }, 0, ErrResponseTooLarge, 200, 2200, false},
		{"timeout", nil, 200 * time.Millisecond, nil, 0, 2000, false},
		{"307 keeps the POST", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/moved/" {
				http.Redirect(w, r, "/moved/", http.StatusTemporaryRedirect)
				return
			}
			body, _ := io.ReadAll(r.Body)
			if r.Method != http.MethodPost || !strings.Contains(string(body), "<updatecheck>") {
				http.Error(w, "lost the body", 400)
				return
			}
			io.WriteString(w, okUpdate)
		}, 0, nil, -1, 0, false},
		{"308 keeps the POST", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/moved/" {
				http.Redirect(w, r, "/moved/", http.StatusPermanentRedirect)
				return
			}
			body, _ := io.ReadAll(r.Body)
			if !strings.Contains(string(body), "<updatecheck>") {
				http.Error(w, "lost the body", 400)
				return
			}
			io.WriteString(w, okUpdate)
		}, 0, nil, -1, 0, false},
		{"redirect loop", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, r.URL.Path+"x", http.StatusTemporaryRedirect)
		}, 0, nil, 0, 2000, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.handler
			var stop chan struct{}
			if h == nil { // stall until the client gives up
				stop = make(chan struct{})
				h = func(w http.ResponseWriter, r *http.Request) {
					select {
					case <-stop:
					case <-r.Context().Done():
					}
				}
			}
			s := newCountingServer(t, h)
			if stop != nil {
				stallUntilCleanup(t, stop)
			}
			c := newTestClient(t, s.URL+"/v1/update/")
			if tt.timeout > 0 {
				c.RequestTimeout = tt.timeout
			}
			start := time.Now()
			plan, err := c.Check(testCtx(t), specParams())
			if tt.wantErr == nil && tt.wantStatus < 0 {
				if err != nil || plan.Version != "2.0.0" {
					t.Fatalf("plan %+v, err %v", plan, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, plan %+v", plan)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			var he *HTTPError
			if tt.wantStatus >= 0 {
				if !errors.As(err, &he) {
					t.Fatalf("err %v is not an *HTTPError", err)
				}
				if he.StatusCode != tt.wantStatus || he.Code() != tt.wantCode {
					t.Errorf("status %d code %d, want %d %d (%v)", he.StatusCode, he.Code(), tt.wantStatus, tt.wantCode, err)
				}
			} else if errors.As(err, &he) {
				t.Errorf("err %v is an *HTTPError", err)
			}
			if got := Backoff(err); got != tt.wantBackoff {
				t.Errorf("Backoff(%v) = %v", err, got)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
			t.Logf("%s: %v", tt.name, err)
		})
	}
}

func TestCheckConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := newTestClient(t, "http://"+addr+"/v1/update/")
	_, err = c.Check(testCtx(t), specParams())
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != 0 || he.Code() != 2000 || Backoff(err) {
		t.Fatalf("err = %v", err)
	}
}

// 503 answers are the ones the scheduler backs off on (Backoff), and a
// good answer is not.
func TestCheck503BacksOff(t *testing.T) {
	fail := true
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if fail {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, `<response><app><updatecheck status="noupdate"/></app></response>`)
	})
	c := newTestClient(t, s.URL+"/v1/update/")
	var got []bool
	for i := range 5 {
		fail = i < 4
		_, err := c.Check(testCtx(t), specParams())
		got = append(got, Backoff(err))
	}
	if want := []bool{true, true, true, true, false}; !slices.Equal(got, want) {
		t.Fatalf("Backoff per check %v, want %v", got, want)
	}
	if n := s.requests.Load(); n != 5 {
		t.Errorf("%d requests", n)
	}
}

func TestPingAndEvents(t *testing.T) {
	var bodies []string
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		io.WriteString(w, `<response protocol="3.0"><app status="ok"><event status="ok"/></app></response>`)
	})
	c := newTestClient(t, s.URL+"/v1/update/")
	ctx := testCtx(t)
	if err := c.Ping(ctx, specParams()); err != nil {
		t.Fatal(err)
	}
	if err := c.SendEvent(ctx, specParams(), EventDownloadStarted); err != nil {
		t.Fatal(err)
	}
	if err := c.SendEvent(ctx, specParams(), ErrorEvent(9|1<<28)); err != nil {
		t.Fatal(err)
	}
	want := []string{"request_ping.xml", "request_event_download_started.xml", "request_event_error.xml"}
	for i, w := range want {
		if bodies[i] != string(golden(t, w)) {
			t.Errorf("request %d differs from %s:\n%s", i, w, bodies[i])
		}
	}
}
