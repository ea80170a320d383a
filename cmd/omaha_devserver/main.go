// Command omaha_devserver serves a directory of payloads (with the OUT.json
// metadata payload_generator writes) over Omaha v3 at /v1/update/, and the
// payload files themselves under /packages/ with Range support.
//
//	omaha_devserver --dir DIR --listen ADDR [--log FILE] [--rollout N]
//	                [--prefer-delta] [--paused] [--base-url URL] [--admin]
//
// With --admin, POST /admin/pause, /admin/resume and /admin/rollout?percent=N
// switch the pause and the rollout at run time (bind to 127.0.0.1 then).
// SIGINT/SIGTERM stop it gracefully.
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
	"syscall"
	"time"

	"github.com/abupdate/update_engine/internal/version"
	"github.com/abupdate/update_engine/pkg/omaha/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil {
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
	showVersion := fs.Bool("version", false, "print this program's version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		version.Print(os.Stdout, "omaha_devserver")
		return nil
	}
	if *rollout < 0 || *rollout > 100 {
		return fmt.Errorf("--rollout %d: want 0-100", *rollout)
	}
	logger := log.New(stderr, "omaha_devserver: ", log.LstdFlags)
	cfg := server.Config{Dir: *dir, BaseURL: *baseURL, PreferDelta: *preferDelta, Paused: *paused, PollInterval: *pollInterval,
		ErrorLog: logger}
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
	h.SetRollout(*rollout)
	metas, _ := server.LoadDir(*dir)
	logger.Printf("serving %d payload(s) from %s", len(metas), *dir)

	mux := http.NewServeMux()
	mux.Handle("/", h)
	if *admin {
		mux.HandleFunc("POST /admin/pause", func(w http.ResponseWriter, r *http.Request) {
			h.SetPaused(true)
			io.WriteString(w, "paused\n")
		})
		mux.HandleFunc("POST /admin/resume", func(w http.ResponseWriter, r *http.Request) {
			h.SetPaused(false)
			io.WriteString(w, "resumed\n")
		})
		mux.HandleFunc("POST /admin/rollout", func(w http.ResponseWriter, r *http.Request) {
			n, err := strconv.Atoi(r.URL.Query().Get("percent"))
			if err != nil || n < 0 || n > 100 {
				http.Error(w, "percent=0-100", http.StatusBadRequest)
				return
			}
			h.SetRollout(n)
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
