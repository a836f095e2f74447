//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// auditEntry is the part of a file audit device's JSON line the test looks at.
type auditEntry struct {
	Type    string `json:"type"`
	Request struct {
		ID        string                 `json:"id"`
		Operation string                 `json:"operation"`
		Path      string                 `json:"path"`
		Data      map[string]interface{} `json:"data"`
	} `json:"request"`
	Response struct {
		Data map[string]interface{} `json:"data"`
	} `json:"response"`
}

func readAudit(t *testing.T, path string) []auditEntry {
	t.Helper()
	var out []auditEntry
	for i, line := range fileLines(t, path) {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var e auditEntry
		require.NoError(t, json.Unmarshal([]byte(line), &e), "audit line %d: %s", i+1, line)
		out = append(out, e)
	}
	return out
}

// findAudit waits until the audit log has a response entry for path whose request ID is
// not in seen, and returns it.
func findAudit(t *testing.T, path, reqPath string, seen map[string]bool) auditEntry {
	t.Helper()
	var found auditEntry
	eventually(t, 10*time.Second, func() error {
		for _, e := range readAudit(t, path) {
			if e.Type == "response" && e.Request.Path == reqPath && !seen[e.Request.ID] {
				found = e
				return nil
			}
		}
		return fmt.Errorf("no new audit response for %s in %s", reqPath, path)
	})
	seen[found.Request.ID] = true
	return found
}

func hmaced(v interface{}) bool {
	s, ok := v.(string)
	return ok && strings.HasPrefix(s, "hmac-sha256:")
}

// TestAudit: with a file audit device, the plaintext key appears nowhere (audit log,
// server log); after the documented tune, key_id and code are readable in the audit log.
func TestAudit(t *testing.T) {
	t.Parallel()
	s := Setup(t)
	root := s.RootToken
	auditPath := filepath.Join(s.Dir, "audit.log")
	s.MustCLI(t, root, "audit", "enable", "file", "file_path="+auditPath)
	verifierToken := s.VerifierToken(t)
	verifier := s.NewClient(t, verifierToken)

	s.MustCLI(t, root, "write", "apikey/roles/audited", "scopes=orders:read", "ttl=1h", "max_ttl=2h")
	seen := map[string]bool{}
	var keys []issued

	t.Run("default: everything HMAC'd", func(t *testing.T) {
		k := issueCLI(t, s, root, "apikey", "audited")
		keys = append(keys, k)
		creds := findAudit(t, auditPath, "apikey/creds/audited", seen)
		require.True(t, hmaced(creds.Response.Data["api_key"]), "creds api_key in audit: %v", creds.Response.Data["api_key"])

		requireCode(t, verifier, "apikey", k.Key, codeValid, "orders:read")
		v := findAudit(t, auditPath, "apikey/verify", seen)
		require.True(t, hmaced(v.Request.Data["api_key"]), "verify api_key in audit: %v", v.Request.Data["api_key"])
		require.True(t, hmaced(v.Response.Data["code"]), "code is HMAC'd without the tune: %v", v.Response.Data["code"])
		require.True(t, hmaced(v.Response.Data["key_id"]), "key_id is HMAC'd without the tune: %v", v.Response.Data["key_id"])

		s.CLISecret(t, verifierToken, "write", "-format=json", "apikey/verify", "api_key="+k.Key)
		findAudit(t, auditPath, "apikey/verify", seen)
	})

	t.Run("tuned: key_id, code, valid, role readable", func(t *testing.T) {
		s.MustCLI(t, root, "secrets", "tune",
			"-audit-non-hmac-request-keys=key_id",
			"-audit-non-hmac-response-keys=key_id",
			"-audit-non-hmac-response-keys=code",
			"-audit-non-hmac-response-keys=valid",
			"-audit-non-hmac-response-keys=role",
			"apikey/")

		k := issueCLI(t, s, root, "apikey", "audited")
		keys = append(keys, k)
		creds := findAudit(t, auditPath, "apikey/creds/audited", seen)
		require.Equal(t, k.KeyID, creds.Response.Data["key_id"], "creds key_id readable after the tune")
		require.True(t, hmaced(creds.Response.Data["api_key"]), "creds api_key still HMAC'd: %v", creds.Response.Data["api_key"])

		requireCode(t, verifier, "apikey", k.Key, codeValid, "orders:read")
		v := findAudit(t, auditPath, "apikey/verify", seen)
		require.Equal(t, k.KeyID, v.Response.Data["key_id"], "verify key_id readable after the tune")
		require.Equal(t, codeValid, v.Response.Data["code"], "verify code readable after the tune")
		require.Equal(t, true, v.Response.Data["valid"])
		require.Equal(t, "audited", v.Response.Data["role"])
		require.True(t, hmaced(v.Request.Data["api_key"]), "verify api_key still HMAC'd: %v", v.Request.Data["api_key"])

		requireCode(t, verifier, "apikey", k.Key, codeInsufficientScope, "orders:write")
		v = findAudit(t, auditPath, "apikey/verify", seen)
		require.Equal(t, codeInsufficientScope, v.Response.Data["code"])
		require.Equal(t, false, v.Response.Data["valid"])

		requireCode(t, verifier, "apikey", forgeKey(t, "vk", ""), codeNotFound)
		v = findAudit(t, auditPath, "apikey/verify", seen)
		require.Equal(t, codeNotFound, v.Response.Data["code"])
	})

	t.Run("no plaintext key in the audit log or the server log", func(t *testing.T) {
		require.NotEmpty(t, keys)
		audit, err := os.ReadFile(auditPath)
		require.NoError(t, err)
		server, err := os.ReadFile(s.LogPath)
		require.NoError(t, err)
		for _, k := range keys {
			// The whole key, and its secret part alone (between key_id and checksum).
			body := k.Key[strings.IndexByte(k.Key, '_')+1:]
			secretPart := body[keyIDLen : len(body)-checksumLen]
			for name, content := range map[string][]byte{"audit log": audit, "server log": server} {
				require.NotContains(t, string(content), k.Key, "plaintext key in the %s", name)
				require.NotContains(t, string(content), secretPart, "the key's secret part in the %s", name)
			}
		}
	})
}
