//go:build integration

package integration

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// metadataOf returns n pairs of prefixNN=<value of valueLen bytes>.
func metadataOf(prefix string, n, valueLen int) map[string]interface{} {
	m := map[string]interface{}{}
	for i := range n {
		m[fmt.Sprintf("%s%02d", prefix, i)] = strings.Repeat("v", valueLen)
	}
	return m
}

// TestSecurityAttacks replays, through the real vault CLI and HTTP API, the attacks an
// attack review found against v0.1; each must fail now.
func TestSecurityAttacks(t *testing.T) {
	t.Parallel()
	s := Setup(t)
	root := s.RootToken
	verifier := s.NewClient(t, s.VerifierToken(t))

	t.Run("a key at the metadata maximum revokes and renews", func(t *testing.T) {
		// 16 pairs of 3+500 bytes from the role and 16 from the issuer: 16096 bytes in all,
		// under the 16384-byte bound of the merged map.
		_, err := s.Client.Logical().Write("apikey/roles/big", map[string]interface{}{
			"scopes": "a", "ttl": "1h", "max_ttl": "2h", "metadata": metadataOf("r", 16, 500),
		})
		require.NoError(t, err)
		// Today's attack: each half passes the field limit, the merge does not; it is now
		// refused at issue, naming the field, instead of making an irrevocable lease.
		_, err = s.Client.Logical().Write("apikey/creds/big", map[string]interface{}{"metadata": metadataOf("i", 20, 500)})
		requireStatus(t, err, 400)
		require.Contains(t, err.Error(), "metadata: at most 16384 bytes")

		k := issueAPI(t, s.Client, "apikey", "big", map[string]interface{}{"metadata": metadataOf("i", 16, 500)})
		require.Len(t, strMap(t, k.Secret.Data, "metadata"), 32)
		requireCode(t, verifier, "apikey", k.Key, codeValid)
		s.MustCLI(t, root, "lease", "renew", k.LeaseID)
		s.MustCLI(t, root, "lease", "revoke", k.LeaseID)
		require.NoError(t, leaseGone(s.Client, k.LeaseID))
		requireCode(t, verifier, "apikey", k.Key, codeNotFound)
	})

	t.Run("rotation cannot take over another role's key", func(t *testing.T) {
		s.MustCLI(t, root, "write", "apikey/roles/demo", "scopes=read", "ttl=1h", "max_ttl=2h")
		s.MustCLI(t, root, "write", "apikey/roles/admin", "scopes=*", "ttl=1h", "max_ttl=2h")
		victim := issueCLI(t, s, root, "apikey", "admin")
		attacker := s.Token(t, s.WriteRolePolicy(t, "issuer", "demo"))
		own := issueCLI(t, s, attacker, "apikey", "demo")

		// The old operator path is gone; the role path refuses a key of another role,
		// whether the caller's policy lets it name a key_id (root here) or not.
		s.CLIFail(t, root, "write", "apikey/keys/"+victim.KeyID+"/rotate", "grace_period=0")
		e := s.CLIFail(t, root, "write", "apikey/creds/demo/rotate", "key_id="+victim.KeyID, "grace_period=0")
		require.Contains(t, e.Stderr, `role "demo" has no key`)
		require.NotContains(t, e.Stderr, "admin")
		requireCLIDenied(t, s.CLIFail(t, attacker, "write", "apikey/creds/demo/rotate", "key_id="+own.KeyID))
		requireCLIDenied(t, s.CLIFail(t, attacker, "write", "apikey/creds/admin/rotate", "api_key="+victim.Key))
		e = s.CLIFail(t, attacker, "write", "apikey/creds/demo/rotate", "api_key="+victim.Key)
		require.Contains(t, e.Stderr, `api_key: not a key of role "demo"`)
		requireCode(t, verifier, "apikey", victim.Key, codeValid)

		// The issuer rotates its own key by proof of possession; the replacement's lease
		// lives under creds/demo, so the role's revoke prefix reaches it.
		sec := s.CLISecret(t, attacker, "write", "-format=json", "apikey/creds/demo/rotate", "api_key="+own.Key)
		repl := issuedFrom(t, sec)
		require.True(t, strings.HasPrefix(repl.LeaseID, "apikey/creds/demo/rotate/"), repl.LeaseID)
		requireCode(t, verifier, "apikey", repl.Key, codeValid)
		requireCode(t, verifier, "apikey", own.Key, codeExpired)
		s.MustCLI(t, root, "lease", "revoke", "-prefix", "apikey/creds/demo")
		requireCode(t, verifier, "apikey", repl.Key, codeNotFound)
		requireCode(t, verifier, "apikey", victim.Key, codeValid)
	})

	t.Run("role names are never case-folded", func(t *testing.T) {
		s.MustCLI(t, root, "write", "apikey/roles/root-only", "scopes=*", "ttl=1h")
		require.NoError(t, s.Client.Sys().PutPolicy("all-but-root-only", `
path "apikey/creds/*" { capabilities = ["read", "update"] }
path "apikey/creds/root-only" { capabilities = ["deny"] }
path "apikey/creds/root-only/*" { capabilities = ["deny"] }
`))
		token := s.Token(t, "all-but-root-only")
		requireCLIDenied(t, s.CLIFail(t, token, "read", "apikey/creds/root-only"))
		for _, spelling := range []string{"ROOT-ONLY", "Root-Only", "root-ONLY"} {
			e := s.CLIFail(t, token, "read", "apikey/creds/"+spelling)
			require.Contains(t, e.Stderr, "must be lowercase")
			require.NotContains(t, e.Stderr, "api_key")
		}
		list, err := s.Client.Logical().List("sys/leases/lookup/apikey/creds/")
		require.NoError(t, err)
		if list != nil {
			for _, prefix := range list.Data["keys"].([]interface{}) {
				require.Equal(t, strings.ToLower(prefix.(string)), prefix, "a lease under a folded role name")
			}
		}
	})

	t.Run("the issuer cannot override the role's metadata", func(t *testing.T) {
		s.MustCLI(t, root, "write", "apikey/roles/tenant", "scopes=a", "ttl=1h", "metadata=tenant=acme")
		e := s.CLIFail(t, root, "write", "apikey/creds/tenant", "metadata=tenant=evil")
		require.Contains(t, e.Stderr, `metadata: "tenant" is set by the role`)
		k := issueCLI(t, s, root, "apikey", "tenant", "metadata=host=h1")
		r := requireCode(t, verifier, "apikey", k.Key, codeValid)
		require.Equal(t, map[string]string{"tenant": "acme", "host": "h1"}, strMap(t, r.Data, "metadata"))
	})
}

// TestIssuerPolicyIsPerRole: the shipped issuer policy, loaded for one role, issues,
// rotates (by possession) and revokes that role's keys and nothing of another role's.
func TestIssuerPolicyIsPerRole(t *testing.T) {
	t.Parallel()
	s := Setup(t)
	root := s.RootToken
	verifier := s.NewClient(t, s.VerifierToken(t))
	for _, role := range []string{"demo", "other"} {
		s.MustCLI(t, root, "write", "apikey/roles/"+role, "scopes=a", "ttl=1h", "max_ttl=2h")
	}
	token := s.Token(t, s.WriteRolePolicy(t, "issuer", "demo"))
	issuer := s.NewClient(t, token)

	mine := issueCLI(t, s, token, "apikey", "demo")
	theirs := issueCLI(t, s, root, "apikey", "other")
	_, err := issuer.Logical().Read("apikey/creds/other")
	requireForbidden(t, err)
	_, err = issuer.Logical().Write("apikey/creds/other/rotate", map[string]interface{}{"api_key": theirs.Key})
	requireForbidden(t, err)

	// Revoke: its own role's leases, not another role's (nor a prefix).
	requireCLIDenied(t, s.CLIFail(t, token, "lease", "revoke", theirs.LeaseID))
	requireCLIDenied(t, s.CLIFail(t, token, "lease", "revoke", "-prefix", "apikey/creds/demo"))
	requireCode(t, verifier, "apikey", theirs.Key, codeValid)
	// The path form with another role's lease in the body (Vault reads the body first).
	_, err = issuer.Logical().Write("sys/leases/revoke/"+mine.LeaseID, map[string]interface{}{"lease_id": theirs.LeaseID})
	requireForbidden(t, err)
	_, err = issuer.Logical().Write("sys/leases/revoke", map[string]interface{}{"lease_id": theirs.LeaseID})
	requireForbidden(t, err)
	requireCode(t, verifier, "apikey", theirs.Key, codeValid)
	s.MustCLI(t, token, "lease", "renew", mine.LeaseID)
	s.MustCLI(t, token, "lease", "revoke", mine.LeaseID)
	requireCode(t, verifier, "apikey", mine.Key, codeNotFound)

	// A rotated key's lease is revocable by the same grant.
	k := issueAPI(t, issuer, "apikey", "demo", nil)
	sec, err := issuer.Logical().Write("apikey/creds/demo/rotate", map[string]interface{}{"api_key": k.Key})
	require.NoError(t, err)
	repl := issuedFrom(t, sec)
	require.NoError(t, issuer.Sys().Revoke(repl.LeaseID))
	requireCode(t, verifier, "apikey", repl.Key, codeNotFound)

	// The verifier token holds nothing but verify.
	vsec, err := s.Client.Auth().Token().Lookup(verifier.Token())
	require.NoError(t, err)
	require.Equal(t, []interface{}{"verifier"}, vsec.Data["policies"])
	_, err = verifier.Logical().Read("auth/token/lookup-self")
	requireForbidden(t, err)
	_, err = verifier.Logical().Write("auth/token/renew-self", nil)
	require.NoError(t, err, "a periodic verifier token renews itself")
}
