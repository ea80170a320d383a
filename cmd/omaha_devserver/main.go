// Command omaha_devserver serves a directory of payloads (with the OUT.json
// metadata payload_generator writes) over Omaha v3 at /v1/update/, and the
// payload files themselves under /packages/ with Range support.
//
//	omaha_devserver --dir DIR --listen ADDR [--log FILE] [--rollout N]
//	                [--prefer-delta] [--paused] [--base-url URL] [--admin]
//	                [--poll-interval D] [--state FILE] [--token-file FILE]
//	omaha_devserver --version
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

	"github.com/abupdate/update_engine/internal/version"
	"github.com/abupdate/update_engine/pkg/omaha"
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

// options are the command line.
type options struct {
	dir, listen, logFile, baseURL, state, tokenFile string
	rollout                                         int
	preferDelta, paused, admin, showVersion         bool
	pollInterval                                    time.Duration
	given                                           map[string]bool // the flags set on the command line
}

// parseFlags reads args; it fails with flag.ErrHelp after printing the
// flags for -h.
func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{given: map[string]bool{}}
	fs := flag.NewFlagSet("omaha_devserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.dir, "dir", ".", "directory of payloads and their .json metadata")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address to listen on")
	fs.StringVar(&o.logFile, "log", "", "append every request and event as JSON lines to this file")
	fs.IntVar(&o.rollout, "rollout", 100, "percentage of machines (by machine-id hash) offered updates")
	fs.BoolVar(&o.preferDelta, "prefer-delta", false, "offer delta payloads even when clients send delta_okay=false")
	fs.BoolVar(&o.paused, "paused", false, "start with updates paused")
	fs.StringVar(&o.baseURL, "base-url", "", "codebase for payload URLs (default: http://<request Host>/packages/)")
	fs.BoolVar(&o.admin, "admin", false, "enable POST /admin/pause, /admin/resume, /admin/rollout?percent=N")
	fs.DurationVar(&o.pollInterval, "poll-interval", 0, "send this PollInterval in responses (0 = none)")
	fs.StringVar(&o.state, "state", "", "keep rollout, pause and the host table in this bbolt file (\"\" = memory only)")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding the token that enables the fleet page's controls")
	fs.BoolVar(&o.showVersion, "version", false, "print this program's version and exit")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	fs.Visit(func(f *flag.Flag) { o.given[f.Name] = true })
	return o, nil
}

// run parses args and serves until ctx ends. ready, if set, receives the
// bound address.
func run(ctx context.Context, args []string, stderr io.Writer, ready chan<- string) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.showVersion {
		version.Print(os.Stdout, "omaha_devserver")
		return nil
	}
	if o.rollout < 0 || o.rollout > 100 {
		return fmt.Errorf("--rollout %d: want 0-100", o.rollout)
	}
	logger := log.New(stderr, "omaha_devserver: ", log.LstdFlags)
	cfg, err := o.serverConfig(logger)
	if err != nil {
		return err
	}
	if o.logFile != "" {
		f, err := os.OpenFile(o.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		cfg.Log = f
	}
	h, err := o.newHandler(cfg)
	if err != nil {
		return err
	}
	defer h.Close()
	metas, _ := server.LoadDir(o.dir)
	logger.Printf("serving %d payload(s) from %s", len(metas), o.dir)

	mux := http.NewServeMux()
	mux.Handle("/", h)
	if o.admin {
		// The token-less controls answer only connections from this
		// machine; the fleet page's controls take a token.
		mux.Handle("/admin/", loopbackOnly(adminMux(h)))
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	logger.Printf("listening on http://%s/v1/update/", ln.Addr())
	if ready != nil {
		ready <- ln.Addr().String()
	}
	if err := serve(ctx, ln, logRequests(logger, mux)); err != nil {
		return err
	}
	return h.LogError()
}

// serverConfig is the server's Config for o, but for Log; it reads the
// token file.
func (o *options) serverConfig(logger *log.Logger) (server.Config, error) {
	cfg := server.Config{Dir: o.dir, BaseURL: o.baseURL, PreferDelta: o.preferDelta, Paused: o.paused, PollInterval: o.pollInterval,
		ErrorLog: logger, State: o.state, Rollout: o.rollout,
		CodeName: func(c int64) string { return omaha.Code(int32(c)).String() }}
	if o.rollout == 0 {
		cfg.Rollout = -1 // Config maps 0 to 100; --rollout 0 means none
	}
	if o.tokenFile != "" {
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return cfg, err
		}
		if cfg.AdminToken = strings.TrimSpace(string(b)); len(cfg.AdminToken) < 16 {
			return cfg, fmt.Errorf("--token-file %s: want a token of 16 characters or more", o.tokenFile)
		}
	}
	return cfg, nil
}

// newHandler starts the server on cfg. --rollout and --paused, when
// given, overwrite the default saved in the state file.
func (o *options) newHandler(cfg server.Config) (*server.Handler, error) {
	h, err := server.New(cfg)
	if err != nil {
		return nil, err
	}
	if o.given["rollout"] {
		if err := h.SetRollout(o.rollout); err != nil {
			h.Close()
			return nil, err
		}
	}
	if o.given["paused"] {
		if err := h.SetPaused(o.paused); err != nil {
			h.Close()
			return nil, err
		}
	}
	return h, nil
}

// adminMux is the token-less controls of --admin: POST /admin/pause,
// /admin/resume and /admin/rollout?percent=N.
func adminMux(h *server.Handler) http.Handler {
	am := http.NewServeMux()
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
	return am
}

// serve serves handler on ln until ctx ends, then shuts down, giving
// requests in flight 5 seconds.
func serve(ctx context.Context, ln net.Listener, handler http.Handler) error {
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 30 * time.Second}
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
	return nil
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
