#!/usr/bin/env bash
# Prints the path of a Vault server binary (stdout: the path and nothing else).
#
#   1. $VAULT_BIN, if set;
#   2. `vault` on PATH, if its version is >= 1.15;
#   3. the cached build "${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-secrets-apikey/vault-<v>/vault",
#      built from scripts/vaultserver on first use (about 15 minutes on 2 cores; progress
#      goes to stderr). A lock makes concurrent callers wait for one build.
#
# Vault is BUSL-1.1: it is built for development and tests only, never shipped.
set -euo pipefail

VAULT_VERSION=1.21.0 # keep in step with scripts/vaultserver/go.mod
MIN_MAJOR=1
MIN_MINOR=15

log() { printf 'vault-bin: %s\n' "$*" >&2; }

# 1. explicit override
if [[ -n "${VAULT_BIN:-}" ]]; then
	if [[ ! -x "$VAULT_BIN" ]]; then
		log "VAULT_BIN=$VAULT_BIN is not an executable file"
		exit 1
	fi
	printf '%s\n' "$VAULT_BIN"
	exit 0
fi

# 2. a recent enough vault on PATH
if path_vault="$(command -v vault 2>/dev/null)" && [[ -n "$path_vault" ]]; then
	# "Vault v1.21.0 (...), built ..."
	ver="$("$path_vault" version 2>/dev/null | sed -nE 's/^Vault v([0-9]+)\.([0-9]+)\..*/\1 \2/p' | head -n1 || true)"
	if [[ -n "$ver" ]]; then
		read -r major minor <<<"$ver"
		if ((major > MIN_MAJOR || (major == MIN_MAJOR && minor >= MIN_MINOR))); then
			printf '%s\n' "$path_vault"
			exit 0
		fi
		log "ignoring $path_vault (version $major.$minor < $MIN_MAJOR.$MIN_MINOR)"
	fi
fi

# 3. cached build
cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-secrets-apikey/vault-${VAULT_VERSION}"
bin="$cache_dir/vault"
if [[ -x "$bin" ]]; then
	printf '%s\n' "$bin"
	exit 0
fi

src_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/vaultserver" && pwd)"
mkdir -p "$cache_dir"

# One builder at a time: the others wait on the lock and then find the binary.
exec 9>"$cache_dir/.lock"
if ! flock -n 9; then
	log "another process is building Vault $VAULT_VERSION; waiting for it"
	waited=0
	until flock -w 30 9; do
		waited=$((waited + 30))
		log "still waiting for the other Vault build (${waited}s)"
	done
fi
if [[ -x "$bin" ]]; then
	printf '%s\n' "$bin"
	exit 0
fi

if ! command -v go >/dev/null 2>&1; then
	log "no Vault >= $MIN_MAJOR.$MIN_MINOR on PATH and no 'go' to build one; set VAULT_BIN"
	exit 1
fi

tmp="$(mktemp "$cache_dir/vault.build.XXXXXX")"
build_log="$(mktemp "${TMPDIR:-/tmp}/vault-build.XXXXXX.log")"
build_pid=""
cleanup() {
	if [[ -n "$build_pid" ]] && kill -0 "$build_pid" 2>/dev/null; then
		kill "$build_pid" 2>/dev/null || true
		wait "$build_pid" 2>/dev/null || true
	fi
	rm -f "$tmp" "$build_log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building Vault $VAULT_VERSION from $src_dir into $bin"
log "this takes about 15 minutes the first time (cached afterwards); build log: $build_log"
start=$SECONDS
(cd "$src_dir" && exec go build -trimpath -o "$tmp" .) >"$build_log" 2>&1 &
build_pid=$!
next=30
while kill -0 "$build_pid" 2>/dev/null; do
	sleep 1
	if ((SECONDS - start >= next)); then
		log "still building Vault... $((SECONDS - start))s"
		next=$((next + 30))
	fi
done
rc=0
wait "$build_pid" || rc=$?
build_pid=""
if ((rc != 0)); then
	log "building Vault failed (exit $rc); last lines of the build log:"
	tail -n 40 "$build_log" >&2 || true
	exit "$rc"
fi
chmod 0755 "$tmp"
mv -f "$tmp" "$bin"
log "built $bin in $((SECONDS - start))s"
printf '%s\n' "$bin"
