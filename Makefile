# Targets people expect from a Vault plugin repository. `make test` is what CI runs.
PLUGIN_NAME := vault-plugin-secrets-apikey
BIN_DIR     := $(CURDIR)/bin
PLUGIN_BIN  := $(BIN_DIR)/$(PLUGIN_NAME)
GO          ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build vault dev test unit-test integration-test bench fmt lint clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(PLUGIN_BIN) ./cmd/$(PLUGIN_NAME)

# Prints the path of a Vault server binary, building and caching it on first use.
vault:
	@scripts/vault-bin.sh

dev: build
	scripts/dev.sh

test: unit-test integration-test

unit-test:
	$(GO) test -race -count=1 ./...

# Runs against a real Vault server and the freshly built plugin binary.
# The Vault binary is resolved first (and built on first use) so that a failure there stops
# here instead of starting the tests without a server.
integration-test: build
	@vault_bin="$$(scripts/vault-bin.sh)" && \
	echo "VAULT_BIN=$$vault_bin PLUGIN_BIN=$(PLUGIN_BIN)" && \
	VAULT_BIN="$$vault_bin" PLUGIN_BIN="$(PLUGIN_BIN)" \
		$(GO) test -tags integration -count=1 -timeout 30m -v ./integration/...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

fmt:
	gofmt -s -w $$(git ls-files '*.go')

lint:
	$(GO) vet ./...
	$(GO) vet -tags integration ./integration/...
	$(GO) run $(STATICCHECK) ./...

clean:
	rm -rf $(BIN_DIR)
