# Paths assume the engine is mounted at apikey/ (replace the prefix for another mount).
# Verifier: a service (middleware, gateway) that checks the keys its clients present.
# It can call apikey/verify and nothing else of the mount. Create its token without
# Vault's default policy, which it does not need:
#
#   vault token create -policy=apikey-verifier -no-default-policy
path "apikey/verify" {
  capabilities = ["update"]
}

# A periodic verifier token renews itself; the default policy, which would grant this
# among much else, is left out.
path "auth/token/renew-self" {
  capabilities = ["update"]
}
