//go:build integration

package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"
)

// TestLimitsThroughCLI drives credits with refill, named rate limits, identities and
// shared limits through the real `vault` CLI against a real Vault, with the testclock
// plugin so that the test can cross a refill boundary (UTC midnight) without waiting.
// The plain-text outputs it logs are the ones docs/limits.md shows.
func TestLimitsThroughCLI(t *testing.T) {
	t.Parallel()
	s := SetupWithClock(t)
	root := s.RootToken
	auditLog := filepath.Join(s.Dir, "audit.log")
	s.MustCLI(t, root, "audit", "enable", "file", "file_path="+auditLog)

	cli := func(token string, args ...string) string {
		t.Helper()
		out := s.MustCLI(t, token, args...)
		t.Logf("$ vault %s\n%s", strings.Join(args, " "), out)
		return out
	}
	jsonData := func(token string, args ...string) map[string]interface{} {
		t.Helper()
		sec := s.CLISecret(t, token, append(args[:1:1], append([]string{"-format=json"}, args[1:]...)...)...)
		return sec.Data
	}
	verify := func(token, key string, args ...string) map[string]interface{} {
		t.Helper()
		return jsonData(token, append([]string{"write", "apikey/verify", "api_key=" + key}, args...)...)
	}
	verifier := s.VerifierToken(t)

	// The engine's clock at 23:00 UTC, an hour before a midnight (a daily refill).
	midnight := time.Now().UTC().Truncate(24 * time.Hour).Add(48 * time.Hour)
	s.SetClock(t, root, midnight.Add(-time.Hour))

	t.Run("credits with refill", func(t *testing.T) {
		cli(root, "write", "apikey/roles/metered", "scopes=api", "max_uses=3", "refill_interval=daily", "refill_amount=5")
		role := jsonData(root, "read", "apikey/roles/metered")
		require.Equal(t, "daily", role["refill_interval"])
		require.Equal(t, "5", string(role["refill_amount"].(json.Number)))

		k := issueCLI(t, s, root, "apikey", "metered")
		got := verify(verifier, k.Key, "cost=3")
		require.Equal(t, codeValid, got["code"])
		require.Equal(t, int64(0), num(t, got, "remaining_uses"))
		require.Equal(t, codeUsageExceeded, verify(verifier, k.Key)["code"])

		cli(root, "write", "apikey/keys/"+k.KeyID+"/credits", "add=2")
		got = verify(verifier, k.Key)
		require.Equal(t, codeValid, got["code"], "a top-up holds from the next verify")
		require.Equal(t, int64(1), num(t, got, "remaining_uses"))
		cli(root, "write", "apikey/keys/"+k.KeyID+"/credits", "set=10")
		read := jsonData(root, "read", "apikey/keys/"+k.KeyID)
		require.Equal(t, int64(10), num(t, read, "remaining_uses"))
		require.Equal(t, midnight.Format(time.RFC3339), read["next_refill_at"])
		cli(root, "read", "apikey/keys/"+k.KeyID)

		// Both set and add, or a negative value: a 400 naming the field.
		ce := s.CLIFail(t, root, "write", "apikey/keys/"+k.KeyID+"/credits", "set=1", "add=1")
		require.Contains(t, ce.Stderr, "set, add: give exactly one")
		ce = s.CLIFail(t, root, "write", "apikey/keys/"+k.KeyID+"/credits", "add=-1")
		require.Contains(t, ce.Stderr, "add must be between 0 and")
		ce = s.CLIFail(t, root, "write", "apikey/roles/metered", "refill_interval=weekly")
		require.Contains(t, ce.Stderr, "refill_interval")

		// Past midnight the key has refill_amount again: the 10 set before did not carry over.
		s.SetClock(t, root, midnight.Add(time.Minute))
		got = verify(verifier, k.Key, "cost=0")
		require.Equal(t, codeValid, got["code"])
		require.Equal(t, int64(5), num(t, got, "remaining_uses"))
		cli(verifier, "write", "apikey/verify", "api_key="+k.Key, "cost=2")
		read = jsonData(root, "read", "apikey/keys/"+k.KeyID)
		require.Equal(t, midnight.Add(24*time.Hour).Format(time.RFC3339), read["next_refill_at"])
		require.Equal(t, int64(3), num(t, read, "remaining_uses"))

		// The credits writes are in the audit log like every write.
		eventually(t, 10*time.Second, func() error {
			for _, line := range fileLines(t, auditLog) {
				if strings.Contains(line, "apikey/keys/"+k.KeyID+"/credits") && strings.Contains(line, `"type":"response"`) {
					return nil
				}
			}
			return os.ErrNotExist
		})
	})

	t.Run("named rate limits", func(t *testing.T) {
		cli(root, "write", "apikey/roles/named", "scopes=api", "rate_limits=burst=2/1h,daily=100/24h")
		require.Equal(t, []string{"burst=2/1h", "daily=100/1d"}, strs(t, jsonData(root, "read", "apikey/roles/named"), "rate_limits"))
		k := issueCLI(t, s, root, "apikey", "named")
		for range 2 {
			require.Equal(t, codeValid, verify(verifier, k.Key)["code"])
		}
		got := verify(verifier, k.Key)
		require.Equal(t, codeRateLimited, got["code"])
		require.Equal(t, "burst", got["rate_limit_name"])
		require.InDelta(t, 1800, num(t, got, "retry_after"), 5, "a token every 30 minutes")
		cli(verifier, "write", "apikey/verify", "api_key="+k.Key)

		cli(root, "write", "apikey/roles/smalldaily", "scopes=api", "rate_limits=burst=10/1s,daily=3/24h")
		d := issueCLI(t, s, root, "apikey", "smalldaily")
		for range 3 {
			require.Equal(t, codeValid, verify(verifier, d.Key)["code"])
		}
		got = verify(verifier, d.Key)
		require.Equal(t, codeRateLimited, got["code"])
		require.Equal(t, "daily", got["rate_limit_name"])

		ce := s.CLIFail(t, root, "write", "apikey/roles/named", "rate_limits=Burst=1/1s")
		require.Contains(t, ce.Stderr, "rate_limits")
	})

	// Userpass: a user whose token has an entity issues keys.
	s.MustCLI(t, root, "auth", "enable", "userpass")
	require.NoError(t, s.Client.Sys().PutPolicy("limits-issuer", `path "apikey/creds/*" { capabilities = ["read", "update"] }`))
	s.MustCLI(t, root, "write", "auth/userpass/users/alice", "password=correct-horse-battery", "token_policies=limits-issuer")
	login := s.CLISecret(t, "", "login", "-format=json", "-no-store", "-method=userpass", "username=alice", "password=correct-horse-battery")
	require.NotNil(t, login.Auth)
	alice, entity := login.Auth.ClientToken, login.Auth.EntityID
	require.NotEmpty(t, entity, "a userpass login has an entity")

	t.Run("identity from the issuing entity", func(t *testing.T) {
		cli(root, "write", "apikey/roles/customers", "scopes=api")
		k := issueCLI(t, s, alice, "apikey", "customers")
		require.Equal(t, entity, k.Secret.Data["identity"])
		read := jsonData(root, "read", "apikey/keys/"+k.KeyID)
		require.Equal(t, entity, read["identity"])
		require.Equal(t, entity, verify(verifier, k.Key)["identity"])
		list := cli(root, "list", "-detailed", "apikey/keys")
		require.Contains(t, list, entity)

		// The identity= filter, over HTTP (vault list sends no fields).
		raw, err := s.Client.Logical().ReadWithData("apikey/keys", map[string][]string{"list": {"true"}, "identity": {entity}})
		require.NoError(t, err)
		require.Equal(t, []interface{}{k.KeyID}, raw.Data["keys"])
		cli(alice, "read", "apikey/creds/customers") // a second key of the identity, as the docs show it

		// An explicit identity only where the role allows it.
		ce := s.CLIFail(t, alice, "write", "apikey/creds/customers", "identity=someone-else")
		require.Contains(t, ce.Stderr, "identity: role \"customers\" does not let issuers set the identity")
	})

	var sharedKeys []issued
	t.Run("shared limits across two keys", func(t *testing.T) {
		cli(root, "write", "apikey/roles/shared", "scopes=api", "max_uses=5", "rate_limits=hour=4/1h", "shared_limits=true", "allow_identity=true")
		a := issueCLI(t, s, alice, "apikey", "shared")
		b := issueCLI(t, s, alice, "apikey", "shared")
		sharedKeys = []issued{a, b}
		got := verify(verifier, a.Key, "cost=3")
		require.Equal(t, codeValid, got["code"])
		require.Equal(t, int64(2), num(t, got, "remaining_uses"))
		got = verify(verifier, b.Key, "cost=3")
		require.Equal(t, codeUsageExceeded, got["code"], "b spends the same 5")
		require.Equal(t, int64(2), num(t, got, "remaining_uses"))
		require.Equal(t, codeValid, verify(verifier, b.Key, "cost=2")["code"])
		require.Equal(t, codeUsageExceeded, verify(verifier, a.Key, "cost=0")["code"], "nothing left for either key")

		// A top-up through one key is the identity's.
		cli(root, "write", "apikey/keys/"+b.KeyID+"/credits", "add=3")
		require.Equal(t, int64(3), num(t, jsonData(root, "read", "apikey/keys/"+a.KeyID), "remaining_uses"))

		// hour=4/1h: a, b, b and a took the 4 tokens (refusals by max_uses take one too,
		// as they passed the rate limits); b is refused by the shared limit.
		got = verify(verifier, b.Key)
		require.Equal(t, codeRateLimited, got["code"])
		require.Equal(t, "hour", got["rate_limit_name"])
		cli(verifier, "write", "apikey/verify", "api_key="+b.Key)

		// A key given another identity by an operator (allow_identity) has its own.
		other := issueCLI(t, s, root, "apikey", "shared", "identity=customer-acme")
		require.Equal(t, "customer-acme", other.Secret.Data["identity"])
		got = verify(verifier, other.Key)
		require.Equal(t, codeValid, got["code"])
		require.Equal(t, int64(4), num(t, got, "remaining_uses"))

	})

	t.Run("identities read and revoke", func(t *testing.T) {
		require.Len(t, sharedKeys, 2)
		cli(root, "read", "-format=json", "apikey/identities/"+entity)
		got := jsonData(root, "read", "apikey/identities/"+entity)
		require.Equal(t, int64(4), num(t, got, "key_count"), "the two customers keys and the two shared ones")
		require.Equal(t, int64(6), num(t, got, "use_count"), "1 + 3 + 2")
		require.Equal(t, int64(3), num(t, got, "remaining_uses"), "5 - 3 - 2 + 3")
		cli(root, "read", "apikey/identities/"+entity)
		require.Contains(t, cli(root, "list", "apikey/identities"), entity)

		out := jsonData(root, "write", "-f", "apikey/identities/"+entity+"/revoke")
		require.Equal(t, int64(4), num(t, out, "revoked"))
		t.Logf("revoke: %v", out)
		for _, k := range sharedKeys {
			require.Equal(t, codeNotFound, verify(verifier, k.Key)["code"])
		}
		out = jsonData(root, "write", "-f", "apikey/identities/"+entity+"/revoke")
		require.Equal(t, int64(0), num(t, out, "revoked"), "again: nothing left, still a success")
		cli(root, "write", "-f", "apikey/identities/"+entity+"/revoke")
		// The other identity's key is untouched, and the leases still revoke.
		require.Equal(t, codeNotFound, verify(verifier, sharedKeys[0].Key)["code"])
		s.MustCLI(t, root, "lease", "revoke", "-sync", sharedKeys[0].LeaseID)
		eventually(t, 10*time.Second, func() error { return leaseGone(s.Client, sharedKeys[0].LeaseID) })
	})

	// A verifier cannot change credits or read identities.
	_, err := s.NewClient(t, verifier).Logical().Write("apikey/keys/"+strings.Repeat("A", 16)+"/credits", map[string]interface{}{"add": 1})
	var re *api.ResponseError
	require.ErrorAs(t, err, &re)
	require.Equal(t, 403, re.StatusCode)
}
