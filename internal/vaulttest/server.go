//go:build unix

package vaulttest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// PluginName is the name the apikey engine is registered and enabled under, and the
// file name of its binary in a server's plugin directory.
const PluginName = "vault-plugin-secrets-apikey"

// Plugin is a plugin binary to put into a server's plugin directory and register.
type Plugin struct {
	Name    string // catalog name, also the file name in the plugin directory
	Type    string // "secret", "auth" or "database"
	Bin     string // path of the binary
	SHA256  string // of Bin
	Version string // to register with; must be what the binary reports as RunningVersion
}

// NewSecretsPlugin describes the secrets-engine binary bin under name, with its SHA-256.
func NewSecretsPlugin(name, bin, version string) (Plugin, error) {
	sum, err := FileSHA256(bin)
	if err != nil {
		return Plugin{}, fmt.Errorf("plugin %s: %w", name, err)
	}
	return Plugin{Name: name, Type: "secret", Bin: bin, SHA256: sum, Version: version}, nil
}

// ServerOptions configures a Server.
type ServerOptions struct {
	VaultBin string   // the Vault server (and CLI) binary
	Dir      string   // the server's own directory (created); it must not be shared
	Dev      bool     // `vault server -dev` (in memory) instead of integrated storage
	Plugins  []Plugin // copied into the plugin directory; registering is separate
	LogLevel string   // Vault's -log-level / log_level; default "debug"
	// ReadyTimeout bounds each wait for the server: start-up, unseal, leadership, a
	// plugin mount answering. Default 90 s (a 2-core machine running many servers).
	ReadyTimeout time.Duration
	// CLITimeout bounds each `vault` CLI invocation. Default 60 s.
	CLITimeout time.Duration
	// Cleaner gets the server's kill: a *testing.T, or a *Cleanups. Required.
	Cleaner Cleaner
	// Logf, if set, gets notes that are not errors ("port taken meanwhile; retrying").
	Logf func(format string, args ...any)
}

// Server is one Vault server process, with everything it keeps in Dir.
type Server struct {
	Dev       bool
	Addr      string      // http://127.0.0.1:<Port>
	RootToken string      // set by StartDev, Init or SetInit
	Client    *api.Client // authenticated with RootToken
	Version   string      // Vault's version, from the last successful readiness check

	Dir       string // the server's directory (HOME of the server and the CLI)
	PluginDir string // plugin_directory, with a copy of every ServerOptions.Plugins
	LogPath   string // stdout and stderr, appended across restarts

	// Non-dev (Raft) servers only.
	ConfigPath string // the server config (see RaftConfig)
	DataDir    string // Raft data
	InitPath   string // `vault operator init -format=json` output: unseal key, root token
	UnsealKey  string

	Port, ClusterPort int // API and cluster listener on 127.0.0.1

	opts ServerOptions
	proc *Process
	// held keeps a stopped Raft server's ports from being handed to another server
	// before it starts again: Raft remembers its address, so the ports cannot change.
	held []net.Listener
}

// NewServer prepares a server in opts.Dir (plugin directory with the plugin copies; for
// a non-dev server the data directory and the config, init and log paths) without
// starting it. Its kill is registered with opts.Cleaner.
func NewServer(opts ServerOptions) (*Server, error) {
	switch {
	case opts.VaultBin == "":
		return nil, errors.New("vaulttest: ServerOptions.VaultBin is empty")
	case opts.Dir == "":
		return nil, errors.New("vaulttest: ServerOptions.Dir is empty")
	case opts.Cleaner == nil:
		return nil, errors.New("vaulttest: ServerOptions.Cleaner is nil")
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "debug"
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 90 * time.Second
	}
	if opts.CLITimeout <= 0 {
		opts.CLITimeout = 60 * time.Second
	}
	s := &Server{
		Dev:       opts.Dev,
		Dir:       opts.Dir,
		PluginDir: filepath.Join(opts.Dir, "plugins"),
		LogPath:   filepath.Join(opts.Dir, "vault.log"),
		opts:      opts,
	}
	if err := os.MkdirAll(s.PluginDir, 0o755); err != nil {
		return nil, err
	}
	for _, p := range opts.Plugins {
		if err := CopyFile(p.Bin, filepath.Join(s.PluginDir, p.Name), 0o755); err != nil {
			return nil, fmt.Errorf("copying plugin %s: %w", p.Name, err)
		}
	}
	if !opts.Dev {
		s.DataDir = filepath.Join(s.Dir, "raft")
		if err := os.MkdirAll(s.DataDir, 0o700); err != nil {
			return nil, err
		}
		s.ConfigPath = filepath.Join(s.Dir, "vault.hcl")
		s.InitPath = filepath.Join(s.Dir, "init.json")
	}
	// Each start registers its own process's kill too; this also frees held ports.
	opts.Cleaner.Cleanup(func() {
		s.Kill()
		s.ReleasePorts()
	})
	return s, nil
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// PickPorts chooses a free API port and the cluster port after it.
func (s *Server) PickPorts() error {
	p, cp, err := FreePortPair()
	if err != nil {
		return err
	}
	s.Port, s.ClusterPort = p, cp
	s.Addr = fmt.Sprintf("http://127.0.0.1:%d", p)
	return nil
}

// StartDev starts `vault server -dev` on free ports with a random root token and the
// plugin directory (registering nothing by itself), and waits until it is active. A
// start that lost its port to another process is retried on new ports.
func (s *Server) StartDev(ctx context.Context) error {
	if !s.Dev {
		return errors.New("vaulttest: StartDev on a non-dev server")
	}
	s.RootToken = "root-" + RandomHex(8)
	return s.startRetrying(ctx, IsActive, func() []string {
		return []string{
			"server", "-dev",
			"-dev-listen-address=127.0.0.1:" + strconv.Itoa(s.Port),
			"-dev-root-token-id=" + s.RootToken,
			"-dev-no-store-token",
			"-dev-plugin-dir=" + s.PluginDir,
			// The caller registers with -sha256 and -version, as an operator would.
			"-dev-plugin-init=false",
			"-log-level=" + s.opts.LogLevel,
		}
	}, func() error {
		var err error
		s.Client, err = s.NewClient(s.RootToken)
		return err
	})
}

// StartRaft starts a single-node server with integrated storage on free ports,
// initialises it (1 key share, saved to InitPath) and unseals it.
func (s *Server) StartRaft(ctx context.Context) error {
	if s.Dev {
		return errors.New("vaulttest: StartRaft on a dev server")
	}
	err := s.startRetrying(ctx, func(h *api.HealthResponse) bool { return !h.Initialized }, func() []string {
		return []string{"server", "-config=" + s.ConfigPath}
	}, nil)
	if err != nil {
		return err
	}
	if _, err := s.Init(ctx); err != nil {
		return err
	}
	return s.Unseal(ctx)
}

// startRetrying picks ports, starts the server with args() (for a non-dev server after
// writing the single-node config), waits for ready and then runs after; a start that
// failed because a port was taken meanwhile is tried again, twice, on new ports.
func (s *Server) startRetrying(ctx context.Context, ready func(*api.HealthResponse) bool, args func() []string, after func() error) error {
	var lastErr error
	for range 3 {
		if err := s.PickPorts(); err != nil {
			return err
		}
		if !s.Dev {
			if err := os.WriteFile(s.ConfigPath, []byte(s.RaftConfig("node1", "")), 0o600); err != nil {
				return err
			}
		}
		if err := s.start(args()); err != nil {
			return err
		}
		if lastErr = s.WaitReady(ctx, ready); lastErr == nil {
			if after != nil {
				return after()
			}
			return nil
		}
		s.Kill()
		if ctx.Err() != nil || !strings.Contains(s.LogSinceStart(), "address already in use") {
			break
		}
		s.logf("port %d taken meanwhile; retrying", s.Port)
	}
	kind := "raft"
	if s.Dev {
		kind = "dev"
	}
	return fmt.Errorf("vault %s server did not start: %w", kind, lastErr)
}

// RaftConfig is the server config for integrated storage on the server's ports, with
// its data and plugin directories; storageExtra goes inside the storage stanza (a
// cluster adds retry_join and performance_multiplier there). disable_mlock: tests run
// without the capability to lock memory.
func (s *Server) RaftConfig(nodeID, storageExtra string) string {
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
log_level        = %q
ui               = false
`, s.DataDir, nodeID, storageExtra, s.Port, s.ClusterPort, s.Port, s.ClusterPort, s.PluginDir, s.opts.LogLevel)
}

// StartWithConfig starts the non-dev server with ConfigPath on its ports (held ones are
// released first) and waits until its health satisfies ready. The caller wrote the
// config (RaftConfig) and picked the ports.
func (s *Server) StartWithConfig(ctx context.Context, ready func(*api.HealthResponse) bool) error {
	if s.Dev {
		return errors.New("vaulttest: StartWithConfig on a dev server")
	}
	s.ReleasePorts()
	if err := s.start([]string{"server", "-config=" + s.ConfigPath}); err != nil {
		return err
	}
	return s.WaitReady(ctx, ready)
}

// StartAgain starts a stopped or killed non-dev server on the same ports and data and
// unseals it from InitPath.
func (s *Server) StartAgain(ctx context.Context) error {
	if err := s.StartWithConfig(ctx, func(h *api.HealthResponse) bool { return h.Initialized }); err != nil {
		return fmt.Errorf("vault did not come back: %w", err)
	}
	return s.Unseal(ctx)
}

func (s *Server) start(args []string) error {
	p, err := StartProcess(ProcessSpec{
		Name:    "vault",
		Bin:     s.opts.VaultBin,
		Args:    args,
		Env:     s.Env(""),
		Dir:     s.Dir,
		LogPath: s.LogPath,
	}, s.opts.Cleaner)
	if err != nil {
		return err
	}
	s.proc = p
	return nil
}

// IsActive is the readiness of a usable server: initialised, unsealed, active.
func IsActive(h *api.HealthResponse) bool { return h.Initialized && !h.Sealed && !h.Standby }

// WaitReady polls sys/health until ready(health), for at most ReadyTimeout; it fails
// at once if the server exits.
func (s *Server) WaitReady(ctx context.Context, ready func(*api.HealthResponse) bool) error {
	if s.proc == nil {
		return errors.New("vault is not running")
	}
	c, err := s.newClient("", 5*time.Second, 0)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(s.opts.ReadyTimeout)
	var last error
	for time.Now().Before(deadline) {
		if !s.proc.Running() {
			return fmt.Errorf("vault exited during start-up (%s)", s.proc.State())
		}
		h, err := c.Sys().HealthWithContext(ctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			last = err
		case ready(h):
			s.Version = h.Version
			return nil
		default:
			last = fmt.Errorf("health: initialized=%v sealed=%v standby=%v", h.Initialized, h.Sealed, h.Standby)
		}
		time.Sleep(pollInterval)
	}
	return fmt.Errorf("not ready after %s: %v", s.opts.ReadyTimeout, last)
}

// initOutput is the part of `vault operator init -format=json` the harness reads.
type initOutput struct {
	UnsealKeysB64 []string `json:"unseal_keys_b64"`
	RootToken     string   `json:"root_token"`
}

// Init initialises the server with the CLI (1 key share) and takes over its output (see
// SetInit), which it returns for the other nodes of a cluster.
func (s *Server) Init(ctx context.Context) (string, error) {
	out, err := s.CLI(ctx, "", "operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json")
	if err != nil {
		return "", fmt.Errorf("vault operator init: %w", err)
	}
	return out, s.SetInit(out)
}

// SetInit saves the output of `vault operator init -format=json` (of this server or of
// the cluster's first node) to InitPath, where Unseal reads the key as an operator
// would, and takes the root token and unseal key from it.
func (s *Server) SetInit(initJSON string) error {
	var init initOutput
	if err := json.Unmarshal([]byte(initJSON), &init); err != nil {
		return fmt.Errorf("init output: %w: %s", err, initJSON)
	}
	if len(init.UnsealKeysB64) != 1 || init.RootToken == "" {
		return fmt.Errorf("init output has %d unseal keys (want 1) and root token %q", len(init.UnsealKeysB64), init.RootToken)
	}
	if err := os.WriteFile(s.InitPath, []byte(initJSON), 0o600); err != nil {
		return err
	}
	s.RootToken, s.UnsealKey = init.RootToken, init.UnsealKeysB64[0]
	var err error
	s.Client, err = s.NewClient(s.RootToken)
	return err
}

// Unseal reads the unseal key from InitPath (as an operator would from a file), unseals
// the server with the CLI, and waits until it is active and serves its mount table.
func (s *Server) Unseal(ctx context.Context) error {
	b, err := os.ReadFile(s.InitPath)
	if err != nil {
		return err
	}
	var init initOutput
	if err := json.Unmarshal(b, &init); err != nil {
		return fmt.Errorf("%s: %w", s.InitPath, err)
	}
	if len(init.UnsealKeysB64) == 0 {
		return fmt.Errorf("%s holds no unseal key", s.InitPath)
	}
	s.UnsealKey = init.UnsealKeysB64[0]
	if _, err := s.CLI(ctx, "", "operator", "unseal", s.UnsealKey); err != nil {
		return err
	}
	if err := s.WaitReady(ctx, IsActive); err != nil {
		return fmt.Errorf("vault did not become active after unseal: %w", err)
	}
	// The active node answers health before it has finished setting up its mounts.
	return Poll(ctx, s.opts.ReadyTimeout, pollInterval, func() error {
		_, err := s.Client.Sys().ListMountsWithContext(ctx)
		return err
	})
}

// Stop shuts the server down with SIGTERM (as an operator would) and waits for it; if
// it has not exited within timeout, its whole process group is killed and Stop says so.
// A non-dev server keeps its ports held for StartAgain.
func (s *Server) Stop(timeout time.Duration) error {
	if s.proc == nil {
		return nil
	}
	err := s.proc.Stop(timeout)
	if !s.Dev {
		s.HoldPorts()
	}
	return err
}

// Kill sends SIGKILL to the server's process group (server and plugin processes at
// once, like a machine that dies) and waits until all of them are gone. Safe to call
// more than once, and on a server that never started.
func (s *Server) Kill() {
	if s.proc != nil {
		s.proc.Kill()
	}
}

// Process is the server's current process (nil before the first start).
func (s *Server) Process() *Process { return s.proc }

// HoldPorts listens on the server's ports while it is down, so that no other server
// gets them before it starts again; StartWithConfig releases them.
func (s *Server) HoldPorts() {
	for _, p := range []int{s.Port, s.ClusterPort} {
		if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p)); err == nil {
			s.held = append(s.held, l)
		}
	}
}

// ReleasePorts closes what HoldPorts opened.
func (s *Server) ReleasePorts() {
	for _, l := range s.held {
		_ = l.Close()
	}
	s.held = nil
}

// NewClient is an API client for this server with token (none if ""), a 30 s timeout
// and the client's default retries; no VAULT_* variable of the caller applies.
func (s *Server) NewClient(token string) (*api.Client, error) {
	return s.newClient(token, 30*time.Second, -1)
}

// newClient: maxRetries < 0 keeps the default.
func (s *Server) newClient(token string, timeout time.Duration, maxRetries int) (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = s.Addr
	cfg.Timeout = timeout
	if maxRetries >= 0 {
		cfg.MaxRetries = maxRetries
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.ClearNamespace()
	if token == "" {
		c.ClearToken()
	} else {
		c.SetToken(token)
	}
	return c, nil
}

// Env is the environment of the server and the CLI: the caller's without VAULT_* and
// APIKEY_GATEWAY_* (see Environ), HOME the server's directory so that no token helper
// file of the user is read or written, VAULT_ADDR, and VAULT_TOKEN if token is not "".
func (s *Server) Env(token string) []string {
	extra := []string{"HOME=" + s.Dir, "VAULT_ADDR=" + s.Addr}
	if token != "" {
		extra = append(extra, "VAULT_TOKEN="+token)
	}
	return Environ(os.Environ(), extra...)
}

// LogText is the whole server log, across restarts.
func (s *Server) LogText() string { return readText(s.LogPath) }

// LogTail is the last n lines of the server log.
func (s *Server) LogTail(n int) string { return tail(s.LogText(), n) }

// LogSinceStart is the server log written since the last start.
func (s *Server) LogSinceStart() string { return sinceLastStart(s.LogText()) }

// RegisterPlugin registers p with the CLI, with its SHA-256 and version, as an operator
// would.
func (s *Server) RegisterPlugin(ctx context.Context, p Plugin) error {
	_, err := s.CLI(ctx, s.RootToken, "plugin", "register",
		"-sha256="+p.SHA256, "-version="+p.Version, p.Type, p.Name)
	return err
}

// EnablePlugin enables the registered secrets plugin name at path with the CLI, without
// naming a version (the registered one is selected).
func (s *Server) EnablePlugin(ctx context.Context, name, path string) error {
	_, err := s.CLI(ctx, s.RootToken, "secrets", "enable", "-path="+path, name)
	return err
}

// WaitPluginReady waits until the apikey engine mounted at path answers (a LIST of its
// roles), for at most ReadyTimeout.
func (s *Server) WaitPluginReady(ctx context.Context, path string) error {
	return Poll(ctx, s.opts.ReadyTimeout, pollInterval, func() error {
		_, err := s.Client.Logical().ListWithContext(ctx, path+"/roles")
		return err
	})
}
