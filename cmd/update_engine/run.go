package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/abupdate/update_engine/internal/daemon"
	"github.com/abupdate/update_engine/internal/version"
)

const usageHead = `Usage: update_engine [flags]

The update daemon. It owns com.coreos.update1 (and org.chromium.UpdateEngine)
on D-Bus, checks the Omaha server for updates, streams a payload onto the
passive A/B slot of --disk, verifies it, flips the GPT so the new slot boots
next (once), and reports UPDATE_STATUS_UPDATED_NEED_REBOOT. After a boot it
marks the booted slot good once the health gate passes.

Configuration comes from update.conf and the release file (see
/etc/flatcar/update.conf, /usr/share/flatcar/release); the flags below beat
the files. Flags may be written -flag or --flag.

Examples:
  update_engine --disk /dev/sda
  update_engine --disk disk.img --booted A --bus unix:path=/tmp/bus \
      --server http://127.0.0.1:8080/v1/update/ --release-version 1.0.0 \
      --prefs-dir /tmp/ue/prefs --run-dir /tmp/ue/run --reboot-required-file -

Flags:
`

// Main runs the daemon with args and returns the exit code: 0 after a
// clean shutdown (ctx cancelled) or after --version, 1 on a start-up or runtime error, 2 on
// bad flags.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, stub, code := parse(args, stdout, stderr)
	if code >= 0 {
		return code
	}
	run := daemon.Run
	if stub {
		run = daemon.RunStub
	}
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(stderr, "update_engine: %v\n", err)
		return 1
	}
	return 0
}

// parse reads the command line into the daemon's options. code is the exit
// code when the program is done (--help, --version, bad flags), else -1.
func parse(args []string, stdout, stderr io.Writer) (o daemon.Options, stub bool, code int) {
	fs := flag.NewFlagSet("update_engine", flag.ContinueOnError)
	fs.SetOutput(stderr)
	optionFlags(fs, &o, &stub)
	over := overrideFlags(fs)
	verbose := fs.Bool("v", false, "debug logging")
	var vf versionFlag
	fs.Var(&vf, "version", "print this program's version and exit (--version V: deprecated spelling of --release-version V)")
	fs.Usage = func() {
		fmt.Fprint(stderr, usageHead)
		fs.PrintDefaults()
	}
	if err := fs.Parse(joinVersionValue(args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, false, 0
		}
		return o, false, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "update_engine: unexpected argument %q\n", fs.Arg(0))
		return o, false, 2
	}
	if vf.print {
		version.Print(stdout, "update_engine")
		return o, false, 0
	}
	o.Overrides = map[string]string{}
	for k, v := range over {
		if *v != "" {
			o.Overrides[k] = *v
		}
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	o.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if vf.release != "" {
		o.Log.Warn("--version VERSION is deprecated and will be removed in the next release: use --release-version VERSION", "version", vf.release)
		if o.Overrides["FLATCAR_RELEASE_VERSION"] == "" {
			o.Overrides["FLATCAR_RELEASE_VERSION"] = vf.release
		}
	}
	return o, stub, -1
}

// optionFlags defines the flags that set daemon.Options fields.
func optionFlags(fs *flag.FlagSet, o *daemon.Options, stub *bool) {
	fs.Bool("foreground", true, "accepted for Flatcar compatibility (always in the foreground)")
	fs.Bool("logtostderr", true, "accepted for Flatcar compatibility (logs always go to stderr)")
	fs.StringVar(&o.Bus, "bus", "", "D-Bus address (default $DBUS_SYSTEM_BUS_ADDRESS, else the system bus)")
	fs.StringVar(&o.Disk, "disk", "", "disk device or image file holding the A/B slots, e.g. /dev/sda (default: the disk of the partition /proc/cmdline boots)")
	fs.StringVar(&o.Booted, "booted", "", "booted slot: A, B, a label, PARTUUID=<guid> or a /dev path (default: from /proc/cmdline)")
	fs.StringVar(&o.BootID, "boot-id", "", "this boot's id (default: /proc/sys/kernel/random/boot_id); tests and demos that simulate a reboot give each simulated boot its own")
	fs.StringVar(&o.ConfigRoot, "config-root", "", "prefix for update.conf, release, machine-id paths (default /)")
	fs.StringVar(&o.PrefsDir, "prefs-dir", "", "state directory (default /var/lib/update_engine/prefs or UPDATE_ENGINE_PREFS_DIR)")
	fs.StringVar(&o.RunDir, "run-dir", "", "directory of the update-completed marker that keeps UPDATED_NEED_REBOOT across restarts (default /var/run)")
	fs.StringVar(&o.RebootRequiredFile, "reboot-required-file", "", "file touched after an update (default /run/reboot-required; - for none)")
	fs.StringVar(&o.Postinst, "postinst", "", "post-install program run with the passive slot's device after verification; default: the new image's own /postinst (mounted read-only, as Flatcar), - for none")
	fs.DurationVar(&o.PostinstTimeout, "postinst-timeout", 10*time.Minute, "post-install time limit")
	fs.StringVar(&o.BootDir, "boot-dir", "", "where the ESP is mounted: a Flatcar payload's kernel goes to flatcar/vmlinuz-a|b there (default /boot)")
	fs.StringVar(&o.PCRPolicyDir, "pcr-policy-dir", "", "where a Flatcar payload's PCR policy goes, as pcrs-a|b.zip (default: the parent of the prefs directory, /var/lib/update_engine)")
	fs.StringVar(&o.TPM, "tpm", "", "TPM for the anti-rollback version floor: a device (/dev/tpmrm0) or host:port of swtpm (default off)")
	fs.BoolVar(&o.RequireTPM, "require-tpm", false, "fail when the --tpm cannot be used")
	fs.IntVar(&o.MeasurePCR, "measure-pcr", 0, "with --tpm: extend this PCR (1-23) with the new image's SHA-256 at flip and keep the record in prefs/pcr-record (default off)")
	fs.BoolVar(&o.AutoCheck, "auto-check", true, "check for updates on a schedule (first after --initial-delay, then every --check-interval, ±5 min fuzz); off: only on D-Bus AttemptUpdate")
	fs.DurationVar(&o.InitialDelay, "initial-delay", 7*time.Minute, "first scheduled check after start")
	fs.DurationVar(&o.CheckInterval, "check-interval", 45*time.Minute, "time between scheduled checks")
	fs.Int64Var(&o.CheckpointBytes, "checkpoint-bytes", 4<<20, "payload bytes between resumable checkpoints (each syncs the slot and writes prefs)")
	fs.BoolVar(&o.NoHealthGate, "no-health-gate", false, "never mark the booted slot good (by default: after UPDATE_ENGINE_HEALTH_DELAY and the health units/command)")
	fs.BoolVar(&o.InsecureAllowUnsignedPayloads, "insecure-allow-unsigned-payloads", false, "INSECURE, development only: when the --pubkey file is missing, install payloads without checking their signature (default: refuse every payload)")
	fs.BoolVar(&o.AllowOmahaURL, "allow-omaha-url", false, "honour the omaha_url of ChromeOS AttemptUpdate(s,s) (update_engine_client -omaha_url); refused otherwise")
	fs.BoolVar(stub, "stub", false, "run as update-engine-stub for images never updated in place ("+daemon.NoUpdateFile+"): answer D-Bus as IDLE, never check or touch a disk")
}

// overrideFlags defines the flags that override update.conf and release
// file keys, by key.
func overrideFlags(fs *flag.FlagSet) map[string]*string {
	over := map[string]*string{}
	for _, f := range []struct{ flag, key, usage string }{
		{"server", "SERVER", "Omaha URL (update.conf SERVER)"},
		{"group", "GROUP", "channel / Omaha track (update.conf GROUP)"},
		{"release-version", "FLATCAR_RELEASE_VERSION", "running OS version (release file FLATCAR_RELEASE_VERSION)"},
		{"board", "FLATCAR_RELEASE_BOARD", "board (release file)"},
		{"appid", "FLATCAR_RELEASE_APPID", "Omaha app id (release file)"},
		{"io-write-bps", "UPDATE_ENGINE_IO_WRITE_BPS", "write limit on the passive slot in bytes/s, K/M/G suffixes; needs root and a block device (default none); with --io-limit adaptive, the limit used when the host has no PSI"},
		{"io-limit", "UPDATE_ENGINE_IO_LIMIT", "adaptive (follow the other workloads' I/O pressure, PSI) or a fixed rate as --io-write-bps (default: --io-write-bps)"},
		{"io-limit-floor", "UPDATE_ENGINE_IO_LIMIT_FLOOR", "adaptive limit: lowest rate in bytes/s, K/M/G suffixes (default 8M)"},
		{"io-limit-ceiling", "UPDATE_ENGINE_IO_LIMIT_CEILING", "adaptive limit: highest rate and the start (default 1G)"},
		{"io-limit-target", "UPDATE_ENGINE_IO_LIMIT_TARGET", "adaptive limit: the other workloads' PSI io \"some\" percentage above which the limit is cut (default 10)"},
		{"metrics-listen", "UPDATE_ENGINE_METRICS_LISTEN", "Prometheus address, loopback only, e.g. 127.0.0.1:9571 (default off)"},
		{"metrics-socket", "UPDATE_ENGINE_METRICS_SOCKET", "Prometheus metrics on this Unix socket, e.g. /run/update_engine/metrics.promsock (default off)"},
		{"pubkey", "UPDATE_ENGINE_PUBKEY", "payload public key, PEM, read at every update (default /usr/share/update_engine/update-payload-key.pub.pem; absent = every payload refused)"},
		{"health-delay", "UPDATE_ENGINE_HEALTH_DELAY", "wait after start before marking the booted slot good (default 1m)"},
		{"health-command", "UPDATE_ENGINE_HEALTH_COMMAND", "command (sh -c) that must succeed before marking the slot good"},
	} {
		over[f.key] = fs.String(f.flag, "", f.usage)
	}
	return over
}

// versionFlag is --version. Alone it asks for the program's version; with a
// value (--version=V, or --version V, which joinVersionValue rewrites) it is
// the deprecated spelling of --release-version, kept for one release.
type versionFlag struct {
	print   bool
	release string
}

func (v *versionFlag) IsBoolFlag() bool { return true }
func (v *versionFlag) String() string   { return "" }

func (v *versionFlag) Set(s string) error {
	switch s {
	case "true":
		v.print = true
	case "false":
		v.print = false
	case "":
		return errors.New("empty version")
	default:
		v.release = s
	}
	return nil
}

// joinVersionValue rewrites "--version V" (V not a flag) as "--version=V",
// so the old spelling of --release-version parses although --version alone
// is a boolean. Arguments after "--" are left alone.
func joinVersionValue(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if (a == "-version" || a == "--version") && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			out = append(out, a+"="+args[i+1])
			i++
			continue
		}
		out = append(out, a)
	}
	return out
}
