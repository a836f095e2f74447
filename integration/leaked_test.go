//go:build integration

package integration

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLeakedReportWithoutToken: the leaked path needs no Vault token; a report revokes the
// valid keys in it at once and answers the same whatever it held.
func TestLeakedReportWithoutToken(t *testing.T) {
	s := Setup(t)
	s.MustCLI(t, s.RootToken, "write", "apikey/roles/web", "scopes=read")
	leaked := issueAPI(t, s.Client, "apikey", "web", nil)
	kept := issueAPI(t, s.Client, "apikey", "web", nil)
	verifier := s.NewClient(t, s.VerifierToken(t))
	requireCode(t, verifier, "apikey", leaked.Key, codeValid)

	report := func(keys ...string) (int, string) {
		body, err := json.Marshal(map[string]any{"keys": keys})
		require.NoError(t, err)
		req, err := http.NewRequest(http.MethodPost, s.Addr+"/v1/apikey/leaked", bytes.NewReader(body))
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req) // no X-Vault-Token
		require.NoError(t, err)
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(out)
	}
	codeA, bodyA := report(leaked.Key, "not-a-key")
	codeB, bodyB := report("junk", "more junk")
	require.Equal(t, http.StatusOK, codeA, bodyA)
	require.Equal(t, codeA, codeB)
	require.Contains(t, bodyA, `"received":2`)
	require.Contains(t, bodyB, `"received":2`)
	require.NotContains(t, bodyA, leaked.KeyID, "the answer names no key")

	requireCode(t, verifier, "apikey", leaked.Key, codeNotFound)
	requireCode(t, verifier, "apikey", kept.Key, codeValid)

	// Bad reports are 400s naming the field; a flood gets 429.
	tooMany := make([]string, 101)
	for i := range tooMany {
		tooMany[i] = "x"
	}
	code, body := report(tooMany...)
	require.Equal(t, http.StatusBadRequest, code, body)
	require.Contains(t, body, "keys: at most 100")
	sawLimit := false
	for range 40 {
		if code, _ := report("junk"); code == http.StatusTooManyRequests {
			sawLimit = true
			break
		}
	}
	require.True(t, sawLimit, "reports are rate-limited")
}
