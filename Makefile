# Targets people expect from a Vault plugin repository. `make test` is what CI runs.
PLUGIN_NAME := vault-plugin-secrets-apikey
BIN_DIR     := $(CURDIR)/bin
PLUGIN_BIN  := $(BIN_DIR)/$(PLUGIN_NAME)
GO          ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build vault dev test unit-test integration-test bench fuzz fmt lint clean release

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(PLUGIN_BIN) ./cmd/$(PLUGIN_NAME)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN_DIR)/apikey-gateway ./cmd/apikey-gateway
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN_DIR)/apikey-dashboard ./cmd/apikey-dashboard

# Prints the path of a Vault server binary, building and caching it on first use.
vault:
	@scripts/vault-bin.sh

dev: build
	scripts/dev.sh

test: unit-test integration-test

unit-test:
	$(GO) test -race -count=1 ./...

GATEWAY_BIN := $(BIN_DIR)/apikey-gateway
DASHBOARD_BIN := $(BIN_DIR)/apikey-dashboard

# The plugin with a clock tests can move (build tag testclock, testclock_on.go), for the
# integration tests that script a day of traffic. Never released.
TESTCLOCK_PLUGIN_BIN := $(BIN_DIR)/$(PLUGIN_NAME)-testclock

# Runs against a real Vault server and the freshly built plugin and gateway binaries.
# The Vault binary is resolved first (and built on first use) so that a failure there stops
# here instead of starting the tests without a server.
integration-test: build
	CGO_ENABLED=0 $(GO) build -trimpath -tags testclock -o $(TESTCLOCK_PLUGIN_BIN) ./cmd/$(PLUGIN_NAME)
	@vault_bin="$$(scripts/vault-bin.sh)" && \
	echo "VAULT_BIN=$$vault_bin PLUGIN_BIN=$(PLUGIN_BIN) GATEWAY_BIN=$(GATEWAY_BIN) DASHBOARD_BIN=$(DASHBOARD_BIN)" && \
	VAULT_BIN="$$vault_bin" PLUGIN_BIN="$(PLUGIN_BIN)" GATEWAY_BIN="$(GATEWAY_BIN)" \
		TESTCLOCK_PLUGIN_BIN="$(TESTCLOCK_PLUGIN_BIN)" DASHBOARD_BIN="$(DASHBOARD_BIN)" \
		$(GO) test -tags integration -count=1 -timeout 30m -v ./integration/...

# The Go microbenchmarks, the anomaly detector's and the fleet benchmark (bench-fleet),
# then the load harness (bench/load): a Vault dev server with the
# plugin and a no-op baseline plugin, loaded over loopback HTTP; prints one table of
# req/s, p50, p99 and the ratios with their targets (misses are reported, never a
# failure). About 3-4 minutes on 2 cores. BENCH_FLAGS passes flags to the harness, e.g.
# BENCH_FLAGS="-d 10s -md bench.md" (go run ./bench/load -h lists them).
bench: bench-go bench-anomaly build bench-fleet
	@start=$$(date +%s); \
	vault_bin="$$(scripts/vault-bin.sh)" && \
	$(GO) build -o $(BIN_DIR)/noopplugin ./bench/noopplugin && \
	$(GO) build -o $(BIN_DIR)/apikey-load ./bench/load && \
	$(BIN_DIR)/apikey-load -vault "$$vault_bin" -plugin $(PLUGIN_BIN) -gateway $(GATEWAY_BIN) \
		-noop-plugin $(BIN_DIR)/noopplugin $(BENCH_FLAGS); \
	rc=$$?; echo "bench: total $$(( $$(date +%s) - start ))s"; exit $$rc

# Gateways with -fleet (quota grants, the change feed, usage reports) against a real
# Vault dev server with the plugin (bench/fleet/README.md): metered and unmetered keys
# ÷ auth off, Vault calls per 10k requests, revocation to refusal at every replica, a
# max_uses key and a rate-limited key across 4 gateway processes, a burst on a
# rate-limited key whose limit does not bind. Misses are reported,
# never a failure. About 2 minutes on 2 cores. BENCH_FLEET_FLAGS passes flags, e.g.
# BENCH_FLEET_FLAGS="-md fleet.md" (go run ./bench/fleet -h lists them).
.PHONY: bench-fleet
bench-fleet: build
	@start=$$(date +%s); \
	vault_bin="$$(scripts/vault-bin.sh)" && \
	$(GO) build -o $(BIN_DIR)/apikey-bench-fleet ./bench/fleet && \
	$(BIN_DIR)/apikey-bench-fleet -vault "$$vault_bin" -plugin $(PLUGIN_BIN) -gateway $(GATEWAY_BIN) \
		-policies policies $(BENCH_FLEET_FLAGS); \
	rc=$$?; echo "bench-fleet: total $$(( $$(date +%s) - start ))s"; exit $$rc

# The anomaly detector on a simulated fleet (bench/anomaly/README.md): precision, recall
# and time to detect per kind; misses are reported, never a failure. About 20 s.
.PHONY: bench-anomaly
bench-anomaly:
	$(GO) run ./bench/anomaly

# The Go microbenchmarks only.
.PHONY: bench-go
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Each fuzz target for FUZZTIME (the corpus alone runs in every `go test`).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/keyformat/
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzRoleWrite$$' -fuzztime $(FUZZTIME) .

fmt:
	gofmt -s -w $$(git ls-files '*.go')

lint:
	$(GO) vet ./...
	$(GO) vet -tags integration ./integration/...
	$(GO) run $(STATICCHECK) ./...

clean:
	rm -rf $(BIN_DIR) dist

# Release artifacts for VERSION (vX.Y.Z or vX.Y.Z-pre) in dist/: every command under cmd/
# for linux and darwin on amd64 and arm64, reproducible and stamped with VERSION, a
# CycloneDX SBOM per binary and SHA256SUMS (scripts/release.sh says how). Not part of
# `make test`: it cross-compiles eight binaries.
release:
	@GO="$(GO)" scripts/release.sh "$(VERSION)"

# Builds bin/apikey-gateway and runs it against the Vault in VAULT_ADDR / VAULT_TOKEN (for
# example the dev server `make dev` prints). The service to protect comes from
# APIKEY_GATEWAY_UPSTREAM (or GATEWAY_FLAGS="-upstream http://127.0.0.1:9000 ..."); every
# other flag has an APIKEY_GATEWAY_* variable too (docs/gateway.md).
.PHONY: gateway-dev
gateway-dev:
	@test -n "$$VAULT_ADDR" || { echo "gateway-dev: VAULT_ADDR is not set: run 'make dev' and export what it prints" >&2; exit 1; }
	@test -n "$$VAULT_TOKEN" || { echo "gateway-dev: VAULT_TOKEN is not set: run 'make dev' and export what it prints" >&2; exit 1; }
	CGO_ENABLED=0 $(GO) build -trimpath -o $(GATEWAY_BIN) ./cmd/apikey-gateway
	$(GATEWAY_BIN) $(GATEWAY_FLAGS)

# The crash, HA and concurrency scenarios of the integration suite for longer, with faults
# injected again and again (plugin kills, leader kills on a 3-node raft cluster), for
# SOAK_DURATION in total (default 5m; it stops by itself). Prints a summary: operations
# done, faults injected, invariant violations (the target fails unless there are none).
SOAK_DURATION ?= 5m
SOAK_TIMEOUT  ?= 3h

.PHONY: soak
soak: build
	CGO_ENABLED=0 $(GO) build -trimpath -tags testclock -o $(TESTCLOCK_PLUGIN_BIN) ./cmd/$(PLUGIN_NAME)
	@vault_bin="$$(scripts/vault-bin.sh)" && \
	echo "VAULT_BIN=$$vault_bin PLUGIN_BIN=$(PLUGIN_BIN) GATEWAY_BIN=$(GATEWAY_BIN) SOAK_DURATION=$(SOAK_DURATION)" && \
	VAULT_BIN="$$vault_bin" PLUGIN_BIN="$(PLUGIN_BIN)" GATEWAY_BIN="$(GATEWAY_BIN)" APIKEY_SOAK=1 SOAK_DURATION="$(SOAK_DURATION)" \
		TESTCLOCK_PLUGIN_BIN="$(TESTCLOCK_PLUGIN_BIN)" DASHBOARD_BIN="$(DASHBOARD_BIN)" \
		$(GO) test -tags integration -count=1 -timeout $(SOAK_TIMEOUT) -v -run '^TestSoak$$' ./integration/...
