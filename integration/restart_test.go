//go:build integration

package integration

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRestart: a non-dev server with integrated storage (single raft node), unsealed
// from a key file. Keys survive a restart; a key whose lease ends while the server is
// down is revoked after the restart.
func TestRestart(t *testing.T) {
	t.Parallel()
	s := StartRaftServer(t)
	root := s.RootToken
	s.RegisterPlugin(t)
	s.EnablePlugin(t, "apikey")
	verifierToken := s.VerifierToken(t)

	s.MustCLI(t, root, "write", "apikey/roles/app", "scopes=orders:read,orders:write", "ttl=1h", "max_ttl=24h")
	long := issueCLI(t, s, root, "apikey", "app")
	narrowed := issueCLI(t, s, root, "apikey", "app", "scopes=orders:read", "name=narrow")
	disabled := issueCLI(t, s, root, "apikey", "app")
	s.MustCLI(t, root, "write", "apikey/keys/"+disabled.KeyID, "disabled=true")
	short := issueCLI(t, s, root, "apikey", "app", "ttl=5s")
	shortExpiry := timeField(t, short.Secret.Data, "expires_at")

	verifier := s.NewClient(t, verifierToken)
	requireCode(t, verifier, "apikey", long.Key, codeValid)
	requireCode(t, verifier, "apikey", short.Key, codeValid)

	s.Stop(t)
	// Stay down until the short lease has ended.
	time.Sleep(time.Until(shortExpiry.Add(time.Second)))
	s.StartAgain(t)
	s.WaitPluginReady(t, "apikey")

	// Tokens and policies persisted too: the verifier token still works.
	verifier = s.NewClient(t, verifierToken)

	t.Run("keys survive", func(t *testing.T) {
		eventuallyCode(t, verifier, "apikey", long.Key, 30*time.Second, codeValid)
		r := requireCode(t, verifier, "apikey", narrowed.Key, codeValid, "orders:read")
		require.Equal(t, "narrow", str(t, r.Data, "name"))
		requireCode(t, verifier, "apikey", narrowed.Key, codeInsufficientScope, "orders:write")
		requireCode(t, verifier, "apikey", disabled.Key, codeDisabled)
		_, err := s.Client.Sys().Lookup(long.LeaseID)
		require.NoError(t, err, "lease of a live key lost in the restart")
	})

	t.Run("lease that ended while down is revoked", func(t *testing.T) {
		r := verifyKey(t, verifier, "apikey", short.Key)
		t.Logf("right after the restart, the key whose lease ended while down verifies %s", r.Code)
		require.False(t, r.Valid, "a key whose lease ended while the server was down verified %s", r.Code)
		eventually(t, 60*time.Second, func() error { return leaseGone(s.Client, short.LeaseID) })
		eventuallyCode(t, verifier, "apikey", short.Key, 10*time.Second, codeNotFound)
	})

	t.Run("still issues and revokes", func(t *testing.T) {
		k := issueCLI(t, s, root, "apikey", "app")
		requireCode(t, verifier, "apikey", k.Key, codeValid)
		s.MustCLI(t, root, "lease", "revoke", long.LeaseID)
		eventuallyCode(t, verifier, "apikey", long.Key, 10*time.Second, codeNotFound)
	})
}
