//go:build integration

package integration

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestHarness checks the harness on its own: a dev server starts, serves a builtin
// engine, and stops.
func TestHarness(t *testing.T) {
	t.Parallel()
	s := StartDevServer(t)
	s.MustCLI(t, s.RootToken, "secrets", "enable", "-path=kvtest", "kv")
	_, err := s.Client.Logical().Write("kvtest/hello", map[string]interface{}{"a": "b"})
	require.NoError(t, err)
	sec, err := s.Client.Logical().Read("kvtest/hello")
	require.NoError(t, err)
	require.Equal(t, "b", sec.Data["a"])
	s.Stop(t)
	_, err = s.Client.Sys().Health()
	require.Error(t, err, "server still answers after Stop")
}

// TestRegisterEnableTune: register with -sha256 and -version, enable without naming a
// version (the registered one is selected), tune the mount, path-help.
func TestRegisterEnableTune(t *testing.T) {
	t.Parallel()
	s := StartDevServer(t)
	root := s.RootToken

	t.Run("register", func(t *testing.T) {
		s.RegisterPlugin(t)
		out := s.MustCLI(t, root, "plugin", "info", "-format=json", "-version="+pluginVersion, "secret", pluginName)
		var info map[string]interface{}
		require.NoError(t, json.Unmarshal([]byte(out), &info), out)
		require.Equal(t, pluginSHA256, info["sha256"], "registered sha256")
		require.Equal(t, pluginVersion, info["version"], "registered version")
		require.Equal(t, pluginName, info["command"])

		out = s.MustCLI(t, root, "plugin", "list", "-format=json", "-detailed", "secret")
		require.Contains(t, out, pluginName)
	})

	t.Run("register refuses a version the binary does not report", func(t *testing.T) {
		e := s.CLIFail(t, root, "plugin", "register",
			"-sha256="+pluginSHA256, "-version=v99.0.0", "secret", pluginName)
		require.Contains(t, e.Stderr, "version", "%v", e)
	})

	t.Run("enable", func(t *testing.T) {
		s.MustCLI(t, root, "secrets", "enable", "-path=apikey", pluginName)
		s.WaitPluginReady(t, "apikey")

		mounts, err := s.Client.Sys().ListMounts()
		require.NoError(t, err)
		m, ok := mounts["apikey/"]
		require.True(t, ok, "apikey/ not mounted: %v", mounts)
		require.Equal(t, pluginName, m.Type)
		require.Equal(t, pluginVersion, m.PluginVersion, "the registered version is pinned")
		require.Equal(t, pluginVersion, m.RunningVersion, "running version reported by the plugin")
		require.Equal(t, pluginSHA256, m.RunningSha256)

		out := s.MustCLI(t, root, "secrets", "list", "-format=json", "-detailed")
		require.Contains(t, out, `"apikey/"`)
	})

	t.Run("tune", func(t *testing.T) {
		s.MustCLI(t, root, "secrets", "tune",
			"-default-lease-ttl=30m", "-max-lease-ttl=12h", "-description=API keys", "apikey/")
		sec := s.CLISecret(t, root, "read", "-format=json", "sys/mounts/apikey/tune")
		require.EqualValues(t, 1800, num(t, sec.Data, "default_lease_ttl"))
		require.EqualValues(t, 43200, num(t, sec.Data, "max_lease_ttl"))
		require.Equal(t, "API keys", str(t, sec.Data, "description"))

		// The engine still serves after the tune, and the mount TTLs apply to roles
		// without their own.
		s.MustCLI(t, root, "write", "apikey/roles/tuned", "scopes=a")
		k := issueCLI(t, s, root, "apikey", "tuned")
		require.EqualValues(t, 1800, k.Secret.LeaseDuration, "lease TTL defaults to the mount's")
	})

	t.Run("path-help", func(t *testing.T) {
		out := s.MustCLI(t, root, "path-help", "apikey/verify")
		require.NotEmpty(t, strings.TrimSpace(out))
		require.Contains(t, out, "api_key")
		out = s.MustCLI(t, root, "path-help", "apikey/")
		require.NotEmpty(t, strings.TrimSpace(out))
	})
}
