# Paths assume the engine is mounted at apikey/ (replace the prefix for another mount).
# Operator of the apikey/ mount: manages roles, the plugin's config, the key inventory
# (read, disable, relabel, revoke) and tidy. Enabling, tuning and disabling the mount
# (sys/mounts) is the Vault admin's, not the operator's. The operator cannot issue keys
# (apikey/creds) nor verify them.

# Roles.
path "apikey/roles/" {
  capabilities = ["list"]
}

path "apikey/roles/+" {
  capabilities = ["create", "read", "update", "delete"]
}

# Plugin settings (the mount secret is never returned).
path "apikey/config" {
  capabilities = ["create", "read", "update"]
}

# Key inventory: list, read metadata, update (disabled, metadata, name), delete (revokes
# the key at once).
path "apikey/keys/" {
  capabilities = ["list"]
}

path "apikey/keys/+" {
  capabilities = ["read", "update", "delete"]
}

# Rotation returns a new plaintext key, so it is issuance rather than management and is
# not granted here. Grant it per role to whoever should receive the replacement key; by
# key_id it reaches every key of that role (policies/issuer.hcl grants rotation by proof
# of possession only):
#
# path "apikey/creds/demo/rotate" {
#   capabilities = ["update"]
# }

# Remove records of expired keys.
path "apikey/tidy" {
  capabilities = ["update"]
}

# Anomalies raised for the mount's keys: list, read, acknowledge (acknowledged, note).
# Re-enabling a key that anomaly_action=disable disabled goes through apikey/keys/+.
path "apikey/anomalies/" {
  capabilities = ["list"]
}

path "apikey/anomalies/+" {
  capabilities = ["read", "update"]
}

# Usage over time and the metrics, as the auditor reads them.
path "apikey/keys/+/usage" {
  capabilities = ["read"]
}

path "apikey/usage" {
  capabilities = ["read"]
}

# Credits: set or top up a key's remaining uses (set=N or add=N).
path "apikey/keys/+/credits" {
  capabilities = ["update"]
}

# Identities: their keys and totals; revoke every key of one identity.
path "apikey/identities/" {
  capabilities = ["list"]
}

path "apikey/identities/+" {
  capabilities = ["read"]
}

path "apikey/identities/+/revoke" {
  capabilities = ["update"]
}

# Import keys clients already hold; revoke many keys at once (dry_run first).
path "apikey/import" {
  capabilities = ["update"]
}

path "apikey/revoke" {
  capabilities = ["update"]
}
