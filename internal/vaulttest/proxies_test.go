//go:build unix

package vaulttest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRenderDocsConfig(t *testing.T) {
	out, err := RenderDocsConfig("listen 127.0.0.1:8000; server 127.0.0.1:8081; server 127.0.0.1:9000; # 127.0.0.1:8081",
		map[string]string{DocsProxyAddr: "127.0.0.1:1", DocsGatewayAddr: "127.0.0.1:2", DocsUpstreamAddr: "127.0.0.1:3"})
	require.NoError(t, err)
	require.Equal(t, "listen 127.0.0.1:1; server 127.0.0.1:2; server 127.0.0.1:3; # 127.0.0.1:2", out)
	_, err = RenderDocsConfig("listen 127.0.0.1:8000;", map[string]string{DocsGatewayAddr: "127.0.0.1:2"})
	require.ErrorContains(t, err, "does not contain 127.0.0.1:8081", "a config that no longer uses an address is an error")
}

func TestProxyBinary(t *testing.T) {
	self, err := os.Executable()
	require.NoError(t, err)
	t.Setenv("VAULTTEST_PROXY_BIN", self)
	p, err := ProxyBinary("no-such-proxy-here", "VAULTTEST_PROXY_BIN")
	require.NoError(t, err)
	require.Equal(t, self, p)

	t.Setenv("VAULTTEST_PROXY_BIN", "")
	_, err = ProxyBinary("no-such-proxy-here", "VAULTTEST_PROXY_BIN")
	require.ErrorContains(t, err, "no-such-proxy-here not found")
	require.ErrorContains(t, err, "VAULTTEST_PROXY_BIN")

	t.Setenv("VAULTTEST_PROXY_BIN", filepath.Join(t.TempDir(), "missing"))
	_, err = ProxyBinary("no-such-proxy-here", "VAULTTEST_PROXY_BIN")
	require.Error(t, err, "a variable that names no executable is an error, not a fallback")
}

func TestStartProxyNeedsItsOptions(t *testing.T) {
	render := func(string) (string, error) { return "", nil }
	for _, opts := range []ProxyOptions{
		{Dir: t.TempDir(), Config: render, Cleaner: t},
		{Bin: "/bin/true", Config: render, Cleaner: t},
		{Bin: "/bin/true", Dir: t.TempDir(), Cleaner: t},
		{Bin: "/bin/true", Dir: t.TempDir(), Config: render},
	} {
		_, err := StartNginx(context.Background(), opts)
		require.Error(t, err)
		_, err = StartCaddy(context.Background(), opts)
		require.Error(t, err)
	}
	_, err := StartCaddy(context.Background(), ProxyOptions{Bin: "/bin/true", Dir: t.TempDir(), Config: render, Cleaner: t})
	require.ErrorContains(t, err, "admin off", "tests side by side cannot share Caddy's admin port")
}
