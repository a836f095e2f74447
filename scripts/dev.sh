#!/usr/bin/env bash
# Runs a throw-away Vault dev server with this plugin registered and enabled at apikey/,
# plus a sample role `demo`. Run by `make dev` (after `make build`). Ctrl-C stops it and
# removes everything it created.
#
# Environment:
#   PLUGIN_BIN  plugin binary (default: bin/vault-plugin-secrets-apikey)
#   VAULT_BIN   Vault server binary (default: whatever scripts/vault-bin.sh finds or builds)
#   VAULT_PORT  port to listen on (default: 8200 if free, else a free one)
#   DEV_ROOT_TOKEN  dev root token (default: random)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
plugin_name=vault-plugin-secrets-apikey
plugin_bin="${PLUGIN_BIN:-$repo/bin/$plugin_name}"
mount=apikey

die() { printf 'dev: %s\n' "$*" >&2; exit 1; }

[[ -x "$plugin_bin" ]] || die "plugin binary $plugin_bin not found: run 'make build' (or 'make dev')"

vault_bin="$("$repo/scripts/vault-bin.sh")" || die "no Vault server binary (scripts/vault-bin.sh failed)"

# The version the plugin reports (RunningVersion); the registration must match it.
plugin_version=""
if [[ -f "$repo/version.go" ]]; then
	plugin_version="$(sed -nE 's/^[[:space:]]*(const[[:space:]]+)?Version[[:space:]]*(string[[:space:]]*)?=[[:space:]]*"([^"]+)".*/\3/p' "$repo/version.go" | head -n1)"
fi
plugin_version="${plugin_version:-v0.1.0}"
[[ "$plugin_version" == v* ]] || plugin_version="v$plugin_version"

port_in_use() { (: </dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
pick_port() {
	# The dev server also listens on port+1 (cluster port).
	local p
	if [[ -n "${VAULT_PORT:-}" ]]; then
		echo "$VAULT_PORT"
		return
	fi
	for p in 8200 $(shuf -i 20000-60000 -n 50); do
		if ! port_in_use "$p" && ! port_in_use $((p + 1)); then
			echo "$p"
			return
		fi
	done
	die "no free port found"
}

work="$(mktemp -d "${TMPDIR:-/tmp}/vault-apikey-dev.XXXXXX")"
server_pid=""
dashboard_pid=""
cleanup() {
	trap - EXIT INT TERM
	if [[ -n "$dashboard_pid" ]]; then
		kill -TERM -- "-$dashboard_pid" 2>/dev/null || true
	fi
	if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
		echo >&2
		echo "dev: stopping Vault (pid $server_pid)" >&2
		kill -TERM "$server_pid" 2>/dev/null || true
		for _ in $(seq 1 100); do
			kill -0 "$server_pid" 2>/dev/null || break
			sleep 0.1
		done
		# Whatever is left of the server's process group (plugin processes included).
		kill -KILL -- "-$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
# Ctrl-C is the normal way to stop: exit 0 after cleaning up.
trap 'exit 0' INT
trap 'exit 143' TERM

mkdir -p "$work/plugins"
cp "$plugin_bin" "$work/plugins/$plugin_name"
chmod 0755 "$work/plugins/$plugin_name"
sha256="$(sha256sum "$work/plugins/$plugin_name" | cut -d' ' -f1)"

root_token="${DEV_ROOT_TOKEN:-dev-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')}"
port="$(pick_port)"
export VAULT_ADDR="http://127.0.0.1:$port"
export VAULT_TOKEN="$root_token"
unset VAULT_NAMESPACE VAULT_CACERT VAULT_CAPATH

# setsid: the server and its plugin processes get their own process group, so cleanup
# can kill them all; the dev server must not write ~/.vault-token either.
setsid "$vault_bin" server -dev \
	-dev-listen-address="127.0.0.1:$port" \
	-dev-root-token-id="$root_token" \
	-dev-no-store-token \
	-dev-plugin-dir="$work/plugins" \
	-dev-plugin-init=false \
	>"$work/vault.log" 2>&1 &
server_pid=$!

ready=""
for _ in $(seq 1 300); do
	if ! kill -0 "$server_pid" 2>/dev/null; then
		tail -n 30 "$work/vault.log" >&2
		die "Vault exited during start-up"
	fi
	if "$vault_bin" status >/dev/null 2>&1; then
		ready=1
		break
	fi
	sleep 0.1
done
[[ -n "$ready" ]] || { tail -n 30 "$work/vault.log" >&2; die "Vault did not become ready on $VAULT_ADDR"; }

v() { "$vault_bin" "$@"; }
v plugin register -sha256="$sha256" -version="$plugin_version" secret "$plugin_name" >/dev/null
v secrets enable -path="$mount" -plugin-version="$plugin_version" "$plugin_name" >/dev/null
v write "$mount/roles/demo" scopes=orders:read,orders:write ttl=1h max_ttl=24h >/dev/null

# The dashboard, with a userpass user "dev" who may operate, audit and issue demo keys.
dashboard_bin="${DASHBOARD_BIN:-$repo/bin/apikey-dashboard}"
dash_port=8300
if port_in_use "$dash_port"; then
	for dash_port in $(shuf -i 20000-60000 -n 50); do
		port_in_use "$dash_port" || break
	done
fi
v auth enable userpass >/dev/null
v policy write apikey-operator "$repo/policies/operator.hcl" >/dev/null
v policy write apikey-auditor "$repo/policies/auditor.hcl" >/dev/null
sed 's/{{role}}/demo/g' "$repo/policies/issuer.hcl" | v policy write apikey-issuer-demo - >/dev/null
v write auth/userpass/users/dev password=dev token_policies=apikey-operator,apikey-auditor,apikey-issuer-demo >/dev/null
setsid "$dashboard_bin" -listen "127.0.0.1:$dash_port" -vault-addr "$VAULT_ADDR" -mount "$mount" >"$work/dashboard.log" 2>&1 &
dashboard_pid=$!

vault_cmd=vault
alias_line=""
if [[ "$(command -v vault 2>/dev/null || true)" != "$vault_bin" ]]; then
	alias_line="  alias vault='$vault_bin'"
fi

cat <<EOF

Vault dev server with $plugin_name $plugin_version enabled at $mount/
(in memory: everything goes away on Ctrl-C; server log: $work/vault.log)

In another shell:

  export VAULT_ADDR='$VAULT_ADDR'
  export VAULT_TOKEN='$root_token'    # dev root token
${alias_line}

Dashboard: http://127.0.0.1:$dash_port/  (sign in with the root token, or userpass dev / dev;
log: $work/dashboard.log)

Sample role: $mount/roles/demo (scopes=orders:read,orders:write ttl=1h max_ttl=24h)

  # issue a key (note api_key and lease_id)
  $vault_cmd read $mount/creds/demo

  # verify it
  $vault_cmd write $mount/verify api_key=<api_key> scopes=orders:read

  # revoke it
  $vault_cmd lease revoke <lease_id>

Press Ctrl-C to stop.
EOF

rc=0
wait "$server_pid" || rc=$?
server_pid=""
echo "dev: Vault exited (status $rc); last lines of its log:" >&2
tail -n 20 "$work/vault.log" >&2
exit "$rc"
