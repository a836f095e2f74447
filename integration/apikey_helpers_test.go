//go:build integration

package integration

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// Key shape per the contract: "<prefix>_<body>", body = key_id(16) + secret(43) +
// checksum(6), all base62.
const (
	keyIDLen    = 16
	checksumLen = 6
	bodyLen     = 65
	base62      = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

var defaultKeyRE = regexp.MustCompile(`^vk_[0-9A-Za-z]{65}$`)

// Verify codes, from the contract's one home (short names for the tests).
const (
	codeValid             = verifyapi.CodeValid
	codeMalformed         = verifyapi.CodeMalformed
	codeNotFound          = verifyapi.CodeNotFound
	codeDisabled          = verifyapi.CodeDisabled
	codeExpired           = verifyapi.CodeExpired
	codeForbiddenIP       = verifyapi.CodeForbiddenIP
	codeInsufficientScope = verifyapi.CodeInsufficientScope
	codeRateLimited       = verifyapi.CodeRateLimited
	codeUsageExceeded     = verifyapi.CodeUsageExceeded
)

// issued is a key as returned by creds/<role>.
type issued struct {
	Key     string
	KeyID   string
	LeaseID string
	Secret  *api.Secret
}

func issuedFrom(t *testing.T, sec *api.Secret) issued {
	t.Helper()
	require.NotNil(t, sec)
	require.NotNil(t, sec.Data, "creds response has no data")
	key := str(t, sec.Data, "api_key")
	require.NotEmpty(t, sec.LeaseID, "creds response has no lease")
	return issued{Key: key, KeyID: str(t, sec.Data, "key_id"), LeaseID: sec.LeaseID, Secret: sec}
}

// issueCLI runs `vault read apikey/creds/<role>` (no args) or `vault write
// apikey/creds/<role> args...`.
func issueCLI(t *testing.T, s *Server, token, mount, role string, args ...string) issued {
	t.Helper()
	path := mount + "/creds/" + role
	var sec *api.Secret
	if len(args) == 0 {
		sec = s.CLISecret(t, token, "read", "-format=json", path)
	} else {
		sec = s.CLISecret(t, token, append([]string{"write", "-format=json", path}, args...)...)
	}
	return issuedFrom(t, sec)
}

// issueAPI issues a key through the API client (a read without data, else a write).
func issueAPI(t *testing.T, c *api.Client, mount, role string, data map[string]interface{}) issued {
	t.Helper()
	path := mount + "/creds/" + role
	var (
		sec *api.Secret
		err error
	)
	if data == nil {
		sec, err = c.Logical().Read(path)
	} else {
		sec, err = c.Logical().Write(path, data)
	}
	require.NoError(t, err, "issuing from %s", path)
	return issuedFrom(t, sec)
}

type verifyResult struct {
	Valid bool
	Code  string
	Data  map[string]interface{}
}

// verifyKey calls <mount>/verify through the API client with c's token.
func verifyKey(t *testing.T, c *api.Client, mount, key string, scopes ...string) verifyResult {
	t.Helper()
	r, err := tryVerify(c, mount, key, scopes...)
	require.NoError(t, err)
	return r
}

func tryVerify(c *api.Client, mount, key string, scopes ...string) (verifyResult, error) {
	data := map[string]interface{}{"api_key": key}
	if len(scopes) > 0 {
		data["scopes"] = scopes
	}
	return tryVerifyData(c, mount, data)
}

// verifyData calls <mount>/verify with arbitrary request data (client_ip, cost, ...).
func verifyData(t *testing.T, c *api.Client, mount string, data map[string]interface{}) verifyResult {
	t.Helper()
	r, err := tryVerifyData(c, mount, data)
	require.NoError(t, err)
	if key, ok := data["api_key"].(string); ok {
		requireNoKeyMaterial(t, r.Data, key)
	}
	return r
}

func tryVerifyData(c *api.Client, mount string, data map[string]interface{}) (verifyResult, error) {
	sec, err := c.Logical().Write(mount+"/verify", data)
	if err != nil {
		return verifyResult{}, err
	}
	if sec == nil || sec.Data == nil {
		return verifyResult{}, errors.New("verify returned no data")
	}
	answer, err := verifyapi.DecodeResponse(sec.Data)
	if err != nil {
		return verifyResult{}, fmt.Errorf("verify: %w: %v", err, sec.Data)
	}
	return verifyResult{Valid: answer.Valid, Code: answer.Code, Data: sec.Data}, nil
}

// requireCode verifies key and checks valid/code and, per the contract, which data comes
// with the code.
func requireCode(t *testing.T, c *api.Client, mount, key, want string, scopes ...string) verifyResult {
	t.Helper()
	r := verifyKey(t, c, mount, key, scopes...)
	require.Equal(t, want, r.Code, "verify code; response data: %v", r.Data)
	require.Equal(t, want == codeValid, r.Valid, "valid for code %s", r.Code)
	requireNoKeyMaterial(t, r.Data, key)
	switch want {
	case codeMalformed, codeNotFound:
		for _, f := range []string{"key_id", "role", "name", "scopes", "metadata", "expires_at"} {
			require.NotContains(t, r.Data, f, "a %s response must not carry %s", want, f)
		}
	default:
		for _, f := range []string{"key_id", "role", "name", "scopes", "metadata", "expires_at", "ttl"} {
			require.Contains(t, r.Data, f, "a %s response must carry %s", want, f)
		}
	}
	return r
}

// eventuallyCode polls verify until it answers one of the wanted codes.
func eventuallyCode(t *testing.T, c *api.Client, mount, key string, timeout time.Duration, want ...string) verifyResult {
	t.Helper()
	var last verifyResult
	eventually(t, timeout, func() error {
		r, err := tryVerify(c, mount, key)
		if err != nil {
			return err
		}
		last = r
		for _, w := range want {
			if r.Code == w {
				return nil
			}
		}
		return fmt.Errorf("verify answers %s (valid=%v), want one of %v", r.Code, r.Valid, want)
	})
	return last
}

func requireNoKeyMaterial(t *testing.T, data map[string]interface{}, key string) {
	t.Helper()
	b, err := json.Marshal(data)
	require.NoError(t, err)
	require.NotContains(t, string(b), key, "response contains the key")
	require.NotContains(t, data, "api_key")
}

// leaseGone reports nil once sys/leases/lookup no longer knows leaseID.
func leaseGone(c *api.Client, leaseID string) error {
	_, err := c.Sys().Lookup(leaseID)
	if err == nil {
		return fmt.Errorf("lease %s still exists", leaseID)
	}
	return nil
}

func requireStatus(t *testing.T, err error, status int) {
	t.Helper()
	require.Error(t, err, "expected HTTP %d", status)
	var re *api.ResponseError
	require.ErrorAs(t, err, &re, "expected an HTTP error %d, got %v", status, err)
	require.Equal(t, status, re.StatusCode, "status; errors: %v", re.Errors)
}

func requireForbidden(t *testing.T, err error) {
	t.Helper()
	requireStatus(t, err, http.StatusForbidden)
}

// requireCLIDenied checks a CLI failure is a permission denial.
func requireCLIDenied(t *testing.T, e *CLIError) {
	t.Helper()
	require.Contains(t, e.Stderr, "permission denied", "%v", e)
	require.Contains(t, e.Stderr, "403", "%v", e)
}

// --- data accessors -------------------------------------------------------------------

func str(t *testing.T, data map[string]interface{}, k string) string {
	t.Helper()
	v, ok := data[k]
	require.True(t, ok, "field %q missing in %v", k, data)
	s, ok := v.(string)
	require.True(t, ok, "field %q is %T, want string", k, v)
	return s
}

func strs(t *testing.T, data map[string]interface{}, k string) []string {
	t.Helper()
	v, ok := data[k]
	require.True(t, ok, "field %q missing in %v", k, data)
	if v == nil {
		return nil
	}
	l, ok := v.([]interface{})
	require.True(t, ok, "field %q is %T, want list", k, v)
	out := make([]string, 0, len(l))
	for _, e := range l {
		s, ok := e.(string)
		require.True(t, ok, "field %q has a %T element", k, e)
		out = append(out, s)
	}
	return out
}

func num(t *testing.T, data map[string]interface{}, k string) int64 {
	t.Helper()
	v, ok := data[k]
	require.True(t, ok, "field %q missing in %v", k, data)
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		if err != nil {
			f, ferr := n.Float64()
			require.NoError(t, ferr, "field %q = %v", k, n)
			return int64(f)
		}
		return i
	case float64:
		return int64(n)
	case int64:
		return n
	case int:
		return int64(n)
	}
	t.Fatalf("field %q is %T, want number", k, v)
	return 0
}

func strMap(t *testing.T, data map[string]interface{}, k string) map[string]string {
	t.Helper()
	v, ok := data[k]
	require.True(t, ok, "field %q missing in %v", k, data)
	out := map[string]string{}
	if v == nil {
		return out
	}
	m, ok := v.(map[string]interface{})
	require.True(t, ok, "field %q is %T, want map", k, v)
	for mk, mv := range m {
		s, ok := mv.(string)
		require.True(t, ok, "field %q.%q is %T", k, mk, mv)
		out[mk] = s
	}
	return out
}

func timeField(t *testing.T, data map[string]interface{}, k string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, str(t, data, k))
	require.NoError(t, err, "field %q is not RFC 3339", k)
	return ts
}

// --- well-formed keys that the server does not know --------------------------------------

// checksum is the contract's CRC32 of everything before it, as 6 base62 digits.
func checksum(s string) string {
	v := uint64(crc32.ChecksumIEEE([]byte(s)))
	out := make([]byte, checksumLen)
	for i := checksumLen - 1; i >= 0; i-- {
		out[i] = base62[v%62]
		v /= 62
	}
	return string(out)
}

func randomBase62(t *testing.T, n int) string {
	t.Helper()
	out := make([]byte, 0, n)
	buf := make([]byte, 1)
	for len(out) < n {
		_, err := rand.Read(buf)
		require.NoError(t, err)
		if buf[0] < 248 {
			out = append(out, base62[buf[0]%62])
		}
	}
	return string(out)
}

// forgeKey returns a well-formed key (valid checksum) with the given prefix and key_id
// ("" = random) and a random secret: the server has never issued it.
func forgeKey(t *testing.T, prefix, keyID string) string {
	t.Helper()
	if keyID == "" {
		keyID = randomBase62(t, keyIDLen)
	}
	head := prefix + "_" + keyID + randomBase62(t, bodyLen-keyIDLen-checksumLen)
	return head + checksum(head)
}

// requireWellFormed checks an issued key has the contract's shape and that the test's
// forging matches the engine's checksum (so forged keys are really well-formed).
func requireWellFormed(t *testing.T, key, keyID string) {
	t.Helper()
	require.Regexp(t, defaultKeyRE, key)
	body := key[strings.IndexByte(key, '_')+1:]
	require.Equal(t, keyID, body[:keyIDLen], "key_id is the body's first %d characters", keyIDLen)
	split := len(key) - checksumLen
	require.Equal(t, checksum(key[:split]), key[split:], "checksum: CRC32 of the rest as base62")
}
