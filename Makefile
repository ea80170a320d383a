# update_engine: A/B partition updates for immutable container-host OSes.
# `make demo` and `make test` are the two commands that matter; see README.md.

GO       ?= go
BIN      ?= bin
FUZZTIME ?= 30s

# The version every binary's --version prints: `git describe` ("devel" when
# no tag is reachable), linked into internal/version.
VERSION  ?= $(shell git describe --tags --dirty 2>/dev/null || echo devel)
LDFLAGS  := -X github.com/abupdate/update_engine/internal/version.Version=$(VERSION) $(EXTRA_LDFLAGS)

# make install DESTDIR= PREFIX=/usr (the units' ExecStart follow SBINDIR).
PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc
SBINDIR    ?= $(PREFIX)/sbin
BINDIR     ?= $(PREFIX)/bin
UNITDIR    ?= $(PREFIX)/lib/systemd/system
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
DBUSDIR    ?= $(PREFIX)/share/dbus-1/system.d
DOCDIR     ?= $(PREFIX)/share/doc/update-engine
MANDIR     ?= $(PREFIX)/share/man
COMPLETIONDIR ?= $(PREFIX)/share/bash-completion/completions
# make deb: one package per architecture (GOARCH), into DEBDIR.
DEB_ARCHES ?= amd64 arm64
DEBDIR     ?= $(BIN)/deb

.PHONY: all build man install deb test bench demo fuzz lint testdata generate deps clean vmtest

all: build

# GOARCH in the environment cross-builds (make deb does for arm64).
build:
	$(GO) build -trimpath $(GOBUILDFLAGS) -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

# Man pages: docs/man/NAME.SECTION.md rendered to roff in $(BIN)/man
# (mangen runs on the build host whatever GOARCH says).
man:
	env -u GOARCH -u GOOS $(GO) run -ldflags "$(LDFLAGS)" ./internal/packaging/cmd/mangen -o $(BIN)/man docs/man/*.md

install: build man
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(TMPFILESDIR) \
	  $(DESTDIR)$(DBUSDIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(COMPLETIONDIR) $(DESTDIR)$(SYSCONFDIR)/default \
	  $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 0755 $(BIN)/update_engine $(BIN)/update_engine_client $(BIN)/update_engine_reboot_manager $(DESTDIR)$(SBINDIR)/
	install -m 0755 $(BIN)/payload_generator $(BIN)/omaha_devserver $(DESTDIR)$(BINDIR)/
	for u in dist/*.service; do \
	  sed 's#/usr/sbin/#$(SBINDIR)/#g' $$u > $(DESTDIR)$(UNITDIR)/$${u#dist/} && chmod 0644 $(DESTDIR)$(UNITDIR)/$${u#dist/} || exit 1; \
	done
	install -m 0644 dist/com.coreos.update1.conf $(DESTDIR)$(DBUSDIR)/
	install -m 0644 dist/update-engine.tmpfiles.conf $(DESTDIR)$(TMPFILESDIR)/update-engine.conf
	install -m 0644 dist/update.conf.example $(DESTDIR)$(DOCDIR)/
	install -m 0644 dist/update-engine.default $(DESTDIR)$(SYSCONFDIR)/default/update-engine
	install -m 0644 dist/bash-completion/update_engine_client dist/bash-completion/payload_generator $(DESTDIR)$(COMPLETIONDIR)/
	for m in $(BIN)/man/*.[158]; do \
	  gzip -9n -c $$m > $(DESTDIR)$(MANDIR)/man$${m##*.}/$${m##*/}.gz && chmod 0644 $(DESTDIR)$(MANDIR)/man$${m##*.}/$${m##*/}.gz || exit 1; \
	done

# update-engine_<version>_<arch>.deb for each of DEB_ARCHES, each from a
# `make install DESTDIR=… PREFIX=/usr` tree (scripts/mkdeb.sh; lintian: see README).
deb:
	@for a in $(DEB_ARCHES); do VERSION=$(VERSION) scripts/mkdeb.sh $$a $(DEBDIR) || exit 1; done

# Installs the Debian packages the tests use when run as root (see scripts/deps.sh).
deps:
	@scripts/deps.sh

# Every test, including each fuzz target's seed corpus. Root-only tests skip
# loudly when not root.
# The packages where goroutines share state also run under the race detector
# (pkg/gpt and payload_generator start none; their tests only get slower).
RACE_PKGS = ./pkg/update1/... ./pkg/clock/... ./internal/engine/... ./internal/dbusapi/... ./internal/prefs/... ./internal/slot/... \
            ./internal/daemon/... ./internal/antirollback/... ./cmd/update_engine_client/... \
            ./pkg/rebootmgr/... ./pkg/omaha/... ./pkg/cgroup/...
# Skipped under -race: tests that kill a separately built daemon binary, the
# fleet page rendered by Chromium (an outside process), the etcd cluster
# fleet test (real etcd processes; run once without -race), and
# the daemon's update-logic tests whose threads are the same as
# TestFullUpdate's (they run without -race above).
RACE_SKIP = TestCrashAtEveryWrite|TestKillResume|TestDeltaFailsThenFull|TestRebootMarkGoodThenDelta|TestFlatcarKernel|TestLyingServerVersion|TestEventsKeepAppAttributes|TestTPMFloorAndPCR|TestFleetPageChromium|TestEtcdClusterFleetFaults
# The payload pipeline's concurrent tests (the generators' are slow under -race).
RACE_PAYLOAD = TestResume|TestCancel|TestWorkerInit|TestExpectedSizeAndHash|TestDeltaResume|TestSignatureRules|TestCorruptionMatrix|TestFile|TestZstdApplyOrder|TestWritePieces|TestProgressiveWrite

test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 12m ./...
	$(GO) test -race -count=1 -timeout 10m -skip '$(RACE_SKIP)' $(RACE_PKGS)
	$(GO) test -race -count=1 -timeout 8m -run '$(RACE_PAYLOAD)' ./pkg/payload/

# Benchmarks, each figure also printed as `bench <name> <value> <unit>`.
bench: deps
	@scripts/bench.sh

demo: deps build
	@scripts/demo.sh

fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Small fixtures (disk images, keys) are generated, never committed.
testdata:
	$(GO) run ./internal/testenv/cmd/mktestdata -dir testdata/generated

# Regenerates the committed protobuf Go code from pkg/payload/metadata/*.proto.
generate:
	@command -v protoc >/dev/null || { echo "protoc missing: apt-get install -y protobuf-compiler"; exit 1; }
	GOBIN=$(CURDIR)/$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	PATH=$(CURDIR)/$(BIN):$$PATH protoc --go_out=. --go_opt=paths=source_relative pkg/payload/metadata/*.proto

clean:
	rm -rf $(BIN) testdata/generated

# The whole-host test: a systemd host in a QEMU VM that updates, reboots,
# falls back and survives power cuts (internal/vmtest; needs root and the
# packages .ci/run installs). Images are cached in /var/cache/update-engine-vmtest.
# Scenarios 1→2→3 run in turn (each starts from the disk the one before
# left); the others then run two VMs at a time (one TCG vCPU each).
vmtest:
	UE_VMTEST=1 $(GO) test -count=1 -timeout 40m -parallel 2 -v ./internal/vmtest/
