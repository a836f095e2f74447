# Paths assume the engine is mounted at apikey/ (replace the prefix for another mount).
# Issuer of ONE role: a template. Replace {{role}} with the role's name before loading it
# (Vault refuses the file as it is, so a forgotten substitution cannot grant anything):
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

# `vault lease revoke <lease_id>` for this role's keys (rotated ones included: their
# leases live under apikey/creds/{{role}}/rotate/).
path "sys/leases/revoke" {
  capabilities = ["update"]
  allowed_parameters = {
    "lease_id" = ["apikey/creds/{{role}}/*"]
  }
}
