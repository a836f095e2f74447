# Paths assume the engine is mounted at apikey/ (replace the prefix for another mount).
# Auditor: reviews the key inventory (key_id, role, name, scopes, metadata, expiry, usage;
# never the key nor its hash), the usage counted over time and the metrics. Read-only:
# cannot issue (apikey/creds), verify, disable or revoke keys, nor change the config.
# The audit log itself is read from the audit device's sink, outside Vault.

# Key inventory, with its filters (role, status, expiring_within, unused_for, ...).
path "apikey/keys/" {
  capabilities = ["list"]
}

path "apikey/keys/+" {
  capabilities = ["read"]
}

# Usage of one key over time: series by outcome and tag, networks seen.
path "apikey/keys/+/usage" {
  capabilities = ["read"]
}

# Usage of the mount or of one role (role=...), by outcome, tag or top keys.
path "apikey/usage" {
  capabilities = ["read"]
}

# The Prometheus metrics (what the scraper of policies/metrics.hcl reads).
path "apikey/metrics" {
  capabilities = ["read"]
}

# Anomalies raised for the mount's keys (read only: acknowledging is the operator's).
path "apikey/anomalies/" {
  capabilities = ["list"]
}

path "apikey/anomalies/+" {
  capabilities = ["read"]
}

# Identities: which keys belong to whom, and their totals.
path "apikey/identities/" {
  capabilities = ["list"]
}

path "apikey/identities/+" {
  capabilities = ["read"]
}
