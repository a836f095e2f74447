# Paths assume the engine is mounted at apikey/ (replace the prefix for another mount).
# Issuer of ONE role: a template. Replace {{role}} with the role's name before loading it
# (loaded as it is, Vault reads {{role}} as an unknown template parameter and the policy
# grants nothing usable):
#
#   sed 's/{{role}}/demo/g' policies/issuer.hcl | vault policy write apikey-issuer-demo -
#
# The issuer obtains keys of that role (`vault read apikey/creds/demo` with the role's
# defaults, `vault write apikey/creds/demo scopes=... ttl=...` narrowed), renews its
# leases (Vault's default policy grants sys/leases/renew), revokes leases of that role and
# no other, and rotates keys of that role that it holds. It cannot verify keys, list the
# inventory, change roles or touch another role's keys.
path "apikey/creds/{{role}}" {
  capabilities = ["read", "update"]
}

# Rotation by proof of possession only: the caller presents the key it rotates (api_key),
# so it cannot rotate another holder's key of the same role by its (public) key_id.
path "apikey/creds/{{role}}/rotate" {
  capabilities = ["update"]
  allowed_parameters = {
    "api_key"      = []
    "grace_period" = []
  }
}

# Revoking this role's leases (rotated keys' included: their leases live under
# apikey/creds/{{role}}/rotate/), in both forms Vault accepts. Vault takes lease_id from
# the body before the path, so the path form admits no lease_id in the body.
#
# `vault lease revoke <lease_id>` (the lease id in the path):
path "sys/leases/revoke/apikey/creds/{{role}}/*" {
  capabilities = ["update"]
  allowed_parameters = {
    "sync" = []
  }
}

# The API form (the lease id in the body):
path "sys/leases/revoke" {
  capabilities = ["update"]
  allowed_parameters = {
    "lease_id" = ["apikey/creds/{{role}}/*"]
    "sync"     = []
  }
}
