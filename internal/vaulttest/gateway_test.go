//go:build unix

package vaulttest

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestStartGateway(t *testing.T) {
	t.Setenv(fakeEnv, "gateway")
	t.Setenv("VAULT_TOKEN", "the-developers-token")
	t.Setenv("APIKEY_GATEWAY_CACHE_TTL", "1h")
	dir := t.TempDir()
	g, err := StartGateway(context.Background(), GatewayOptions{
		Bin:             selfBin(t),
		Name:            "gw",
		Dir:             dir,
		VaultAddr:       "http://127.0.0.1:1",
		VaultToken:      "verifier",
		Env:             []string{"VAULT_MAX_RETRIES=0"},
		Args:            []string{"-upstream", "http://127.0.0.1:2"},
		MetricsListener: true,
		Cleaner:         t,
	})
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "gw.log"), g.LogPath)
	for _, base := range []string{g.Addr, g.MetricsAddr} {
		require.True(t, strings.HasPrefix(base, "http://127.0.0.1:"), base)
		resp, err := http.Get(base + "/healthz")
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	require.NotEqual(t, g.Addr, g.MetricsAddr)

	log := g.LogText()
	require.Contains(t, log, "env VAULT_ADDR=http://127.0.0.1:1\n")
	require.Contains(t, log, "env VAULT_TOKEN=verifier\n")
	require.Contains(t, log, "env VAULT_MAX_RETRIES=0\n")
	require.NotContains(t, log, "the-developers-token")
	require.NotContains(t, log, "APIKEY_GATEWAY_CACHE_TTL")

	require.NoError(t, g.Stop(10*time.Second))
}

func TestStartGatewayRetriesWhenItsPortWasTaken(t *testing.T) {
	t.Setenv(fakeEnv, "gateway")
	dir := t.TempDir()
	t.Setenv("FAKE_BUSY_MARKER", filepath.Join(dir, "busy-once"))
	g, err := StartGateway(context.Background(), GatewayOptions{Bin: selfBin(t), Dir: dir, Cleaner: t})
	require.NoError(t, err)
	require.Equal(t, 2, strings.Count(g.LogText(), "==== "), "started twice")
	require.Contains(t, g.LogText(), "address already in use")
}

func TestStartGatewayReportsAnEarlyExit(t *testing.T) {
	t.Setenv(fakeEnv, "gateway")
	t.Setenv("FAKE_EXIT", "1")
	started := time.Now()
	_, err := StartGateway(context.Background(), GatewayOptions{Bin: selfBin(t), Dir: t.TempDir(), Cleaner: t})
	require.ErrorContains(t, err, "gateway exited during start-up")
	require.ErrorContains(t, err, "refusing to start", "the error carries the log's tail")
	require.Less(t, time.Since(started), 20*time.Second, "no waiting for the ready timeout")
}

func TestStartGatewayNeedsItsOptions(t *testing.T) {
	_, err := StartGateway(context.Background(), GatewayOptions{Dir: t.TempDir(), Cleaner: t})
	require.Error(t, err)
	_, err = StartGateway(context.Background(), GatewayOptions{Bin: "/bin/true", Dir: t.TempDir()})
	require.Error(t, err)
}
