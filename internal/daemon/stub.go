package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/abupdate/update_engine/internal/config"
	"github.com/abupdate/update_engine/internal/dbusapi"
	"github.com/abupdate/update_engine/pkg/update1"
)

// NoUpdateFile marks an image that is never updated in place (Flatcar:
// PXE and other root-less boots). There Flatcar starts
// update-engine-stub.service instead of update-engine.service
// (ConditionPathExists=/usr/.noupdate and its negation).
const NoUpdateFile = "/usr/.noupdate"

// errNoUpdates is what the stub answers to requests that would change
// something.
var errNoUpdates = errors.New("daemon: this image is not updated in place (" + NoUpdateFile + "); update_engine runs as a stub")

// stubEngine answers D-Bus for an image that is never updated: always
// IDLE, nothing to check, nothing to reset.
type stubEngine struct {
	version string
	log     *slog.Logger
}

func (s stubEngine) Status() update1.Status {
	return update1.Status{CurrentOperation: update1.StatusIdle, NewVersion: "0.0.0"}
}

func (s stubEngine) Detail() update1.Detail {
	return update1.Detail{Status: s.Status(), CurrentVersion: s.version}
}

// AttemptUpdate succeeds and does nothing, as Flatcar's AttemptUpdate
// always succeeds; the log says why.
func (s stubEngine) AttemptUpdate(context.Context, dbusapi.UpdateRequest) error {
	s.log.Info("AttemptUpdate ignored: " + errNoUpdates.Error())
	return nil
}

// ResetStatus from IDLE is a no-op success (Flatcar).
func (s stubEngine) ResetStatus(context.Context) error { return nil }

func (s stubEngine) AttemptRollback(context.Context, bool) error { return errNoUpdates }
func (s stubEngine) SetChannel(context.Context, string) error    { return errNoUpdates }

// RunStub is update_engine on an image that is never updated
// (/usr/.noupdate): it owns the D-Bus names and answers GetStatus with
// UPDATE_STATUS_IDLE, so that update_engine_client, locksmithd and this
// project's reboot manager see a quiet update engine, and it never checks,
// downloads or touches a disk. It needs no disk and no slots; the
// configuration is read only for the running version. It returns when ctx
// ends, or with ErrBusLost.
func RunStub(ctx context.Context, o Options) error {
	log := o.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	version := ""
	if cfg, err := config.Load(config.Options{Root: o.ConfigRoot, Overrides: o.Overrides}); err == nil {
		version = cfg.ReleaseVersion
	} else {
		log.Warn("configuration not read", "err", err)
	}
	conn, bus, err := connectBus(ctx, o.Bus)
	if err != nil {
		return err
	}
	defer conn.Close()
	eng := stubEngine{version: version, log: log}
	srv, err := dbusapi.Export(ctx, conn, eng, dbusapi.Options{})
	if err != nil {
		return err
	}
	defer srv.Close()
	_ = srv.Emit(eng.Status()) // Flatcar signals once at startup
	log.Info("update_engine stub ready: this image is not updated in place", "bus", bus, "version", version)
	select {
	case <-ctx.Done():
		return nil
	case <-conn.Context().Done():
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("%w (%s)", ErrBusLost, bus)
	}
}
