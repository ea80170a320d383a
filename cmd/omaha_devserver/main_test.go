package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abupdate/update_engine/pkg/omaha"
	"github.com/abupdate/update_engine/pkg/omaha/server"
)

// The binary's run loop end to end: flags, a payload directory, a check,
// the admin pause, the JSON log, and a clean shutdown.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("payload"), 1000)
	s2, s1 := sha256.Sum256(data), sha1.Sum(data)
	os.WriteFile(filepath.Join(dir, "p.gz"), data, 0o644)
	meta, _ := json.Marshal(server.Metadata{File: "p.gz", Version: "2.0.0", Size: int64(len(data)),
		SHA256: base64.StdEncoding.EncodeToString(s2[:]), SHA1: base64.StdEncoding.EncodeToString(s1[:])})
	os.WriteFile(filepath.Join(dir, "p.gz.json"), meta, 0o644)
	logFile := filepath.Join(t.TempDir(), "log.jsonl")

	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var stderr bytes.Buffer
	go func() {
		done <- run(ctx, []string{"--dir", dir, "--listen", "127.0.0.1:0", "--log", logFile, "--admin"}, &stderr, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	c := &omaha.Client{Server: "http://" + addr + "/v1/update/"}
	p := omaha.Params{Version: "1.0.0", Track: "stable", MachineID: "abc"}
	plan, err := c.Check(ctx, p)
	if err != nil || plan.NoUpdate || plan.Version != "2.0.0" {
		t.Fatalf("check: %+v %v", plan, err)
	}
	resp, err := http.Post("http://"+addr+"/admin/pause", "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("pause: %v %v", resp, err)
	}
	resp.Body.Close()
	if plan, err = c.Check(ctx, p); err != nil || !plan.NoUpdate {
		t.Fatalf("paused check: %+v %v", plan, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	f, err := os.Open(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var results []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r server.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		results = append(results, r.Result)
	}
	if strings.Join(results, ",") != "update,paused" {
		t.Errorf("logged results %v", results)
	}
}

func TestRunBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--rollout", "101"},
		{"--dir", filepath.Join(t.TempDir(), "missing")},
		{"--nope"},
	} {
		var stderr bytes.Buffer
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if err := run(ctx, append(args, "--listen", "127.0.0.1:0"), &stderr, nil); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
