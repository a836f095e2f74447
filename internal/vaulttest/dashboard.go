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

// DashboardOptions configures StartDashboard.
type DashboardOptions struct {
	Bin  string // the apikey-dashboard binary
	Name string // for messages and the log file name; default "dashboard"
	Dir  string // the log goes to Dir/<Name>.log
	// VaultAddr becomes VAULT_ADDR (the dashboard's default for -vault-addr). The
	// dashboard has no token of its own: none is passed.
	VaultAddr string
	Env       []string // more variables ("NAME=value")
	// BasePath is passed as -base-path when not empty; URL includes it.
	BasePath string
	// Args come after -listen (and -base-path).
	Args []string
	// ReadyTimeout bounds the wait for <base path>/healthz. Default 30 s.
	ReadyTimeout time.Duration
	Cleaner      Cleaner // gets the dashboard's kill; required
}

// Dashboard is a running apikey-dashboard.
type Dashboard struct {
	*Process
	Addr string // http://127.0.0.1:port
	URL  string // Addr + the base path: where its pages are
}

// StartDashboard runs the dashboard on a free 127.0.0.1 port with the caller's
// environment cleaned as by Environ (VAULT_TOKEN in particular never reaches it), and
// returns once <base path>/healthz answers 200. A start that lost its port to another
// process is retried on a new one.
func StartDashboard(ctx context.Context, opts DashboardOptions) (*Dashboard, error) {
	switch {
	case opts.Bin == "":
		return nil, errors.New("vaulttest: DashboardOptions.Bin is empty")
	case opts.Dir == "":
		return nil, errors.New("vaulttest: DashboardOptions.Dir is empty")
	case opts.Cleaner == nil:
		return nil, errors.New("vaulttest: DashboardOptions.Cleaner is nil")
	}
	if opts.Name == "" {
		opts.Name = "dashboard"
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 30 * time.Second
	}
	var extra []string
	if opts.VaultAddr != "" {
		extra = append(extra, "VAULT_ADDR="+opts.VaultAddr)
	}
	env := Environ(os.Environ(), append(extra, opts.Env...)...)
	logPath := filepath.Join(opts.Dir, opts.Name+".log")
	base := strings.TrimRight(opts.BasePath, "/")

	var lastErr error
	for range 3 {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		d := &Dashboard{Addr: "http://127.0.0.1:" + strconv.Itoa(port)}
		d.URL = d.Addr + base
		args := []string{"-listen", "127.0.0.1:" + strconv.Itoa(port)}
		if base != "" {
			args = append(args, "-base-path", base)
		}
		d.Process, err = StartProcess(ProcessSpec{
			Name:    opts.Name,
			Bin:     opts.Bin,
			Args:    append(args, opts.Args...),
			Env:     env,
			LogPath: logPath,
		}, opts.Cleaner)
		if err != nil {
			return nil, err
		}
		if lastErr = waitHTTP200(ctx, d.Process, d.URL+"/healthz", opts.ReadyTimeout); lastErr == nil {
			return d, nil
		}
		d.Kill()
		if ctx.Err() != nil || !strings.Contains(d.LogSinceStart(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("%s did not start: %w; last lines of %s:\n%s", opts.Name, lastErr, logPath, tail(readText(logPath), 20))
}

// waitHTTP200 polls url until it answers 200; it fails at once if p exits.
func waitHTTP200(ctx context.Context, p *Process, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if !p.Running() {
			return fmt.Errorf("%s exited during start-up (%s)", p.Name, p.State())
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s answered %d", url, resp.StatusCode)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not ready at %s after %s: %v", url, timeout, last)
}
