//go:build unix

package vaulttest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// cleanupList is a Cleaner that only records.
type cleanupList []func()

func (c *cleanupList) Cleanup(fn func()) { *c = append(*c, fn) }

func TestNewServerPreparesItsDirectory(t *testing.T) {
	pluginBin := filepath.Join(t.TempDir(), "plugin-build")
	require.NoError(t, os.WriteFile(pluginBin, []byte("plugin"), 0o755))
	plugin, err := NewSecretsPlugin(PluginName, pluginBin, "v1.2.3")
	require.NoError(t, err)
	require.Equal(t, "secret", plugin.Type)
	require.Len(t, plugin.SHA256, 64)

	var cleanups cleanupList
	dir := filepath.Join(t.TempDir(), "node0")
	s, err := NewServer(ServerOptions{VaultBin: "/bin/true", Dir: dir, Plugins: []Plugin{plugin}, Cleaner: &cleanups})
	require.NoError(t, err)
	require.Len(t, cleanups, 1, "the server's kill is registered before anything starts")
	copied, err := FileSHA256(filepath.Join(s.PluginDir, PluginName))
	require.NoError(t, err)
	require.Equal(t, plugin.SHA256, copied)
	require.DirExists(t, s.DataDir)
	require.Equal(t, filepath.Join(dir, "vault.hcl"), s.ConfigPath)
	require.Equal(t, filepath.Join(dir, "init.json"), s.InitPath)
	cleanups[0]() // nothing started: nothing to kill

	require.NoError(t, s.PickPorts())
	cfg := s.RaftConfig("node7", "  retry_join {}\n")
	for _, want := range []string{
		"disable_mlock    = true",
		`node_id = "node7"`,
		"  retry_join {}\n}",
		`plugin_directory = "` + s.PluginDir + `"`,
		`log_level        = "debug"`,
		`address         = "127.0.0.1:` + strings.TrimPrefix(s.Addr, "http://127.0.0.1:") + `"`,
	} {
		require.Contains(t, cfg, want)
	}
	require.Equal(t, s.Port+1, s.ClusterPort)
}

func TestNewServerNeedsItsOptions(t *testing.T) {
	for name, opts := range map[string]ServerOptions{
		"vault":   {Dir: t.TempDir(), Cleaner: &cleanupList{}},
		"dir":     {VaultBin: "/bin/true", Cleaner: &cleanupList{}},
		"cleaner": {VaultBin: "/bin/true", Dir: t.TempDir()},
	} {
		_, err := NewServer(opts)
		require.Error(t, err, name)
	}
}

func TestSetInitTakesTheKeyAndToken(t *testing.T) {
	s, err := NewServer(ServerOptions{VaultBin: "/bin/true", Dir: t.TempDir(), Cleaner: t})
	require.NoError(t, err)
	s.Addr = "http://127.0.0.1:1"
	require.NoError(t, s.SetInit(`{"unseal_keys_b64": ["a2V5"], "root_token": "hvs.root"}`))
	require.Equal(t, "a2V5", s.UnsealKey)
	require.Equal(t, "hvs.root", s.RootToken)
	require.Equal(t, "hvs.root", s.Client.Token())
	b, err := os.ReadFile(s.InitPath)
	require.NoError(t, err)
	require.Contains(t, string(b), "hvs.root")

	require.Error(t, s.SetInit(`{"unseal_keys_b64": ["a", "b"], "root_token": "x"}`), "two key shares")
	require.Error(t, s.SetInit(`not json`))
}

func TestCLIRunsWithTheServersEnvironment(t *testing.T) {
	t.Setenv(fakeEnv, "cli")
	t.Setenv("VAULT_NAMESPACE", "someone-elses")
	s, err := NewServer(ServerOptions{VaultBin: selfBin(t), Dir: t.TempDir(), Dev: true, Cleaner: t})
	require.NoError(t, err)
	s.Addr = "http://127.0.0.1:1"

	out, err := s.CLI(context.Background(), "tok", "read", "sys/health")
	require.NoError(t, err)
	require.Contains(t, out, "args read sys/health\n")
	require.Contains(t, out, "home "+s.Dir+" addr http://127.0.0.1:1 token tok namespace \n")

	t.Setenv("FAKE_CLI_EXIT", "2")
	out, err = s.CLI(context.Background(), "", "write", "x")
	var ce *CLIError
	require.True(t, errors.As(err, &ce), "%v", err)
	require.Equal(t, 2, ce.ExitCode)
	require.Equal(t, []string{"write", "x"}, ce.Args)
	require.Contains(t, ce.Stderr, "failing on purpose")
	require.Equal(t, out, ce.Stdout)
	require.Contains(t, ce.Stdout, "token  namespace")
}

func TestWaitReadyNeedsARunningServer(t *testing.T) {
	s, err := NewServer(ServerOptions{VaultBin: "/bin/true", Dir: t.TempDir(), Dev: true, Cleaner: t})
	require.NoError(t, err)
	require.Error(t, s.WaitReady(context.Background(), IsActive))
	require.Error(t, s.StartRaft(context.Background()), "StartRaft on a dev server")
	require.NoError(t, s.Stop(0), "stopping a server that never started")
}
