// Command payload_generator builds, signs, shows, verifies and applies CrAU
// update payloads (see package payload).
//
//	payload_generator generate --new IMAGE [--old IMAGE [--source-version V]] --key KEY.pem|--unsigned [--version V]
//	                           [--compression xz|zstd|bzip2|none] [--xz-command xz] [--major 1|2] -o OUT
//	payload_generator show PAYLOAD
//	payload_generator verify PAYLOAD --key PUB.pem [--version V] [--target DEV]
//	payload_generator apply PAYLOAD|- --key PUB.pem|--insecure-skip-signature [--version V] --target FILE|DEV [--source FILE|DEV]
//	payload_generator keygen --private KEY.pem --public PUB.pem
//	payload_generator sign PAYLOAD --signature SIG... [--metadata-signature SIG...] [--key PUB.pem]
//
// generate also writes OUT.json, the metadata the Omaha dev server reads;
// both files are mode 0644 (payloads are public). --version is signed
// inside the payload; apply and verify --version require it. Without
// --key, generate refuses unless --unsigned and apply refuses unless
// --insecure-skip-signature. A block-device target is opened O_EXCL, so a
// mounted or otherwise busy device is refused.
// With --old it writes a delta (SOURCE_COPY, SOURCE_BSDIFF, BROTLI_BSDIFF,
// REPLACE_XZ, ZERO); apply then needs --source, the old partition.
// generate --out-hash (with --out-metadata-hash for --major 2 and
// --signature-size) reserves zeroed signatures and writes the digests to
// sign elsewhere; sign puts the signatures in (two-step signing, README
// "Safety"). On a terminal, generate shows its progress on stderr.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/abupdate/update_engine/internal/version"
)

func main() {
	if version.Requested(os.Args[1:]) {
		version.Print(os.Stdout, "payload_generator")
		return
	}
	if len(os.Args) > 1 && (os.Args[1] == "apply" || os.Args[1] == "verify") {
		// A spare P: the O_DIRECT writer holds its P through each ~1 ms
		// pwrite until sysmon takes it back, idling a core meanwhile. One
		// more P than cores made 1 GiB REPLACE and zstd applies ~10% faster.
		if os.Getenv("GOMAXPROCS") == "" {
			runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
