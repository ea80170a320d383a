# update_engine: A/B partition updates for immutable container-host OSes.
# `make demo` and `make test` are the two commands that matter; see README.md.

GO       ?= go
BIN      ?= bin
FUZZTIME ?= 30s

.PHONY: all build test bench demo fuzz lint testdata generate deps clean vmtest

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# Installs the Debian packages the tests use when run as root (see scripts/deps.sh).
deps:
	@scripts/deps.sh

# Every test, including each fuzz target's seed corpus. Root-only tests skip
# loudly when not root.
# The packages where goroutines share state also run under the race detector
# (pkg/gpt and payload_generator start none; their tests only get slower).
RACE_PKGS = ./internal/engine/... ./internal/dbusapi/... ./internal/prefs/... ./internal/slot/... \
            ./internal/daemon/... ./internal/antirollback/... ./cmd/update_engine_client/... \
            ./pkg/rebootmgr/... ./pkg/omaha/... ./pkg/cgroup/...
# Skipped under -race: tests that kill a separately built daemon binary, the
# fleet page rendered by Chromium (an outside process), the etcd cluster
# fleet test (real etcd processes; run once without -race), and
# the daemon's update-logic tests whose threads are the same as
# TestFullUpdate's (they run without -race above).
RACE_SKIP = TestCrashAtEveryWrite|TestKillResume|TestDeltaFailsThenFull|TestRebootMarkGoodThenDelta|TestFlatcarKernel|TestLyingServerVersion|TestEventsKeepAppAttributes|TestTPMFloorAndPCR|TestFleetPageChromium|TestEtcdClusterFleetFaults
# The payload pipeline's concurrent tests (the generators' are slow under -race).
RACE_PAYLOAD = TestResume|TestCancel|TestWorkerInit|TestExpectedSizeAndHash|TestDeltaResume|TestSignatureRules|TestCorruptionMatrix|TestFile

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
vmtest:
	UE_VMTEST=1 $(GO) test -count=1 -timeout 40m -v ./internal/vmtest/
