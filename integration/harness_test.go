//go:build integration

// Package integration runs the plugin inside a real Vault server: the server binary from
// $VAULT_BIN, the plugin binary from $PLUGIN_BIN (both set by `make integration-test`),
// driven through the official API client and the real `vault` CLI.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"
)

const (
	pluginName = "vault-plugin-secrets-apikey"
	// defaultPluginVersion is used when ../version.go does not declare one.
	defaultPluginVersion = "v0.1.0"
	// cliTimeout bounds every single `vault` CLI invocation.
	cliTimeout = 60 * time.Second
	// startTimeout bounds server start-up (and unseal / leader election).
	startTimeout = 90 * time.Second
)

var (
	vaultBin      string // Vault server (and CLI) binary
	pluginBin     string // plugin binary under test
	pluginSHA256  string // of pluginBin
	pluginVersion string // version to register, must match the plugin's RunningVersion
	policyDir     string // ../policies
)

func TestMain(m *testing.M) {
	if err := setup(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: %v\n", err)
		fmt.Fprintln(os.Stderr, "integration: run `make integration-test`, or set VAULT_BIN (a Vault server binary, see scripts/vault-bin.sh) and PLUGIN_BIN (the plugin binary, see `make build`)")
		os.Exit(2)
	}
	os.Exit(m.Run())
}

func setup() error {
	var err error
	if vaultBin, err = executableFromEnv("VAULT_BIN"); err != nil {
		return err
	}
	if pluginBin, err = executableFromEnv("PLUGIN_BIN"); err != nil {
		return err
	}
	if pluginSHA256, err = fileSHA256(pluginBin); err != nil {
		return err
	}
	pluginVersion = os.Getenv("PLUGIN_VERSION")
	if pluginVersion == "" {
		pluginVersion = versionFromSource("../version.go")
	}
	if !strings.HasPrefix(pluginVersion, "v") {
		pluginVersion = "v" + pluginVersion
	}
	if policyDir, err = filepath.Abs("../policies"); err != nil {
		return err
	}
	if _, err := os.Stat(policyDir); err != nil {
		return fmt.Errorf("policy directory: %w", err)
	}
	return nil
}

func executableFromEnv(name string) (string, error) {
	p := os.Getenv(name)
	if p == "" {
		return "", fmt.Errorf("%s is not set", name)
	}
	// go test runs in integration/: a relative path given from the repository root
	// (PLUGIN_BIN=bin/...) is found there too.
	if !filepath.IsAbs(p) {
		if _, err := os.Stat(p); err != nil {
			if _, err := os.Stat(filepath.Join("..", p)); err == nil {
				p = filepath.Join("..", p)
			}
		}
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("%s=%s: %w", name, p, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("%s=%s: %w", name, p, err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s=%s is not an executable file", name, p)
	}
	return abs, nil
}

var versionRE = regexp.MustCompile(`(?m)^\s*(?:const\s+)?Version\s*(?:string\s*)?=\s*"([^"]+)"`)

// versionFromSource reads `const Version = "vX.Y.Z"` from the plugin's version.go.
func versionFromSource(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return defaultPluginVersion
	}
	if m := versionRE.FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return defaultPluginVersion
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Server is one Vault server process run by a test.
type Server struct {
	t *testing.T

	Dev       bool
	Addr      string // http://127.0.0.1:port
	RootToken string
	Client    *api.Client // authenticated with RootToken

	Dir       string // per-server temp dir (t.TempDir())
	PluginDir string
	LogPath   string // server stdout+stderr (appended across restarts)

	// Non-dev (raft) servers only.
	ConfigPath string
	DataDir    string
	InitPath   string // `vault operator init -format=json` output (unseal key, root token)
	UnsealKey  string

	port, clusterPort int
	// held keeps a stopped raft server's ports from being handed to another test's
	// server before StartAgain (raft remembers its address, so the ports cannot change).
	held []net.Listener

	cmd    *exec.Cmd
	exited chan struct{}
	logF   *os.File
}

// StartDevServer starts `vault server -dev` on a free 127.0.0.1 port with a plugin
// directory holding a copy of the plugin binary. The server (and its plugin processes) is
// always killed in t.Cleanup.
func StartDevServer(t *testing.T) *Server {
	t.Helper()
	s := newServer(t, true)
	s.RootToken = "root-" + randomHex(t, 8)
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s.port, s.clusterPort = freePortPair(t)
		s.Addr = fmt.Sprintf("http://127.0.0.1:%d", s.port)
		s.start(t,
			"server", "-dev",
			"-dev-listen-address=127.0.0.1:"+strconv.Itoa(s.port),
			"-dev-root-token-id="+s.RootToken,
			"-dev-no-store-token",
			"-dev-plugin-dir="+s.PluginDir,
			// Register nothing by itself: the tests register with -sha256 and -version.
			"-dev-plugin-init=false",
			"-log-level=debug",
		)
		lastErr = s.waitReady(func(h *api.HealthResponse) bool { return h.Initialized && !h.Sealed && !h.Standby })
		if lastErr == nil {
			s.newClient(t)
			return s
		}
		s.kill()
		if !strings.Contains(s.logText(), "address already in use") {
			break
		}
		t.Logf("port %d taken meanwhile; retrying", s.port)
	}
	s.dumpLog(t)
	t.Fatalf("vault dev server did not start: %v", lastErr)
	return nil
}

// StartRaftServer starts a non-dev server with integrated storage (single raft node),
// initialises it (1 key share, saved to InitPath) and unseals it.
func StartRaftServer(t *testing.T) *Server {
	t.Helper()
	s := newServer(t, false)
	s.DataDir = filepath.Join(s.Dir, "raft")
	require.NoError(t, os.MkdirAll(s.DataDir, 0o700))
	s.ConfigPath = filepath.Join(s.Dir, "vault.hcl")
	s.InitPath = filepath.Join(s.Dir, "init.json")

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s.port, s.clusterPort = freePortPair(t)
		s.Addr = fmt.Sprintf("http://127.0.0.1:%d", s.port)
		require.NoError(t, os.WriteFile(s.ConfigPath, []byte(s.raftConfig()), 0o600))
		s.start(t, "server", "-config="+s.ConfigPath)
		lastErr = s.waitReady(func(h *api.HealthResponse) bool { return !h.Initialized })
		if lastErr == nil {
			break
		}
		s.kill()
		if !strings.Contains(s.logText(), "address already in use") {
			break
		}
		t.Logf("port %d taken meanwhile; retrying", s.port)
	}
	if lastErr != nil {
		s.dumpLog(t)
		t.Fatalf("vault raft server did not start: %v", lastErr)
	}

	out, err := s.CLI("", "operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json")
	require.NoError(t, err, "vault operator init")
	require.NoError(t, os.WriteFile(s.InitPath, []byte(out), 0o600))
	var init struct {
		UnsealKeysB64 []string `json:"unseal_keys_b64"`
		RootToken     string   `json:"root_token"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &init), "init output: %s", out)
	require.Len(t, init.UnsealKeysB64, 1)
	require.NotEmpty(t, init.RootToken)
	s.RootToken = init.RootToken
	s.newClient(t)
	s.Unseal(t)
	return s
}

func (s *Server) raftConfig() string { return s.raftConfigWith("node1", "") }

// raftConfigWith is the server config for integrated storage; storageExtra goes inside
// the storage stanza (the cluster harness adds retry_join and tuning there).
func (s *Server) raftConfigWith(nodeID, storageExtra string) string {
	return fmt.Sprintf(`
storage "raft" {
  path    = %q
  node_id = %q
%s}

listener "tcp" {
  address         = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable     = true
}

api_addr         = "http://127.0.0.1:%d"
cluster_addr     = "https://127.0.0.1:%d"
disable_mlock    = true
plugin_directory = %q
log_level        = "debug"
ui               = false
`, s.DataDir, nodeID, storageExtra, s.port, s.clusterPort, s.port, s.clusterPort, s.PluginDir)
}

// Unseal reads the unseal key from InitPath (as an operator would from a file) and
// unseals the server, then waits until it is the active node.
func (s *Server) Unseal(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(s.InitPath)
	require.NoError(t, err)
	var init struct {
		UnsealKeysB64 []string `json:"unseal_keys_b64"`
	}
	require.NoError(t, json.Unmarshal(b, &init))
	require.NotEmpty(t, init.UnsealKeysB64)
	s.UnsealKey = init.UnsealKeysB64[0]
	s.MustCLI(t, "", "operator", "unseal", s.UnsealKey)
	if err := s.waitReady(func(h *api.HealthResponse) bool { return h.Initialized && !h.Sealed && !h.Standby }); err != nil {
		t.Fatalf("vault did not become active after unseal: %v", err)
	}
	// The active node answers health before it has finished setting up its mounts.
	s.Eventually(t, startTimeout, func() error {
		_, err := s.Client.Sys().ListMounts()
		return err
	})
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
	s.releasePorts()
	s.start(t, "server", "-config="+s.ConfigPath)
	if err := s.waitReady(func(h *api.HealthResponse) bool { return h.Initialized }); err != nil {
		s.dumpLog(t)
		t.Fatalf("vault did not come back: %v", err)
	}
	s.Unseal(t)
}

func newServer(t *testing.T, dev bool) *Server {
	t.Helper()
	dir := t.TempDir()
	s := &Server{
		t:         t,
		Dev:       dev,
		Dir:       dir,
		PluginDir: filepath.Join(dir, "plugins"),
		LogPath:   filepath.Join(dir, "vault.log"),
	}
	require.NoError(t, os.MkdirAll(s.PluginDir, 0o755))
	copyFile(t, pluginBin, filepath.Join(s.PluginDir, pluginName), 0o755)
	f, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(t, err)
	s.logF = f
	// Registered before any process starts, so it runs after the kill cleanup below.
	t.Cleanup(func() { _ = f.Close() })
	t.Cleanup(func() {
		s.kill()
		s.releasePorts()
		if t.Failed() {
			s.dumpLog(t)
		}
	})
	return s
}

func (s *Server) start(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(vaultBin, args...)
	cmd.Dir = s.Dir
	cmd.Env = s.env("")
	cmd.Stdout = s.logF
	cmd.Stderr = s.logF
	// Own process group: the kill in Cleanup takes the plugin processes with it.
	// Pdeathsig: the server does not outlive a crashed or killed test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(s.logF, "==== %s: vault %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	require.NoError(t, cmd.Start(), "starting %s", vaultBin)
	s.cmd = cmd
	exited := make(chan struct{})
	s.exited = exited
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
}

// waitReady polls sys/health until ok(health) or the deadline; it fails fast if the
// process exits.
func (s *Server) waitReady(ok func(*api.HealthResponse) bool) error {
	cfg := api.DefaultConfig()
	cfg.Address = s.Addr
	cfg.MaxRetries = 0
	cfg.Timeout = 5 * time.Second
	c, err := api.NewClient(cfg)
	if err != nil {
		return err
	}
	c.ClearToken()
	c.ClearNamespace()
	deadline := time.Now().Add(startTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("vault exited during start-up (%s)", s.cmd.ProcessState)
		default:
		}
		h, err := c.Sys().Health()
		switch {
		case err != nil:
			last = err
		case ok(h):
			return nil
		default:
			last = fmt.Errorf("health: initialized=%v sealed=%v standby=%v", h.Initialized, h.Sealed, h.Standby)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %s: %v", startTimeout, last)
}

func (s *Server) newClient(t *testing.T) {
	t.Helper()
	s.Client = s.NewClient(t, s.RootToken)
}

// NewClient returns an API client for this server authenticated with token.
func (s *Server) NewClient(t *testing.T, token string) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = s.Addr
	cfg.Timeout = 30 * time.Second
	c, err := api.NewClient(cfg)
	require.NoError(t, err)
	c.ClearNamespace()
	c.SetToken(token)
	return c
}

// Stop shuts the server down with SIGTERM (as an operator would) and waits for it; if
// it does not exit within 30 s, the whole process group is killed.
func (s *Server) Stop(t *testing.T) {
	t.Helper()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		t.Errorf("vault did not exit within 30s of SIGTERM; killing it")
	}
	s.kill()
	if !s.Dev {
		s.holdPorts()
	}
}

func (s *Server) holdPorts() {
	for _, p := range []int{s.port, s.clusterPort} {
		if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p)); err == nil {
			s.held = append(s.held, l)
		}
	}
}

func (s *Server) releasePorts() {
	for _, l := range s.held {
		_ = l.Close()
	}
	s.held = nil
}

// kill SIGKILLs the server's process group (server and any plugin process left) and
// waits for the server to be reaped. Safe to call more than once.
func (s *Server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	pgid := s.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
	}
	// Plugin processes are reparented to init when the server dies; they stay in the
	// group, so make sure none is left.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			break
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		time.Sleep(50 * time.Millisecond)
	}
	s.cmd = nil
}

func (s *Server) logText() string {
	b, _ := os.ReadFile(s.LogPath)
	return string(b)
}

// dumpLog writes the tail of the server log to the test log.
func (s *Server) dumpLog(t *testing.T) {
	t.Helper()
	const maxLines = 80
	lines := strings.Split(strings.TrimRight(s.logText(), "\n"), "\n")
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	t.Logf("---- last %d lines of the vault server log %s ----\n%s\n---- end of server log ----",
		len(lines), s.LogPath, strings.Join(lines, "\n"))
}

// env is the environment for the server and the CLI: the test's environment without any
// VAULT_* variable, plus VAULT_ADDR and (for the CLI) VAULT_TOKEN. HOME is the server's
// temp dir so that no token helper file of the user is read or written.
func (s *Server) env(token string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VAULT_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+s.Dir, "VAULT_ADDR="+s.Addr)
	if token != "" {
		env = append(env, "VAULT_TOKEN="+token)
	}
	return env
}

// CLIError is a failed `vault` CLI invocation.
type CLIError struct {
	Args     []string
	ExitCode int
	Stdout   string
	Stderr   string
}

func (e *CLIError) Error() string {
	return fmt.Sprintf("vault %s: exit %d\nstdout: %s\nstderr: %s",
		strings.Join(e.Args, " "), e.ExitCode, e.Stdout, e.Stderr)
}

// CLI runs the real `vault` CLI against this server with token ("" = none) and returns
// its stdout; a non-zero exit is a *CLIError carrying stderr.
func (s *Server) CLI(token string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, vaultBin, args...)
	cmd.Env = s.env(token)
	cmd.Dir = s.Dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if ctx.Err() != nil {
			stderr.WriteString("\n(timed out after " + cliTimeout.String() + ")")
		}
		return stdout.String(), &CLIError{Args: args, ExitCode: code, Stdout: stdout.String(), Stderr: stderr.String()}
	}
	return stdout.String(), nil
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
	s.MustCLI(t, s.RootToken, "plugin", "register",
		"-sha256="+pluginSHA256, "-version="+pluginVersion, "secret", pluginName)
}

// EnablePlugin enables the (registered) plugin at path and waits until it answers.
func (s *Server) EnablePlugin(t *testing.T, path string) {
	t.Helper()
	s.MustCLI(t, s.RootToken, "secrets", "enable", "-path="+path, pluginName)
	s.WaitPluginReady(t, path)
}

// WaitPluginReady waits until the mount at path serves requests.
func (s *Server) WaitPluginReady(t *testing.T, path string) {
	t.Helper()
	s.Eventually(t, startTimeout, func() error {
		_, err := s.Client.Logical().List(path + "/roles")
		return err
	})
}

// Setup is StartDevServer + RegisterPlugin + EnablePlugin at "apikey".
func Setup(t *testing.T) *Server {
	t.Helper()
	s := StartDevServer(t)
	s.RegisterPlugin(t)
	s.EnablePlugin(t, "apikey")
	return s
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
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freePortPair returns a free port p whose p+1 is free too (Vault's cluster listener
// defaults to the API port + 1).
func freePortPair(t *testing.T) (int, int) {
	t.Helper()
	for i := 0; i < 50; i++ {
		l1, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		p := l1.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		_ = l1.Close()
		if err != nil {
			continue
		}
		_ = l2.Close()
		return p, p + 1
	}
	t.Fatal("no free pair of ports found")
	return 0, 0
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
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
