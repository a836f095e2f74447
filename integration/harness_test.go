//go:build integration

// Package integration runs the plugin inside a real Vault server: the server binary from
// $VAULT_BIN, the plugin binary from $PLUGIN_BIN, the gateway from $GATEWAY_BIN and the
// dashboard from $DASHBOARD_BIN (all set by `make integration-test`), driven through the
// official API client and the real `vault` CLI (and a real Chromium for the dashboard).
// $TESTCLOCK_PLUGIN_BIN is the same plugin built with the testclock tag
// (a test/clock path that moves the engine's clock), used only by the tests that script
// time (SetupWithClock); every other test runs the shipped binary. Servers and gateways
// are started by internal/vaulttest; this file wraps it for tests (t.Fatal on error,
// t.Cleanup for the kill, the server log in the test log of a failed test).
package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	apikey "github.com/vault-apikey/vault-plugin-secrets-apikey"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/vaulttest"
)

const (
	pluginName = vaulttest.PluginName
	// testclockPluginName is the catalog name of the testclock build of the plugin.
	testclockPluginName = vaulttest.PluginName + "-testclock"
	// cliTimeout bounds every single `vault` CLI invocation.
	cliTimeout = 60 * time.Second
	// startTimeout bounds server start-up (and unseal / leader election).
	startTimeout = 90 * time.Second
)

var (
	vaultBin      string           // Vault server (and CLI) binary
	gatewayBin    string           // apikey-gateway binary
	dashboardBin  string           // apikey-dashboard binary
	plugin        vaulttest.Plugin // the plugin binary under test, as registered
	pluginSHA256  string           // of plugin.Bin
	pluginVersion string           // registered version, must match the plugin's RunningVersion
	policyDir     string           // ../policies

	// testclockPlugin is the plugin built with -tags testclock (test/clock moves its
	// clock), registered under testclockPluginName with the same version. Only tests
	// that script time use it (SetupWithClock); it is never released.
	testclockPlugin vaulttest.Plugin
)

func TestMain(m *testing.M) {
	if err := setup(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: %v\n", err)
		fmt.Fprintln(os.Stderr, "integration: run `make integration-test` (it builds the plugins, the gateway and the dashboard and sets all five), or set VAULT_BIN (a Vault server binary, see scripts/vault-bin.sh), PLUGIN_BIN, GATEWAY_BIN and DASHBOARD_BIN (the plugin, gateway and dashboard binaries from `make build`) and TESTCLOCK_PLUGIN_BIN (the plugin built with `go build -tags testclock`, see the Makefile)")
		os.Exit(2)
	}
	os.Exit(m.Run())
}

func setup() error {
	var err error
	// go test runs in integration/: a relative path given from the repository root
	// (PLUGIN_BIN=bin/...) is found there too.
	if vaultBin, err = vaulttest.ExecutableFromEnv("VAULT_BIN", ".."); err != nil {
		return err
	}
	pluginBin, err := vaulttest.ExecutableFromEnv("PLUGIN_BIN", "..")
	if err != nil {
		return err
	}
	if gatewayBin, err = vaulttest.ExecutableFromEnv("GATEWAY_BIN", ".."); err != nil {
		return err
	}
	if dashboardBin, err = vaulttest.ExecutableFromEnv("DASHBOARD_BIN", ".."); err != nil {
		return err
	}
	testclockBin, err := vaulttest.ExecutableFromEnv("TESTCLOCK_PLUGIN_BIN", "..")
	if err != nil {
		return err
	}
	// A binary built by `make build` reports the version this test was compiled with;
	// PLUGIN_VERSION is for one stamped with another (make release).
	pluginVersion = os.Getenv("PLUGIN_VERSION")
	if pluginVersion == "" {
		pluginVersion = apikey.Version
	}
	if !strings.HasPrefix(pluginVersion, "v") {
		pluginVersion = "v" + pluginVersion
	}
	if plugin, err = vaulttest.NewSecretsPlugin(pluginName, pluginBin, pluginVersion); err != nil {
		return err
	}
	pluginSHA256 = plugin.SHA256
	if testclockPlugin, err = vaulttest.NewSecretsPlugin(testclockPluginName, testclockBin, pluginVersion); err != nil {
		return err
	}
	if policyDir, err = filepath.Abs("../policies"); err != nil {
		return err
	}
	if _, err := os.Stat(policyDir); err != nil {
		return fmt.Errorf("policy directory: %w", err)
	}
	return nil
}

// Server is one Vault server process run by a test: a vaulttest.Server whose methods
// that can fail take t and fail the test.
type Server struct {
	*vaulttest.Server
}

// newServer prepares a server in a temp dir of t with a copy of the plugin binaries; it
// (and its plugin processes) is always killed in t.Cleanup, and a failed test gets the
// tail of its log.
func newServer(t *testing.T, dev bool) *Server {
	t.Helper()
	vs, err := vaulttest.NewServer(vaulttest.ServerOptions{
		VaultBin:     vaultBin,
		Dir:          t.TempDir(),
		Dev:          dev,
		Plugins:      []vaulttest.Plugin{plugin, testclockPlugin},
		LogLevel:     "debug",
		ReadyTimeout: startTimeout,
		CLITimeout:   cliTimeout,
		Cleaner:      t,
		Logf:         t.Logf,
	})
	require.NoError(t, err)
	s := &Server{Server: vs}
	// Registered after the server's kill, so it runs before it: the log is complete
	// either way, since a failed test has stopped using the server.
	t.Cleanup(func() {
		if t.Failed() {
			s.dumpLog(t)
		}
	})
	return s
}

// StartDevServer starts `vault server -dev` on a free 127.0.0.1 port with a plugin
// directory holding a copy of the plugin binary. The server (and its plugin processes) is
// always killed in t.Cleanup.
func StartDevServer(t *testing.T) *Server {
	t.Helper()
	s := newServer(t, true)
	require.NoError(t, s.Server.StartDev(context.Background()))
	return s
}

// StartRaftServer starts a non-dev server with integrated storage (single raft node),
// initialises it (1 key share, saved to InitPath) and unseals it.
func StartRaftServer(t *testing.T) *Server {
	t.Helper()
	s := newServer(t, false)
	require.NoError(t, s.Server.StartRaft(context.Background()))
	return s
}

// Unseal reads the unseal key from InitPath (as an operator would from a file) and
// unseals the server, then waits until it is the active node.
func (s *Server) Unseal(t *testing.T) {
	t.Helper()
	require.NoError(t, s.Server.Unseal(context.Background()))
}

// Restart stops the server with SIGTERM and starts it again with the same config and
// data (raft servers only; the server comes back sealed and is unsealed here).
func (s *Server) Restart(t *testing.T) {
	t.Helper()
	require.False(t, s.Dev, "a dev server keeps everything in memory and cannot be restarted")
	s.Stop(t)
	s.StartAgain(t)
}

// StartAgain starts a stopped raft server on the same ports and data dir and unseals it.
func (s *Server) StartAgain(t *testing.T) {
	t.Helper()
	require.NoError(t, s.Server.StartAgain(context.Background()))
}

// NewClient returns an API client for this server authenticated with token.
func (s *Server) NewClient(t *testing.T, token string) *api.Client {
	t.Helper()
	c, err := s.Server.NewClient(token)
	require.NoError(t, err)
	return c
}

// Stop shuts the server down with SIGTERM (as an operator would) and waits for it; if
// it does not exit within 30 s, the whole process group is killed and the test fails.
func (s *Server) Stop(t *testing.T) {
	t.Helper()
	if err := s.Server.Stop(30 * time.Second); err != nil {
		t.Error(err)
	}
}

// dumpLog writes the tail of the server log to the test log.
func (s *Server) dumpLog(t *testing.T) {
	t.Helper()
	const maxLines = 80
	t.Logf("---- last %d lines of the vault server log %s ----\n%s\n---- end of server log ----",
		maxLines, s.LogPath, s.LogTail(maxLines))
}

// CLIError is a failed `vault` CLI invocation.
type CLIError = vaulttest.CLIError

// CLI runs the real `vault` CLI against this server with token ("" = none) and returns
// its stdout; a non-zero exit is a *CLIError carrying stderr.
func (s *Server) CLI(token string, args ...string) (string, error) {
	return s.Server.CLI(context.Background(), token, args...)
}

// MustCLI is CLI that fails the test on error.
func (s *Server) MustCLI(t *testing.T, token string, args ...string) string {
	t.Helper()
	out, err := s.CLI(token, args...)
	require.NoError(t, err)
	return out
}

// CLIFail runs the CLI expecting a failure and returns the error.
func (s *Server) CLIFail(t *testing.T, token string, args ...string) *CLIError {
	t.Helper()
	out, err := s.CLI(token, args...)
	require.Error(t, err, "expected `vault %s` to fail; stdout: %s", strings.Join(args, " "), out)
	var ce *CLIError
	require.ErrorAs(t, err, &ce)
	return ce
}

// CLISecret runs a CLI command whose -format=json output is a secret (read, write, ...).
// The caller includes -format=json in args.
func (s *Server) CLISecret(t *testing.T, token string, args ...string) *api.Secret {
	t.Helper()
	out := s.MustCLI(t, token, args...)
	sec, err := api.ParseSecret(strings.NewReader(out))
	require.NoError(t, err, "parsing output of vault %s: %s", strings.Join(args, " "), out)
	require.NotNil(t, sec, "vault %s printed no secret", strings.Join(args, " "))
	return sec
}

// RegisterPlugin registers the plugin binary with its sha256 and version, as an
// operator would.
func (s *Server) RegisterPlugin(t *testing.T) {
	t.Helper()
	require.NoError(t, s.Server.RegisterPlugin(context.Background(), plugin))
}

// EnablePlugin enables the (registered) plugin at path and waits until it answers.
func (s *Server) EnablePlugin(t *testing.T, path string) {
	t.Helper()
	require.NoError(t, s.Server.EnablePlugin(context.Background(), pluginName, path))
	s.WaitPluginReady(t, path)
}

// WaitPluginReady waits until the mount at path serves requests.
func (s *Server) WaitPluginReady(t *testing.T, path string) {
	t.Helper()
	require.NoError(t, s.Server.WaitPluginReady(context.Background(), path))
}

// Setup is StartDevServer + RegisterPlugin + EnablePlugin at "apikey".
func Setup(t *testing.T) *Server {
	t.Helper()
	s := StartDevServer(t)
	s.RegisterPlugin(t)
	s.EnablePlugin(t, "apikey")
	return s
}

// SetupWithClock is StartDevServer, then the testclock build of the plugin registered
// (as testclockPluginName) and enabled at "apikey": its test/clock path moves the
// engine's clock (see SetClock). The shipped plugin is not registered.
func SetupWithClock(t *testing.T) *Server {
	t.Helper()
	s := StartDevServer(t)
	require.NoError(t, s.Server.RegisterPlugin(context.Background(), testclockPlugin))
	require.NoError(t, s.Server.EnablePlugin(context.Background(), testclockPluginName, "apikey"))
	s.WaitPluginReady(t, "apikey")
	return s
}

// SetClock moves the clock of the testclock plugin mounted at apikey/ to now (it runs on
// from there in real time) through apikey/test/clock with token, and checks the engine
// took it. A plugin process that restarts (reload, failover) starts on the wall clock.
func (s *Server) SetClock(t *testing.T, token string, now time.Time) {
	t.Helper()
	sec, err := s.NewClient(t, token).Logical().Write("apikey/test/clock", map[string]interface{}{
		"now": now.UTC().Format(time.RFC3339),
	})
	require.NoError(t, err, "moving the clock to %s (is the testclock plugin mounted at apikey/?)", now)
	require.NotNil(t, sec)
	got, err := time.Parse(time.RFC3339Nano, fmt.Sprint(sec.Data["now"]))
	require.NoError(t, err, "test/clock answered %v", sec.Data)
	// RFC 3339 drops sub-seconds; the clock runs on while the request returns.
	require.WithinDuration(t, now.Truncate(time.Second), got, 5*time.Second, "the engine's clock after test/clock")
}

// WritePolicy loads policies/<name>.hcl into the server under the same name.
func (s *Server) WritePolicy(t *testing.T, name string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(policyDir, name+".hcl"))
	require.NoError(t, err)
	require.NoError(t, s.Client.Sys().PutPolicy(name, string(b)))
}

// WriteRolePolicy loads the template policies/<name>.hcl for one role ({{role}}
// replaced) under the name "<name>-<role>", which it returns.
func (s *Server) WriteRolePolicy(t *testing.T, name, role string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(policyDir, name+".hcl"))
	require.NoError(t, err)
	require.Contains(t, string(b), "{{role}}", "policies/%s.hcl is not a per-role template", name)
	policy := name + "-" + role
	require.NoError(t, s.Client.Sys().PutPolicy(policy, strings.ReplaceAll(string(b), "{{role}}", role)))
	return policy
}

// VerifierToken creates a token with only policies/verifier.hcl: no default policy, as
// docs/operations tell operators to create it.
func (s *Server) VerifierToken(t *testing.T) string {
	t.Helper()
	s.WritePolicy(t, "verifier")
	sec, err := s.Client.Auth().Token().Create(&api.TokenCreateRequest{
		Policies:        []string{"verifier"},
		NoDefaultPolicy: true,
		TTL:             "1h",
	})
	require.NoError(t, err)
	require.NotNil(t, sec.Auth)
	require.Equal(t, []string{"verifier"}, sec.Auth.Policies)
	return sec.Auth.ClientToken
}

// Token creates a token (child of root) with the given policies (plus default).
func (s *Server) Token(t *testing.T, policies ...string) string {
	t.Helper()
	sec, err := s.Client.Auth().Token().Create(&api.TokenCreateRequest{
		Policies: policies,
		TTL:      "1h",
	})
	require.NoError(t, err)
	require.NotNil(t, sec.Auth)
	return sec.Auth.ClientToken
}

// Eventually polls f every 100ms until it returns nil, failing the test with f's last
// error after timeout.
func (s *Server) Eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	eventually(t, timeout, f)
}

func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	if err := vaulttest.Poll(context.Background(), timeout, 100*time.Millisecond, f); err != nil {
		t.Fatal(err)
	}
}

// fileLines returns the lines of a file ("" if it does not exist yet).
func fileLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1024*1024), 16*1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	require.NoError(t, sc.Err())
	return lines
}
