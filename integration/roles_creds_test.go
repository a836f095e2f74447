//go:build integration

package integration

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRoles(t *testing.T) {
	t.Parallel()
	s := Setup(t)
	root := s.RootToken

	t.Run("cli", func(t *testing.T) {
		s.MustCLI(t, root, "write", "apikey/roles/web", "scopes=orders:read,orders:write", "ttl=1h", "max_ttl=24h")

		sec := s.CLISecret(t, root, "read", "-format=json", "apikey/roles/web")
		require.ElementsMatch(t, []string{"orders:read", "orders:write"}, strs(t, sec.Data, "scopes"))
		require.EqualValues(t, 3600, num(t, sec.Data, "ttl"))
		require.EqualValues(t, 86400, num(t, sec.Data, "max_ttl"))

		// An update changes only the fields it names.
		s.MustCLI(t, root, "write", "apikey/roles/web", "ttl=2h")
		sec = s.CLISecret(t, root, "read", "-format=json", "apikey/roles/web")
		require.EqualValues(t, 7200, num(t, sec.Data, "ttl"))
		require.ElementsMatch(t, []string{"orders:read", "orders:write"}, strs(t, sec.Data, "scopes"))

		s.MustCLI(t, root, "write", "apikey/roles/batch", "scopes=reports:*", "ttl=10m", "max_ttl=1h")
	})

	t.Run("cli list", func(t *testing.T) {
		out := s.MustCLI(t, root, "list", "apikey/roles")
		require.Contains(t, out, "web")
		require.Contains(t, out, "batch")
	})

	t.Run("cli delete", func(t *testing.T) {
		s.MustCLI(t, root, "delete", "apikey/roles/batch")
		e := s.CLIFail(t, root, "read", "apikey/roles/batch")
		require.Equal(t, 2, e.ExitCode, "`vault read` of a missing path exits 2: %v", e)
		out := s.MustCLI(t, root, "list", "apikey/roles")
		require.NotContains(t, out, "batch")
	})

	t.Run("api", func(t *testing.T) {
		c := s.Client
		_, err := c.Logical().Write("apikey/roles/svc", map[string]interface{}{
			"scopes":   []string{"users:read", "users:*"},
			"ttl":      "15m",
			"max_ttl":  7200,
			"metadata": map[string]string{"team": "payments", "env": "test"},
		})
		require.NoError(t, err)

		sec, err := c.Logical().Read("apikey/roles/svc")
		require.NoError(t, err)
		require.NotNil(t, sec)
		require.ElementsMatch(t, []string{"users:read", "users:*"}, strs(t, sec.Data, "scopes"))
		require.EqualValues(t, 900, num(t, sec.Data, "ttl"))
		require.EqualValues(t, 7200, num(t, sec.Data, "max_ttl"))
		require.Equal(t, map[string]string{"team": "payments", "env": "test"}, strMap(t, sec.Data, "metadata"))

		list, err := c.Logical().List("apikey/roles")
		require.NoError(t, err)
		require.NotNil(t, list)
		require.Contains(t, list.Data["keys"], "svc")

		_, err = c.Logical().Delete("apikey/roles/svc")
		require.NoError(t, err)
		sec, err = c.Logical().Read("apikey/roles/svc")
		require.NoError(t, err)
		require.Nil(t, sec, "deleted role still readable")
	})
}

func TestCreds(t *testing.T) {
	t.Parallel()
	s := Setup(t)
	root := s.RootToken
	s.MustCLI(t, root, "write", "apikey/roles/web", "scopes=orders:read,orders:write,users:read", "ttl=1h", "max_ttl=24h")

	t.Run("read issues with the role's defaults", func(t *testing.T) {
		before := time.Now()
		k := issueCLI(t, s, root, "apikey", "web")
		d := k.Secret.Data
		requireWellFormed(t, k.Key, k.KeyID)
		require.Equal(t, "web", str(t, d, "role"))
		require.Contains(t, d, "name")
		require.Contains(t, d, "metadata")
		require.ElementsMatch(t, []string{"orders:read", "orders:write", "users:read"}, strs(t, d, "scopes"))
		exp := timeField(t, d, "expires_at")
		require.WithinDuration(t, before.Add(time.Hour), exp, time.Minute, "expires_at")

		require.Regexp(t, `^apikey/creds/web/`, k.LeaseID)
		require.EqualValues(t, 3600, k.Secret.LeaseDuration)
		require.True(t, k.Secret.Renewable, "keys are renewable leases")

		// Two issues give two different keys.
		k2 := issueCLI(t, s, root, "apikey", "web")
		require.NotEqual(t, k.Key, k2.Key)
		require.NotEqual(t, k.KeyID, k2.KeyID)
	})

	t.Run("write narrows scopes, ttl, name, metadata", func(t *testing.T) {
		k := issueCLI(t, s, root, "apikey", "web", "scopes=orders:read", "name=ci-job", "ttl=10m")
		d := k.Secret.Data
		require.Equal(t, []string{"orders:read"}, strs(t, d, "scopes"), "narrowed scopes")
		require.Equal(t, "ci-job", str(t, d, "name"))
		require.EqualValues(t, 600, k.Secret.LeaseDuration, "narrowed ttl")

		k = issueAPI(t, s.Client, "apikey", "web", map[string]interface{}{
			"scopes":   []string{"orders:read", "users:read"},
			"metadata": map[string]string{"ticket": "T-1"},
		})
		require.ElementsMatch(t, []string{"orders:read", "users:read"}, strs(t, k.Secret.Data, "scopes"))
		require.Equal(t, "T-1", strMap(t, k.Secret.Data, "metadata")["ticket"])
	})

	t.Run("write with scopes outside the role is refused", func(t *testing.T) {
		e := s.CLIFail(t, root, "write", "apikey/creds/web", "scopes=orders:read,admin:all")
		require.Contains(t, e.Stderr, "400", "%v", e)

		_, err := s.Client.Logical().Write("apikey/creds/web", map[string]interface{}{"scopes": []string{"orders:delete"}})
		requireStatus(t, err, 400)
	})

	t.Run("unknown role", func(t *testing.T) {
		_, err := s.CLI(root, "read", "apikey/creds/nope")
		require.Error(t, err)
	})

	t.Run("issuer policy can read and write creds", func(t *testing.T) {
		issuer := s.Token(t, s.WriteRolePolicy(t, "issuer", "web"))
		k := issueCLI(t, s, issuer, "apikey", "web")
		require.Regexp(t, defaultKeyRE, k.Key)
		k = issueCLI(t, s, issuer, "apikey", "web", "scopes=users:read")
		require.Equal(t, []string{"users:read"}, strs(t, k.Secret.Data, "scopes"))
	})
}
