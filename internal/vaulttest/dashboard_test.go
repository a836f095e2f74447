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

// The fake gateway of main_test.go stands in for the dashboard: it serves /healthz on
// -listen and prints its environment.

func TestStartDashboard(t *testing.T) {
	t.Setenv(fakeEnv, "gateway")
	t.Setenv("VAULT_TOKEN", "the-developers-token")
	dir := t.TempDir()
	d, err := StartDashboard(context.Background(), DashboardOptions{
		Bin:       selfBin(t),
		Name:      "dash",
		Dir:       dir,
		VaultAddr: "http://127.0.0.1:1",
		Env:       []string{"VAULT_MAX_RETRIES=0"},
		Cleaner:   t,
	})
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "dash.log"), d.LogPath)
	require.True(t, strings.HasPrefix(d.Addr, "http://127.0.0.1:"), d.Addr)
	require.Equal(t, d.Addr, d.URL, "no base path")
	resp, err := http.Get(d.URL + "/healthz")
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)

	log := d.LogText()
	require.Contains(t, log, "env VAULT_ADDR=http://127.0.0.1:1\n")
	require.Contains(t, log, "env VAULT_MAX_RETRIES=0\n")
	require.NotContains(t, log, "VAULT_TOKEN", "the dashboard has no token of its own")
	require.NoError(t, d.Stop(10*time.Second))
}

func TestStartDashboardPassesTheBasePath(t *testing.T) {
	// The fake knows no -base-path and exits: the error says so at once, with its log.
	t.Setenv(fakeEnv, "gateway")
	started := time.Now()
	_, err := StartDashboard(context.Background(), DashboardOptions{Bin: selfBin(t), Dir: t.TempDir(), BasePath: "/console/", Cleaner: t})
	require.ErrorContains(t, err, "dashboard exited during start-up")
	require.ErrorContains(t, err, "-base-path /console", "the command line, in the log's header")
	require.Less(t, time.Since(started), 20*time.Second)
}

func TestStartDashboardNeedsItsOptions(t *testing.T) {
	_, err := StartDashboard(context.Background(), DashboardOptions{Dir: t.TempDir(), Cleaner: t})
	require.Error(t, err)
	_, err = StartDashboard(context.Background(), DashboardOptions{Bin: "/bin/true", Cleaner: t})
	require.Error(t, err)
	_, err = StartDashboard(context.Background(), DashboardOptions{Bin: "/bin/true", Dir: t.TempDir()})
	require.Error(t, err)
}
