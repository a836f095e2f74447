# Paths assume the engine is mounted at apikey/ (replace the prefix for another mount).
# Secret scanner (trufflehog's verification webhook, a CI job): asks whether a key it
# found is live, counting nothing. Reporting a leaked key (apikey/leaked) needs no token
# at all.
path "apikey/leaked/check" {
  capabilities = ["update"]
}
