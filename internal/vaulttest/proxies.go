//go:build unix

package vaulttest

// The proxies that ask apikey-gateway in forward-auth mode (docs/proxies): nginx and
// Caddy from the distribution's packages, each in a directory of its own, on a free
// 127.0.0.1 port, with the configs of docs/proxies rendered for the test's ports; and
// the gateway with its ext_authz gRPC listener.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The addresses the configs in docs/proxies are written for. RenderDocsConfig replaces
// them with the ones a test or benchmark uses.
const (
	DocsProxyAddr       = "127.0.0.1:8000" // where the proxy listens for clients
	DocsGatewayAddr     = "127.0.0.1:8081" // the gateway's -listen (forward-auth mode)
	DocsGatewayGRPCAddr = "127.0.0.1:8082" // the gateway's -grpc-listen
	DocsUpstreamAddr    = "127.0.0.1:9000" // the protected service
)

// ProxyBinary finds the executable of a proxy: $envVar when set (it must be
// executable), else name on PATH, else /usr/sbin/name and /usr/bin/name (Debian's nginx
// is in /usr/sbin, which a user's PATH may lack). The error says how to get it.
func ProxyBinary(name, envVar string) (string, error) {
	if p := os.Getenv(envVar); p != "" {
		return Executable(p)
	}
	if p, err := exec.LookPath(name); err == nil {
		return Executable(p)
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		if p, err := Executable(filepath.Join(dir, name)); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found (not on PATH, nor in /usr/sbin or /usr/bin): install Debian's %s package (.ci/run does) or set %s", name, name, envVar)
}

// RenderDocsConfig is the config text with each Docs*Addr key of addrs replaced by its
// value. Every key must occur in text: a config in docs/proxies that no longer uses an
// address is an error, not a test that silently runs another setup.
func RenderDocsConfig(text string, addrs map[string]string) (string, error) {
	for from, to := range addrs {
		if !strings.Contains(text, from) {
			return "", fmt.Errorf("the config does not contain %s", from)
		}
		text = strings.ReplaceAll(text, from, to)
	}
	return text, nil
}

// ProxyOptions configures StartNginx and StartCaddy.
type ProxyOptions struct {
	Bin  string // the nginx or caddy binary (ProxyBinary)
	Name string // for messages and the log file name; default "nginx" or "caddy"
	Dir  string // a directory of the proxy's own: config, logs, pid, temp files
	// Config renders the proxy's config for a listen address ("127.0.0.1:port"): for
	// nginx what goes into the http {} block (server and upstream blocks, as
	// docs/proxies/nginx.conf), for Caddy a whole Caddyfile (with "admin off").
	Config func(listen string) (string, error)
	// Workers is nginx's worker_processes (default 1).
	Workers int
	// AccessLog keeps nginx's access log in Dir/access.log (default off).
	AccessLog bool
	// ReadyTimeout bounds the wait for the first HTTP answer. Default 30 s.
	ReadyTimeout time.Duration
	Cleaner      Cleaner // gets the proxy's kill; required
}

// Proxy is a running nginx or Caddy.
type Proxy struct {
	*Process
	Addr string // http://127.0.0.1:port, where clients connect
}

// StartNginx runs nginx in the foreground (daemon off) with prefix opts.Dir: a main
// config of its own (pid, temp paths and logs in Dir, error log on stderr into the
// process log) around the site opts.Config renders, on a free port. It returns once
// nginx answers HTTP there (any status).
func StartNginx(ctx context.Context, opts ProxyOptions) (*Proxy, error) {
	if opts.Name == "" {
		opts.Name = "nginx"
	}
	if err := opts.check(); err != nil {
		return nil, err
	}
	for _, d := range []string{"tmp", "logs"} {
		if err := os.MkdirAll(filepath.Join(opts.Dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	workers := max(1, opts.Workers)
	return startProxy(ctx, opts, func(listen string) (ProcessSpec, error) {
		site, err := opts.Config(listen)
		if err != nil {
			return ProcessSpec{}, err
		}
		sitePath := filepath.Join(opts.Dir, "site.conf")
		if err := os.WriteFile(sitePath, []byte(site), 0o644); err != nil {
			return ProcessSpec{}, err
		}
		access := "off"
		if opts.AccessLog {
			access = filepath.Join(opts.Dir, "logs", "access.log")
		}
		var user string
		if os.Geteuid() == 0 {
			// Workers would otherwise run as nobody, who cannot enter a test's 0700
			// temp directory.
			user = "user root;\n"
		}
		tmp := func(name string) string { return filepath.Join(opts.Dir, "tmp", name) }
		main := fmt.Sprintf(`# Written by vaulttest.StartNginx around %s.
%sworker_processes %d;
pid %s;
error_log stderr notice;
events {
    worker_connections 4096;
}
http {
    access_log %s;
    client_body_temp_path %s;
    proxy_temp_path %s;
    fastcgi_temp_path %s;
    uwsgi_temp_path %s;
    scgi_temp_path %s;
    include %s;
}
`, sitePath, user, workers, filepath.Join(opts.Dir, "nginx.pid"), access,
			tmp("client_body"), tmp("proxy"), tmp("fastcgi"), tmp("uwsgi"), tmp("scgi"), sitePath)
		mainPath := filepath.Join(opts.Dir, "nginx.conf")
		if err := os.WriteFile(mainPath, []byte(main), 0o644); err != nil {
			return ProcessSpec{}, err
		}
		return ProcessSpec{
			Name: opts.Name,
			Bin:  opts.Bin,
			Args: []string{"-p", opts.Dir + "/", "-c", mainPath, "-e", "stderr", "-g", "daemon off;"},
			Env:  Environ(os.Environ()),
		}, nil
	})
}

// StartCaddy runs `caddy run` with the Caddyfile opts.Config renders (which must turn
// the admin endpoint off) on a free port, with HOME and Caddy's data and config
// directories in opts.Dir, and returns once Caddy answers HTTP there (any status).
func StartCaddy(ctx context.Context, opts ProxyOptions) (*Proxy, error) {
	if opts.Name == "" {
		opts.Name = "caddy"
	}
	if err := opts.check(); err != nil {
		return nil, err
	}
	return startProxy(ctx, opts, func(listen string) (ProcessSpec, error) {
		caddyfile, err := opts.Config(listen)
		if err != nil {
			return ProcessSpec{}, err
		}
		if !strings.Contains(caddyfile, "admin off") {
			return ProcessSpec{}, errors.New("vaulttest: the Caddyfile must turn the admin endpoint off (admin off): tests run side by side")
		}
		path := filepath.Join(opts.Dir, "Caddyfile")
		if err := os.WriteFile(path, []byte(caddyfile), 0o644); err != nil {
			return ProcessSpec{}, err
		}
		return ProcessSpec{
			Name: opts.Name,
			Bin:  opts.Bin,
			Args: []string{"run", "--config", path, "--adapter", "caddyfile"},
			Env: Environ(os.Environ(),
				"HOME="+opts.Dir,
				"XDG_DATA_HOME="+filepath.Join(opts.Dir, "data"),
				"XDG_CONFIG_HOME="+filepath.Join(opts.Dir, "config")),
		}, nil
	})
}

func (opts *ProxyOptions) check() error {
	switch {
	case opts.Bin == "":
		return errors.New("vaulttest: ProxyOptions.Bin is empty")
	case opts.Dir == "":
		return errors.New("vaulttest: ProxyOptions.Dir is empty")
	case opts.Config == nil:
		return errors.New("vaulttest: ProxyOptions.Config is nil")
	case opts.Cleaner == nil:
		return errors.New("vaulttest: ProxyOptions.Cleaner is nil")
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 30 * time.Second
	}
	return os.MkdirAll(opts.Dir, 0o755)
}

// startProxy starts what spec returns for a free port and waits for an HTTP answer; a
// start that lost its port to another process is retried on a new one.
func startProxy(ctx context.Context, opts ProxyOptions, spec func(listen string) (ProcessSpec, error)) (*Proxy, error) {
	logPath := filepath.Join(opts.Dir, opts.Name+".log")
	var lastErr error
	for range 3 {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		listen := "127.0.0.1:" + strconv.Itoa(port)
		ps, err := spec(listen)
		if err != nil {
			return nil, err
		}
		ps.LogPath = logPath
		p := &Proxy{Addr: "http://" + listen}
		if p.Process, err = StartProcess(ps, opts.Cleaner); err != nil {
			return nil, err
		}
		if lastErr = waitHTTP(ctx, p.Process, p.Addr+"/", opts.ReadyTimeout); lastErr == nil {
			return p, nil
		}
		p.Kill()
		if ctx.Err() != nil || !strings.Contains(p.LogSinceStart(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("%s did not start: %w; last lines of %s:\n%s", opts.Name, lastErr, logPath, tail(readText(logPath), 20))
}

// waitHTTP polls url until any HTTP answer comes; it fails at once if p exits.
func waitHTTP(ctx context.Context, p *Process, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	return Poll(ctx, timeout, 50*time.Millisecond, func() error {
		if !p.Running() {
			return fmt.Errorf("%s exited during start-up (%s)", p.Name, p.State())
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		return resp.Body.Close()
	})
}

// StartGatewayWithGRPC is StartGateway with -grpc-listen on another free port (the
// gateway in forward-auth mode; opts.Args must select it), returning that address too
// ("127.0.0.1:port"). A start that lost the gRPC port is retried on new ports.
func StartGatewayWithGRPC(ctx context.Context, opts GatewayOptions) (*Gateway, string, error) {
	var lastErr error
	args := opts.Args
	for range 3 {
		port, err := FreePort()
		if err != nil {
			return nil, "", err
		}
		grpcAddr := "127.0.0.1:" + strconv.Itoa(port)
		opts.Args = append(append([]string(nil), args...), "-grpc-listen", grpcAddr)
		g, err := StartGateway(ctx, opts)
		if err == nil {
			return g, grpcAddr, nil
		}
		lastErr = err
		if ctx.Err() != nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, "", lastErr
}
