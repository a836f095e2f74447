//go:build unix

package vaulttest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// GatewayOptions configures StartGateway.
type GatewayOptions struct {
	Bin  string // the apikey-gateway binary
	Name string // for messages and the log file name; default "gateway"
	Dir  string // the log goes to Dir/<Name>.log
	// VaultAddr and VaultToken become VAULT_ADDR and VAULT_TOKEN when not empty (the
	// gateway reads Vault's standard variables; -auth=false needs neither).
	VaultAddr, VaultToken string
	Env                   []string // more variables ("NAME=value"), e.g. VAULT_MAX_RETRIES=0
	// Args come after -listen (and -metrics-listen); -upstream is required by the
	// gateway.
	Args []string
	// MetricsListener adds -metrics-listen on another free port (MetricsAddr).
	MetricsListener bool
	// ReadyTimeout bounds the wait for /healthz. Default 30 s.
	ReadyTimeout time.Duration
	Cleaner      Cleaner // gets the gateway's kill; required
}

// Gateway is a running apikey-gateway.
type Gateway struct {
	*Process
	Addr        string // http://127.0.0.1:port
	MetricsAddr string // http://127.0.0.1:port of -metrics-listen, "" without
}

// StartGateway runs the gateway on a free 127.0.0.1 port (and its metrics listener on
// another) with the caller's environment cleaned as by Environ, and returns once its
// /healthz answers 200. A start that lost a port to another process is retried on new
// ports.
func StartGateway(ctx context.Context, opts GatewayOptions) (*Gateway, error) {
	switch {
	case opts.Bin == "":
		return nil, errors.New("vaulttest: GatewayOptions.Bin is empty")
	case opts.Dir == "":
		return nil, errors.New("vaulttest: GatewayOptions.Dir is empty")
	case opts.Cleaner == nil:
		return nil, errors.New("vaulttest: GatewayOptions.Cleaner is nil")
	}
	if opts.Name == "" {
		opts.Name = "gateway"
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 30 * time.Second
	}
	var extra []string
	if opts.VaultAddr != "" {
		extra = append(extra, "VAULT_ADDR="+opts.VaultAddr)
	}
	if opts.VaultToken != "" {
		extra = append(extra, "VAULT_TOKEN="+opts.VaultToken)
	}
	env := Environ(os.Environ(), append(extra, opts.Env...)...)
	logPath := filepath.Join(opts.Dir, opts.Name+".log")

	var lastErr error
	for range 3 {
		g := &Gateway{}
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		g.Addr = "http://127.0.0.1:" + strconv.Itoa(port)
		args := []string{"-listen", "127.0.0.1:" + strconv.Itoa(port)}
		if opts.MetricsListener {
			mport, err := FreePort()
			if err != nil {
				return nil, err
			}
			g.MetricsAddr = "http://127.0.0.1:" + strconv.Itoa(mport)
			args = append(args, "-metrics-listen", "127.0.0.1:"+strconv.Itoa(mport))
		}
		g.Process, err = StartProcess(ProcessSpec{
			Name:    opts.Name,
			Bin:     opts.Bin,
			Args:    append(args, opts.Args...),
			Env:     env,
			LogPath: logPath,
		}, opts.Cleaner)
		if err != nil {
			return nil, err
		}
		if lastErr = g.waitHealthy(ctx, opts.ReadyTimeout); lastErr == nil {
			return g, nil
		}
		g.Kill()
		if ctx.Err() != nil || !strings.Contains(g.LogSinceStart(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("%s did not start: %w; last lines of %s:\n%s", opts.Name, lastErr, logPath, tail(readText(logPath), 20))
}

// waitHealthy polls /healthz until it answers 200; it fails at once if the gateway
// exits.
func (g *Gateway) waitHealthy(ctx context.Context, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if !g.Running() {
			return fmt.Errorf("%s exited during start-up (%s)", g.Name, g.State())
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.Addr+"/healthz", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("healthz answered %d", resp.StatusCode)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not healthy on %s/healthz after %s: %v", g.Addr, timeout, last)
}

// StartGateways starts n gateways with opts, as replicas of one deployment (the
// middleware's fleet mode): each on ports of its own, named <Name>-0 .. <Name>-<n-1>
// (logs Dir/<Name>-<i>.log). On an error, the ones already started stay registered
// with the Cleaner, which stops them.
func StartGateways(ctx context.Context, n int, opts GatewayOptions) ([]*Gateway, error) {
	if n < 1 {
		return nil, errors.New("vaulttest: StartGateways needs n >= 1")
	}
	if opts.Name == "" {
		opts.Name = "gateway"
	}
	base := opts.Name
	gws := make([]*Gateway, 0, n)
	for i := range n {
		o := opts
		o.Name = base + "-" + strconv.Itoa(i)
		g, err := StartGateway(ctx, o)
		if err != nil {
			return nil, err
		}
		gws = append(gws, g)
	}
	return gws, nil
}
