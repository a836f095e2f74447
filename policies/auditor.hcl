# Paths assume the engine is mounted at apikey/ (replace the prefix for another mount).
# Auditor: reviews the key inventory (key_id, role, name, scopes, metadata, expiry, usage;
# never the key nor its hash). Read-only: cannot issue (apikey/creds), verify, disable or
# revoke keys. The audit log itself is read from the audit device's sink, outside Vault.
path "apikey/keys/" {
  capabilities = ["list"]
}

path "apikey/keys/+" {
  capabilities = ["read"]
}
