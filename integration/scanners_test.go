//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/keyformat"
)

// gitleaksModule is the gitleaks release the rule is tested with (docs/leaked-keys.md).
const gitleaksModule = "github.com/zricethezav/gitleaks/v8@v8.30.1"

// TestScannersGitleaksFindsExactlyTheKeys runs the real gitleaks, built from the module
// proxy, with docs/scanners/gitleaks.toml over files holding keys and near-misses.
func TestScannersGitleaksFindsExactlyTheKeys(t *testing.T) {
	dir := t.TempDir()
	var keys []string
	var text bytes.Buffer
	for i := range 12 {
		key, _, err := keyformat.Generate(keyformat.DefaultPrefix)
		require.NoError(t, err)
		keys = append(keys, key)
		switch i % 3 {
		case 0:
			text.WriteString("API_KEY=" + key + "\n")
		case 1:
			text.WriteString(`{"token": "` + key + `"}` + "\n")
		case 2:
			text.WriteString("curl -H 'Authorization: Bearer " + key + "' https://api\n")
		}
	}
	k := keys[0]
	for _, near := range []string{k[:len(k)-1], k + "Z", "xk" + k[2:], "VK" + k[2:], "vk_" + string(bytes.Repeat([]byte("x"), keyformat.BodyLen))} {
		text.WriteString("NEAR=" + near + "\n")
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "leaky.env"), text.Bytes(), 0o600))
	config, err := filepath.Abs("../docs/scanners/gitleaks.toml")
	require.NoError(t, err)
	report := filepath.Join(t.TempDir(), "report.json")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", gitleaksModule, "dir", "--config", config, "--enable-rule", "vault-apikey",
		"--report-format", "json", "--report-path", report, "--exit-code", "0", "--no-banner", dir)
	cmd.Dir = t.TempDir() // outside this module: go run builds gitleaks with its own go.mod
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "gitleaks (%s): %s", gitleaksModule, out)

	raw, err := os.ReadFile(report)
	require.NoError(t, err)
	var findings []struct {
		RuleID string `json:"RuleID"`
		Secret string `json:"Secret"`
	}
	require.NoError(t, json.Unmarshal(raw, &findings))
	var found []string
	for _, f := range findings {
		require.Equal(t, "vault-apikey", f.RuleID)
		found = append(found, f.Secret)
	}
	slices.Sort(found)
	slices.Sort(keys)
	require.Equal(t, keys, found, "every key and no near-miss (the placeholder fails the entropy floor)")
}

// TestScannersTrufflehogVerificationCall posts what trufflehog's custom-detector webhook
// posts to leaked/check with a token of policies/scanner.hcl.
func TestScannersTrufflehogVerificationCall(t *testing.T) {
	s := Setup(t)
	s.MustCLI(t, s.RootToken, "write", "apikey/roles/web", "scopes=read", "max_uses=3")
	live := issueAPI(t, s.Client, "apikey", "web", nil)
	dead := issueAPI(t, s.Client, "apikey", "web", nil)
	s.MustCLI(t, s.RootToken, "lease", "revoke", dead.LeaseID)
	s.WritePolicy(t, "scanner")
	scanner := s.Token(t, "scanner")

	check := func(token, key string) int {
		body, err := json.Marshal(map[string]any{"vault-apikey": map[string]any{"key": []string{key}}})
		require.NoError(t, err)
		req, err := http.NewRequest(http.MethodPost, s.Addr+"/v1/apikey/leaked/check", bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("X-Vault-Token", token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, check(scanner, live.Key))
	require.Equal(t, http.StatusNotFound, check(scanner, dead.Key))
	require.Equal(t, http.StatusNotFound, check(scanner, "vk_placeholder"))
	require.Equal(t, http.StatusForbidden, check("", live.Key), "leaked/check needs a token")

	// The check counted nothing, and the scanner token reaches nothing else.
	rec := s.CLISecret(t, s.RootToken, "read", "-format=json", "apikey/keys/"+live.KeyID)
	require.EqualValues(t, json.Number("3"), rec.Data["remaining_uses"])
	scannerClient := s.NewClient(t, scanner)
	_, err := scannerClient.Logical().Write("apikey/verify", map[string]any{"api_key": live.Key})
	require.ErrorContains(t, err, "permission denied")
	_, err = scannerClient.Logical().Read("apikey/keys/" + live.KeyID)
	require.ErrorContains(t, err, "permission denied")
}
