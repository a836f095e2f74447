# Paths assume the engine is mounted at apikey/ (replace the prefix for another mount).
# Verifier: a service (middleware, gateway) that checks the keys its clients present.
# It can call apikey/verify (and, in fleet mode, the three paths at the end) and nothing
# else of the mount. Create its token without Vault's default policy, which it does not
# need:
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

# Fleet mode (apikeyauth Config.Fleet, the gateway's -fleet): quota grants for metered
# keys, the change feed that invalidates cached answers, and usage reports of the
# answers served from the cache. A verifier without fleet mode never calls these.
path "apikey/grants/renew" {
  capabilities = ["update"]
}

path "apikey/usage/report" {
  capabilities = ["update"]
}

path "apikey/feed" {
  capabilities = ["read"]
}
