//go:build integration

package integration

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/vaulttest"
)

// The Prometheus side of monitoring, checked with promtool (which the tests need and do
// not skip without: .ci/run installs it, PROMTOOL names another one): docs/alerts.yml
// and its unit tests docs/alerts_test.yml, the scrape config docs/prometheus.yml, and
// the policies of the scraper and the auditor against a real Vault.

// exposedFamilies are the metric families the mount's metrics path writes (and, for the
// anomaly detection to come, apikey_anomalies_total). An alert on any other apikey_ name
// would never fire.
var exposedFamilies = []string{
	"apikey_verifications_total",
	"apikey_keys_issued_total",
	"apikey_keys_revoked_total",
	"apikey_keys_rotated_total",
	"apikey_keys",
	"apikey_keys_expiring",
	"apikey_keys_quota_exhausted",
	"apikey_keys_quota_low",
	"apikey_usage_last_flush_timestamp_seconds",
	"apikey_usage_unflushed",
	"apikey_usage_flush_errors_total",
	"apikey_verify_cache_lookups_total",
	"apikey_inventory_timestamp_seconds",
	"apikey_build_info",
	"apikey_anomalies_total",
}

// expectedAlerts are the alerts docs/alerts.yml must define, and nothing else.
var expectedAlerts = []string{
	"ApikeyVerifyRefusalSpike",
	"ApikeyUnknownKeyProbing",
	"ApikeyQuotaExhausted",
	"ApikeyQuotaLow",
	"ApikeyKeysExpiringSoon",
	"ApikeyUsageFlushLag",
	"ApikeyUsageFlushErrors",
	"ApikeyMetricsAbsent",
	"ApikeyAnomalyDetected",
}

// repoRoot is the repository's root directory (go test runs in integration/).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	return root
}

// promtool runs promtool with args in dir and returns its output; a missing promtool or
// a non-zero exit fails the test with promtool's output.
func promtool(t *testing.T, dir string, args ...string) string {
	t.Helper()
	bin, err := vaulttest.Promtool(repoRoot(t))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := vaulttest.RunPromtool(ctx, bin, dir, nil, args...)
	require.NoError(t, err)
	return out
}

// ruleFile is the part of a Prometheus rule file the checks below read.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// ruleTestFile is the part of a promtool rule test file the checks below read.
type ruleTestFile struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		AlertRuleTests []struct {
			EvalTime  string           `yaml:"eval_time"`
			Alertname string           `yaml:"alertname"`
			ExpAlerts []map[string]any `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, v), path)
}

// TestAlertsRulesCheck runs `promtool check rules` on docs/alerts.yml and checks what
// promtool does not: one group apikey with exactly the expected alerts, each with a
// severity and a summary and description, on metrics the plugin exposes.
func TestAlertsRulesCheck(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	out := promtool(t, root, "check", "rules", "docs/alerts.yml")
	require.Contains(t, out, "SUCCESS: 9 rules found", out)

	var rf ruleFile
	readYAML(t, filepath.Join(root, "docs", "alerts.yml"), &rf)
	require.Len(t, rf.Groups, 1)
	require.Equal(t, "apikey", rf.Groups[0].Name)
	metricName := regexp.MustCompile(`\bapikey_[a-z_]+\b`)
	var names []string
	for _, r := range rf.Groups[0].Rules {
		require.NotEmpty(t, r.Alert, "recording rules are not expected in alerts.yml: %s", r.Expr)
		names = append(names, r.Alert)
		require.Contains(t, []string{"info", "warning", "critical"}, r.Labels["severity"], "%s: severity", r.Alert)
		require.NotEmpty(t, r.Annotations["summary"], "%s: summary", r.Alert)
		require.NotEmpty(t, r.Annotations["description"], "%s: description", r.Alert)
		used := metricName.FindAllString(r.Expr, -1)
		require.NotEmpty(t, used, "%s uses no apikey metric", r.Alert)
		for _, m := range used {
			require.Contains(t, exposedFamilies, m, "%s: %s is not a metric of the metrics path", r.Alert, m)
		}
	}
	require.ElementsMatch(t, expectedAlerts, names)
}

// TestAlertsRulesUnitTests runs `promtool test rules` on docs/alerts_test.yml, after
// checking that it tests every alert both firing and not firing.
func TestAlertsRulesUnitTests(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)

	var tf ruleTestFile
	readYAML(t, filepath.Join(root, "docs", "alerts_test.yml"), &tf)
	require.Equal(t, []string{"alerts.yml"}, tf.RuleFiles)
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tf.Tests {
		for _, at := range tc.AlertRuleTests {
			require.Contains(t, expectedAlerts, at.Alertname, "alerts_test.yml tests an alert alerts.yml does not define")
			if len(at.ExpAlerts) > 0 {
				fires[at.Alertname] = true
				for _, a := range at.ExpAlerts {
					require.Contains(t, a, "exp_annotations", "%s at %s: the annotations are part of what is tested", at.Alertname, at.EvalTime)
				}
			} else {
				silent[at.Alertname] = true
			}
		}
	}
	for _, a := range expectedAlerts {
		require.True(t, fires[a], "no test in alerts_test.yml where %s fires", a)
		require.True(t, silent[a], "no test in alerts_test.yml where %s does not fire", a)
	}

	out := promtool(t, root, "test", "rules", "docs/alerts_test.yml")
	require.Contains(t, out, "SUCCESS", out)
}

// TestAlertsScrapeConfig runs `promtool check config` on docs/prometheus.yml (which
// loads alerts.yml), in a copy whose files under /etc/prometheus/ exist: promtool
// refuses a credentials_file it cannot find. It also checks the settings the
// documentation promises.
func TestAlertsScrapeConfig(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "docs", "prometheus.yml"))
	require.NoError(t, err)

	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string         `yaml:"job_name"`
			MetricsPath   string         `yaml:"metrics_path"`
			Scheme        string         `yaml:"scheme"`
			HonorLabels   bool           `yaml:"honor_labels"`
			Params        map[string]any `yaml:"params"`
			Authorization struct {
				Type            string `yaml:"type"`
				Credentials     string `yaml:"credentials"`
				CredentialsFile string `yaml:"credentials_file"`
			} `yaml:"authorization"`
			TLSConfig struct {
				CAFile string `yaml:"ca_file"`
			} `yaml:"tls_config"`
		} `yaml:"scrape_configs"`
	}
	require.NoError(t, yaml.Unmarshal(b, &cfg))
	require.Equal(t, []string{"alerts.yml"}, cfg.RuleFiles)
	require.Len(t, cfg.ScrapeConfigs, 1)
	sc := cfg.ScrapeConfigs[0]
	require.Equal(t, "/v1/apikey/metrics", sc.MetricsPath)
	require.Equal(t, "https", sc.Scheme)
	require.True(t, sc.HonorLabels)
	require.Empty(t, sc.Params)
	require.Equal(t, "Bearer", sc.Authorization.Type)
	require.Empty(t, sc.Authorization.Credentials, "the token comes from a file, never from the config")
	require.Equal(t, "/etc/prometheus/vault-apikey-metrics.token", sc.Authorization.CredentialsFile)

	dir := t.TempDir()
	text := strings.ReplaceAll(string(b), "/etc/prometheus/", dir+"/")
	for _, f := range []string{sc.Authorization.CredentialsFile, sc.TLSConfig.CAFile} {
		if f != "" {
			require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.Base(f)), []byte("placeholder\n"), 0o600))
		}
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(text), 0o600))
	require.NoError(t, vaulttest.CopyFile(filepath.Join(root, "docs", "alerts.yml"), filepath.Join(dir, "alerts.yml"), 0o600))

	out := promtool(t, dir, "check", "config", "prometheus.yml")
	require.Contains(t, out, "SUCCESS: prometheus.yml is valid prometheus config file syntax", out)
	require.Contains(t, out, "SUCCESS: 9 rules found", out)
}

// TestAlertsPolicies loads policies/metrics.hcl, auditor.hcl and verifier.hcl into a
// real Vault and checks, with sys/capabilities, who reaches the metrics and usage paths:
// the scraper reads metrics and nothing else, the auditor reads all of it, the verifier
// none of it.
func TestAlertsPolicies(t *testing.T) {
	t.Parallel()
	s := StartDevServer(t)
	s.WritePolicy(t, "metrics")
	s.WritePolicy(t, "auditor")
	// As policies/metrics.hcl and docs/prometheus.yml say to create it.
	sec, err := s.Client.Auth().Token().CreateOrphan(&api.TokenCreateRequest{
		Policies:        []string{"metrics"},
		NoDefaultPolicy: true,
		TTL:             "1h",
	})
	require.NoError(t, err)
	require.NotNil(t, sec.Auth)
	require.Equal(t, []string{"metrics"}, sec.Auth.Policies)
	scraper := sec.Auth.ClientToken
	auditor := s.Token(t, "auditor")
	verifier := s.VerifierToken(t)

	caps := func(token, path string) []string {
		t.Helper()
		out, err := s.Client.Sys().CapabilitiesWithContext(t.Context(), token, path)
		require.NoError(t, err)
		slices.Sort(out)
		return out
	}
	read, list, deny := []string{"read"}, []string{"list"}, []string{"deny"}
	for _, tc := range []struct {
		token, path string
		want        []string
	}{
		{scraper, "apikey/metrics", read},
		{scraper, "apikey/metrics/x", deny},
		{scraper, "apikey/usage", deny},
		{scraper, "apikey/keys/", deny},
		{scraper, "apikey/keys/abc", deny},
		{scraper, "apikey/keys/abc/usage", deny},
		{scraper, "apikey/verify", deny},
		{scraper, "apikey/creds/app", deny},
		{scraper, "apikey/config", deny},
		{scraper, "apikey/roles/app", deny},
		{scraper, "other/metrics", deny},
		{scraper, "sys/metrics", deny},
		{scraper, "auth/token/lookup-self", deny},

		{auditor, "apikey/metrics", read},
		{auditor, "apikey/usage", read},
		{auditor, "apikey/keys/", list},
		{auditor, "apikey/keys/abc", read},
		{auditor, "apikey/keys/abc/usage", read},
		{auditor, "apikey/keys/abc/usage/x", deny},
		{auditor, "apikey/verify", deny},
		{auditor, "apikey/creds/app", deny},
		{auditor, "apikey/config", deny},
		{auditor, "apikey/tidy", deny},

		{verifier, "apikey/verify", []string{"update"}},
		{verifier, "apikey/metrics", deny},
		{verifier, "apikey/usage", deny},
		{verifier, "apikey/keys/", deny},
		{verifier, "apikey/keys/abc", deny},
		{verifier, "apikey/keys/abc/usage", deny},
	} {
		require.Equal(t, tc.want, caps(tc.token, tc.path), "%s on %s", policyOf(tc.token, scraper, auditor), tc.path)
	}
}

func policyOf(token, scraper, auditor string) string {
	switch token {
	case scraper:
		return "metrics"
	case auditor:
		return "auditor"
	}
	return "verifier"
}
