package rebootmgr

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abupdate/update_engine/pkg/update1"
)

func TestCoordinatorFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "coordinator.conf")
	c, err := OpenCoordinator(path, "update_engine_reboot_manager", "etcd-lock")
	if err != nil {
		t.Fatal(err)
	}
	read := func() string { b, _ := os.ReadFile(path); return string(b) }
	if got := read(); got != "NAME=update_engine_reboot_manager\nSTRATEGY=etcd-lock\nSTATE=starting\n" {
		t.Fatalf("file = %q", got)
	}
	if _, err := OpenCoordinator(path, "other", "reboot"); !errors.Is(err, ErrCoordinatorBusy) {
		t.Fatalf("second coordinator: %v, want ErrCoordinatorBusy", err)
	}
	if err := c.SetState(StateRebootPlanned); err != nil {
		t.Fatal(err)
	}
	if err := c.SetState(StateRunning); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "NAME=update_engine_reboot_manager\nSTRATEGY=etcd-lock\nSTATE=running\n" {
		t.Fatalf("file = %q (shorter state must truncate)", got)
	}
	c.Close()
	c2, err := OpenCoordinator(path, "other", "reboot")
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	c2.Close()
}

func TestIntentRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "state.json")
	in, err := LoadIntent(path)
	if err != nil || in.Phase != PhaseNone {
		t.Fatalf("missing file: %+v, %v", in, err)
	}
	want := Intent{Phase: PhaseRebooting, Version: "1.2.3", Since: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), BootID: "b"}
	if err := SaveIntent(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadIntent(path)
	if err != nil || got != want {
		t.Fatalf("got %+v, %v; want %+v", got, err, want)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temp files left: %v", entries)
	}
	os.WriteFile(path, []byte("{"), 0o644)
	if _, err := LoadIntent(path); err == nil {
		t.Fatal("corrupt state file accepted")
	}
}

// utmpRecord builds one glibc utmp record.
func utmpRecord(typ int16, line, user string) []byte {
	r := make([]byte, utmpRecordSize)
	binary.LittleEndian.PutUint16(r, uint16(typ))
	copy(r[utmpLineOff:], line)
	copy(r[utmpUserOff:], user)
	return r
}

func TestWallWritesUserTTYs(t *testing.T) {
	dir := t.TempDir()
	dev := filepath.Join(dir, "dev")
	os.MkdirAll(filepath.Join(dev, "pts"), 0o755)
	for _, n := range []string{"pts/0", "tty1", "pts/9"} {
		os.WriteFile(filepath.Join(dev, n), nil, 0o644)
	}
	var utmp []byte
	utmp = append(utmp, utmpRecord(2, "~", "reboot")...) // BOOT_TIME
	utmp = append(utmp, utmpRecord(utmpUserProcess, "pts/0", "core")...)
	utmp = append(utmp, utmpRecord(utmpUserProcess, "tty1", "root")...)
	utmp = append(utmp, utmpRecord(8, "pts/9", "gone")...) // DEAD_PROCESS
	utmp = append(utmp, utmpRecord(utmpUserProcess, "pts/404", "ghost")...)
	utmpPath := filepath.Join(dir, "utmp")
	os.WriteFile(utmpPath, utmp, 0o644)

	n, err := Wall{Utmp: utmpPath, DevDir: dev}.Warn(RebootMessage(5 * time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("Warn = %d, %v; want 2 ttys", n, err)
	}
	for name, want := range map[string]bool{"pts/0": true, "tty1": true, "pts/9": false} {
		b, _ := os.ReadFile(filepath.Join(dev, name))
		if got := strings.Contains(string(b), "System reboot in 5 minutes!"); got != want {
			t.Errorf("%s warned = %v, want %v (%q)", name, got, want, b)
		}
	}
	if n, err := (Wall{Utmp: filepath.Join(dir, "none"), DevDir: dev}).Warn("x"); n != 0 || err != nil {
		t.Errorf("missing utmp: %d, %v", n, err)
	}
}

func TestManagerWarnsUsersThenWaits(t *testing.T) {
	dir := t.TempDir()
	dev := filepath.Join(dir, "dev")
	os.MkdirAll(filepath.Join(dev, "pts"), 0o755)
	tty := filepath.Join(dev, "pts", "3")
	os.WriteFile(tty, nil, 0o644)
	utmpPath := filepath.Join(dir, "utmp")
	os.WriteFile(utmpPath, utmpRecord(utmpUserProcess, "pts/3", "core"), 0o644)

	clock := newFastClock(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC), 1000)
	type event struct {
		at     time.Time
		warned bool
	}
	rebooted := make(chan event, 1)
	m := &Manager{
		Strategy: StrategyReboot, Status: newMemSource(update1.StatusUpdatedNeedReboot), Clock: clock,
		Warner: Wall{Utmp: utmpPath, DevDir: dev}, WarnDelay: 5 * time.Minute,
		Rebooter: funcRebooter(func(ctx context.Context) error {
			rebooted <- event{clock.Now(), fileHas(tty, "System reboot in 5 minutes!")}
			return nil
		}),
	}
	start := clock.Now()
	startManager(t, m)
	select {
	case ev := <-rebooted:
		if !ev.warned {
			t.Fatal("rebooted without warning the logged-in user")
		}
		if waited := ev.at.Sub(start); waited < 5*time.Minute {
			t.Fatalf("rebooted %v after the warning, want >= 5m", waited)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no reboot")
	}
}
