# Paths assume the engine is mounted at apikey/ (replace the prefix for another mount).
# Issuer: an application or deployment tool that obtains API keys for a role.
# `vault read apikey/creds/<role>` issues with the role's defaults; `vault write
# apikey/creds/<role> scopes=... ttl=...` issues a narrowed key. Renewing and revoking its
# own leases is covered by Vault's default policy (sys/leases/renew, sys/leases/lookup);
# the issuer cannot verify keys, list the inventory or change roles.
path "apikey/creds/+" {
  capabilities = ["read", "update"]
}
