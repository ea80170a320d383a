package omaha_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"time"

	"github.com/abupdate/update_engine/pkg/omaha"
)

// The engine's loop, reduced: check, report, download with failover and
// resume, verify. (The engine schedules checks itself and backs off when
// Backoff(err) says so.)
func Example() {
	ctx := context.TODO() // the engine passes its own ctx
	hc, err := omaha.NewHTTPClient(omaha.TransportOptions{ConnectTimeout: 30 * time.Second})
	if err != nil {
		return
	}
	c := &omaha.Client{Server: omaha.DefaultServer, HTTP: hc}
	p := omaha.Params{Version: "3815.2.0", Track: "stable", MachineID: "…", Board: "amd64-usr", Arch: "x86_64",
		PreviousVersion: omaha.InitialPreviousVersion}

	plan, err := c.Check(ctx, p)
	if err != nil || plan.NoUpdate {
		return
	}
	c.SendEvent(ctx, p, omaha.EventDownloadStarted)
	f := omaha.NewFailover(plan)
	var done int64
	h := sha256.New()
	for done < plan.Size {
		pl, idx, err := c.OpenPayloadFailover(ctx, f, done)
		if err != nil {
			c.SendEvent(ctx, p, omaha.ErrorEvent(9)) // DownloadTransferError, plus flag bits
			return
		}
		n, err := io.Copy(h, pl.Body) // the engine tees into the payload applier
		pl.Body.Close()
		done += n
		if err != nil {
			f.Fail(idx) // count it; the next round resumes at done with Range
		}
	}
	if base64.StdEncoding.EncodeToString(h.Sum(nil)) != plan.SHA256 {
		c.SendEvent(ctx, p, omaha.ErrorEvent(10)) // PayloadHashMismatchError
		return
	}
	c.SendEvent(ctx, p, omaha.EventDownloadFinished)
	fmt.Println("applied", plan.Version)
}
