# Paths assume the engine is mounted at apikey/ (replace the prefix for another mount).
# Metrics scraper (Prometheus): reads the mount's metrics (Prometheus text format: counts
# by role and outcome, no key material, no key IDs) and nothing else. Create its token
# without Vault's default policy, which it does not need:
#
#   vault policy write apikey-metrics policies/metrics.hcl
#   vault token create -policy=apikey-metrics -no-default-policy -orphan -ttl=720h
#
# Such a token cannot renew itself: replace it before it expires, or let Vault Agent keep
# the token file Prometheus reads (docs/prometheus.yml has the scrape config).
path "apikey/metrics" {
  capabilities = ["read"]
}
