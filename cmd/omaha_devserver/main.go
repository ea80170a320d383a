// Command omaha_devserver serves a directory of payloads (with the OUT.json
// metadata payload_generator writes) over Omaha v3 at /v1/update/, and the
// payload files themselves under /packages/ with Range support.
//
//	omaha_devserver --dir DIR --listen ADDR [--log FILE] [--rollout N]
//	                [--prefer-delta] [--paused] [--base-url URL] [--admin]
//	                [--state FILE] [--token-file FILE]
//
// GET / is the fleet page (groups, versions, host counts, rollout, last
// errors) and GET /api/fleet the same as JSON; its controls (POST
// /fleet/pause, /fleet/resume, /fleet/rollout) need the token read from
// --token-file and are disabled without one. --state keeps the settings
// and the host table in a bbolt file across restarts; --rollout and
// --paused, when given, overwrite the saved default.
// With --admin, POST /admin/pause, /admin/resume and /admin/rollout?percent=N
// switch the default pause and rollout at run time without a token (bind
// to 127.0.0.1 then). SIGINT/SIGTERM stop it gracefully.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/abupdate/update_engine/internal/status"
	"github.com/abupdate/update_engine/internal/version"
	"github.com/abupdate/update_engine/pkg/omaha/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil); errors.Is(err, flag.ErrHelp) {
		os.Exit(0) // the flags were printed
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "omaha_devserver:", err)
		os.Exit(1)
	}
}

// run parses args and serves until ctx ends. ready, if set, receives the
// bound address.
func run(ctx context.Context, args []string, stderr io.Writer, ready chan<- string) error {
	fs := flag.NewFlagSet("omaha_devserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".", "directory of payloads and their .json metadata")
	listen := fs.String("listen", "127.0.0.1:8080", "address to listen on")
	logFile := fs.String("log", "", "append every request and event as JSON lines to this file")
	rollout := fs.Int("rollout", 100, "percentage of machines (by machine-id hash) offered updates")
	preferDelta := fs.Bool("prefer-delta", false, "offer delta payloads even when clients send delta_okay=false")
	paused := fs.Bool("paused", false, "start with updates paused")
	baseURL := fs.String("base-url", "", "codebase for payload URLs (default: http://<request Host>/packages/)")
	admin := fs.Bool("admin", false, "enable POST /admin/pause, /admin/resume, /admin/rollout?percent=N")
	pollInterval := fs.Duration("poll-interval", 0, "send this PollInterval in responses (0 = none)")
	state := fs.String("state", "", "keep rollout, pause and the host table in this bbolt file (\"\" = memory only)")
	tokenFile := fs.String("token-file", "", "file holding the token that enables the fleet page's controls")
	showVersion := fs.Bool("version", false, "print this program's version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		version.Print(os.Stdout, "omaha_devserver")
		return nil
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if *rollout < 0 || *rollout > 100 {
		return fmt.Errorf("--rollout %d: want 0-100", *rollout)
	}
	logger := log.New(stderr, "omaha_devserver: ", log.LstdFlags)
	cfg := server.Config{Dir: *dir, BaseURL: *baseURL, PreferDelta: *preferDelta, Paused: *paused, PollInterval: *pollInterval,
		ErrorLog: logger, State: *state, Rollout: *rollout,
		CodeName: func(c int64) string { return status.Code(int32(c)).String() }}
	if *rollout == 0 {
		cfg.Rollout = -1 // Config maps 0 to 100; --rollout 0 means none
	}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return err
		}
		if cfg.AdminToken = strings.TrimSpace(string(b)); len(cfg.AdminToken) < 16 {
			return fmt.Errorf("--token-file %s: want a token of 16 characters or more", *tokenFile)
		}
	}
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		cfg.Log = f
	}
	h, err := server.New(cfg)
	if err != nil {
		return err
	}
	defer h.Close()
	if given["rollout"] {
		if err := h.SetRollout(*rollout); err != nil {
			return err
		}
	}
	if given["paused"] {
		if err := h.SetPaused(*paused); err != nil {
			return err
		}
	}
	metas, _ := server.LoadDir(*dir)
	logger.Printf("serving %d payload(s) from %s", len(metas), *dir)

	mux := http.NewServeMux()
	mux.Handle("/", h)
	if *admin {
		// The token-less controls answer only connections from this
		// machine; the fleet page's controls take a token.
		am := http.NewServeMux()
		mux.Handle("/admin/", loopbackOnly(am))
		am.HandleFunc("POST /admin/pause", func(w http.ResponseWriter, r *http.Request) {
			if err := h.SetPaused(true); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			io.WriteString(w, "paused\n")
		})
		am.HandleFunc("POST /admin/resume", func(w http.ResponseWriter, r *http.Request) {
			if err := h.SetPaused(false); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			io.WriteString(w, "resumed\n")
		})
		am.HandleFunc("POST /admin/rollout", func(w http.ResponseWriter, r *http.Request) {
			n, err := strconv.Atoi(r.URL.Query().Get("percent"))
			if err != nil || n < 0 || n > 100 {
				http.Error(w, "percent=0-100", http.StatusBadRequest)
				return
			}
			if err := h.SetRollout(n); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			fmt.Fprintf(w, "rollout %d%%\n", n)
		})
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: logRequests(logger, mux), ReadHeaderTimeout: 30 * time.Second}
	logger.Printf("listening on http://%s/v1/update/", ln.Addr())
	if ready != nil {
		ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return h.LogError()
}

func logRequests(l *log.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.Printf("%s %s %s range=%q", r.RemoteAddr, r.Method, r.URL.Path, r.Header.Get("Range"))
		next.ServeHTTP(w, r)
	})
}

// loopbackOnly refuses (403) a request whose peer is not a loopback
// address, and otherwise hands it on to next.
func loopbackOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			http.Error(w, "the /admin controls answer only this machine (use the fleet page's token-protected controls)", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}
