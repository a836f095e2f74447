//go:build integration

package integration

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestLeases: every key is a Vault lease; the lease's end is the key's end.
func TestLeases(t *testing.T) {
	t.Parallel()
	s := Setup(t)
	root := s.RootToken
	verifier := s.NewClient(t, s.VerifierToken(t))

	t.Run("renew is capped at max_ttl", func(t *testing.T) {
		const maxTTL = 8
		s.MustCLI(t, root, "write", "apikey/roles/renew", "scopes=a", "ttl=3s", "max_ttl="+strconv.Itoa(maxTTL)+"s")
		start := time.Now()
		k := issueCLI(t, s, root, "apikey", "renew")
		require.EqualValues(t, 3, k.Secret.LeaseDuration)
		issuedExpiry := timeField(t, k.Secret.Data, "expires_at")

		sec := s.CLISecret(t, root, "lease", "renew", "-format=json", "-increment=1h", k.LeaseID)
		require.Equal(t, k.LeaseID, sec.LeaseID)
		require.LessOrEqual(t, sec.LeaseDuration, maxTTL, "renewal beyond max_ttl")
		require.GreaterOrEqual(t, sec.LeaseDuration, maxTTL-3, "renewal should extend up to max_ttl")

		// The key's own expiry follows the lease.
		keySec, err := s.Client.Logical().Read("apikey/keys/" + k.KeyID)
		require.NoError(t, err)
		require.NotNil(t, keySec)
		renewedExpiry := timeField(t, keySec.Data, "expires_at")
		require.True(t, renewedExpiry.After(issuedExpiry), "expires_at not extended by the renewal: %s", renewedExpiry)
		require.WithinDuration(t, start.Add(maxTTL*time.Second), renewedExpiry, 2*time.Second)

		// Renewing again through the API cannot go past max_ttl either.
		again, err := s.Client.Sys().Renew(k.LeaseID, 3600)
		require.NoError(t, err)
		require.LessOrEqual(t, again.LeaseDuration, maxTTL)

		requireCode(t, verifier, "apikey", k.Key, codeValid)
		// At max_ttl the lease ends and the key with it.
		eventually(t, maxTTL*time.Second+15*time.Second, func() error { return leaseGone(s.Client, k.LeaseID) })
		eventuallyCode(t, verifier, "apikey", k.Key, 5*time.Second, codeNotFound)
	})

	t.Run("lease revoke", func(t *testing.T) {
		s.MustCLI(t, root, "write", "apikey/roles/rev", "scopes=a", "ttl=1h", "max_ttl=2h")
		k := issueCLI(t, s, root, "apikey", "rev")
		other := issueCLI(t, s, root, "apikey", "rev")
		requireCode(t, verifier, "apikey", k.Key, codeValid)

		s.MustCLI(t, root, "lease", "revoke", k.LeaseID)
		eventuallyCode(t, verifier, "apikey", k.Key, 10*time.Second, codeNotFound)
		require.NoError(t, leaseGone(s.Client, k.LeaseID))
		sec, err := s.Client.Logical().Read("apikey/keys/" + k.KeyID)
		require.NoError(t, err)
		require.Nil(t, sec, "record of a revoked key still readable")

		requireCode(t, verifier, "apikey", other.Key, codeValid)
	})

	t.Run("lease revoke -prefix", func(t *testing.T) {
		s.MustCLI(t, root, "write", "apikey/roles/bulk", "scopes=a", "ttl=1h", "max_ttl=2h")
		s.MustCLI(t, root, "write", "apikey/roles/keep", "scopes=a", "ttl=1h", "max_ttl=2h")
		var bulk []issued
		for i := 0; i < 3; i++ {
			bulk = append(bulk, issueCLI(t, s, root, "apikey", "bulk"))
		}
		keep := issueCLI(t, s, root, "apikey", "keep")

		s.MustCLI(t, root, "lease", "revoke", "-prefix", "apikey/creds/bulk")
		for _, k := range bulk {
			eventuallyCode(t, verifier, "apikey", k.Key, 10*time.Second, codeNotFound)
			require.NoError(t, leaseGone(s.Client, k.LeaseID))
		}
		list, err := s.Client.Logical().List("sys/leases/lookup/apikey/creds/bulk")
		require.NoError(t, err)
		if list != nil {
			require.Empty(t, list.Data["keys"], "leases left under the revoked prefix")
		}
		requireCode(t, verifier, "apikey", keep.Key, codeValid)
	})

	t.Run("TTL expiry", func(t *testing.T) {
		s.MustCLI(t, root, "write", "apikey/roles/ttl", "scopes=a", "ttl=1h", "max_ttl=2h")
		k := issueCLI(t, s, root, "apikey", "ttl", "ttl=2s")
		require.EqualValues(t, 2, k.Secret.LeaseDuration)
		requireCode(t, verifier, "apikey", k.Key, codeValid)

		eventually(t, 20*time.Second, func() error { return leaseGone(s.Client, k.LeaseID) })
		r := verifyKey(t, verifier, "apikey", k.Key)
		require.Contains(t, []string{codeNotFound, codeExpired}, r.Code)
		require.False(t, r.Valid)
		_, err := s.CLI(root, "lease", "lookup", k.LeaseID)
		require.Error(t, err, "`vault lease lookup` of an expired lease")
	})

	t.Run("revoking the token revokes its keys", func(t *testing.T) {
		s.MustCLI(t, root, "write", "apikey/roles/tok", "scopes=a", "ttl=1h", "max_ttl=2h")
		issuerToken := s.Token(t, s.WriteRolePolicy(t, "issuer", "tok"))
		k := issueCLI(t, s, issuerToken, "apikey", "tok")
		byRoot := issueCLI(t, s, root, "apikey", "tok")
		requireCode(t, verifier, "apikey", k.Key, codeValid)

		s.MustCLI(t, root, "token", "revoke", issuerToken)
		eventuallyCode(t, verifier, "apikey", k.Key, 15*time.Second, codeNotFound)
		eventually(t, 5*time.Second, func() error { return leaseGone(s.Client, k.LeaseID) })
		requireCode(t, verifier, "apikey", byRoot.Key, codeValid)
	})
}

// TestSecretsDisable: disabling the mount revokes every key; a mount enabled again at the
// same path knows none of the old keys.
func TestSecretsDisable(t *testing.T) {
	t.Parallel()
	s := Setup(t)
	root := s.RootToken
	s.MustCLI(t, root, "write", "apikey/roles/app", "scopes=a", "ttl=1h", "max_ttl=2h")
	k1 := issueCLI(t, s, root, "apikey", "app")
	k2 := issueCLI(t, s, root, "apikey", "app", "ttl=10m")
	requireCode(t, s.Client, "apikey", k1.Key, codeValid)

	s.MustCLI(t, root, "secrets", "disable", "apikey")
	for _, k := range []issued{k1, k2} {
		require.NoError(t, leaseGone(s.Client, k.LeaseID), "lease survived secrets disable")
	}
	_, err := s.Client.Logical().Write("apikey/verify", map[string]interface{}{"api_key": k1.Key})
	require.Error(t, err, "verify answered with the mount disabled")

	s.EnablePlugin(t, "apikey")
	for _, k := range []issued{k1, k2} {
		r := verifyKey(t, s.Client, "apikey", k.Key)
		require.Contains(t, []string{codeMalformed, codeNotFound}, r.Code, "old key in the new mount: %v", r.Data)
		require.False(t, r.Valid)
	}
	list, err := s.Client.Logical().List("apikey/keys")
	require.NoError(t, err)
	if list != nil {
		require.Empty(t, list.Data["keys"])
	}
	role, err := s.Client.Logical().Read("apikey/roles/app")
	require.NoError(t, err)
	require.Nil(t, role, "roles of the disabled mount came back")

	// The new mount works.
	s.MustCLI(t, root, "write", "apikey/roles/app", "scopes=a", "ttl=1h", "max_ttl=2h")
	k3 := issueCLI(t, s, root, "apikey", "app")
	requireCode(t, s.Client, "apikey", k3.Key, codeValid)
}
