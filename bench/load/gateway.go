//go:build unix

package main

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/vaulttest"
)

// startUpstream serves 200 "ok" on a free loopback port, in this process; it stops at
// cleanup.
func startUpstream() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte("ok"))
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	cleanups.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String(), nil
}

// startGateway runs the apikey-gateway binary on a free port in front of upstream,
// logging to workDir/<name>.log; auth=false proxies without checking keys. It returns
// once the gateway's /healthz answers (its base URL is Addr).
func startGateway(ctx context.Context, bin, name, workDir, upstream, mount string, auth bool, vault *vaultServer, token string) (*vaulttest.Gateway, error) {
	opts := vaulttest.GatewayOptions{
		Bin:  bin,
		Name: name,
		Dir:  workDir,
		Args: []string{
			"-upstream", upstream,
			"-mount", mount,
			"-log-level", "warn", // the gateway logs every request at info
			"-auth=" + strconv.FormatBool(auth),
		},
		ReadyTimeout: 20 * time.Second,
		Cleaner:      &cleanups,
	}
	if auth {
		opts.VaultAddr, opts.VaultToken = vault.Addr, token
	}
	return vaulttest.StartGateway(ctx, opts)
}

// stopGateway stops g gracefully (SIGTERM), killing it after 5 s.
func stopGateway(g *vaulttest.Gateway) {
	if err := g.Stop(5 * time.Second); err != nil {
		logf("%v", err)
	}
}
