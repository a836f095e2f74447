package main

import (
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func envFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestOptionsDefaults(t *testing.T) {
	o, err := parseOptions([]string{"-upstream", "http://127.0.0.1:9000"}, envFrom(nil), io.Discard)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:8080", o.listen)
	require.Equal(t, "http://127.0.0.1:9000", o.upstream.String())
	require.Equal(t, "apikey", o.mount)
	require.Equal(t, 5*time.Second, o.cacheTTL)
	require.Equal(t, time.Second, o.negativeCacheTTL)
	require.Equal(t, 10000, o.cacheSize)
	require.Equal(t, "X-API-Key", o.apiKeyHeader)
	require.True(t, o.auth)
	require.True(t, o.stripCredentials)
	require.Equal(t, slog.LevelInfo, o.logLevel)
	require.Nil(t, o.routes)
	require.Empty(t, o.trustedProxies)
}

func TestOptionsFromEnvironment(t *testing.T) {
	env := map[string]string{
		"APIKEY_GATEWAY_LISTEN":             "0.0.0.0:9999",
		"APIKEY_GATEWAY_UPSTREAM":           "https://orders.internal:8443/api",
		"APIKEY_GATEWAY_MOUNT":              "/keys/",
		"APIKEY_GATEWAY_TRUSTED_PROXIES":    "10.0.0.0/8, 192.0.2.7 ,2001:db8::/32",
		"APIKEY_GATEWAY_CACHE_TTL":          "2s",
		"APIKEY_GATEWAY_NEGATIVE_CACHE_TTL": "250ms",
		"APIKEY_GATEWAY_CACHE_SIZE":         "-1",
		"APIKEY_GATEWAY_AUTH":               "false",
		"APIKEY_GATEWAY_STRIP_CREDENTIALS":  "false",
		"APIKEY_GATEWAY_LOG_LEVEL":          "debug",
	}
	o, err := parseOptions(nil, envFrom(env), io.Discard)
	require.NoError(t, err)
	require.Equal(t, "0.0.0.0:9999", o.listen)
	require.Equal(t, "https://orders.internal:8443/api", o.upstream.String())
	require.Equal(t, "keys", o.mount)
	require.Equal(t, []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("192.0.2.7/32"),
		netip.MustParsePrefix("2001:db8::/32"),
	}, o.trustedProxies)
	require.Equal(t, 2*time.Second, o.cacheTTL)
	require.Equal(t, 250*time.Millisecond, o.negativeCacheTTL)
	require.Equal(t, -1, o.cacheSize)
	require.False(t, o.auth)
	require.False(t, o.stripCredentials)
	require.Equal(t, slog.LevelDebug, o.logLevel)

	// The command line wins over the environment.
	o, err = parseOptions([]string{"-listen", "127.0.0.1:1", "-auth=true", "-cache-ttl", "1s"}, envFrom(env), io.Discard)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:1", o.listen)
	require.True(t, o.auth)
	require.Equal(t, time.Second, o.cacheTTL)
	require.Equal(t, 250*time.Millisecond, o.negativeCacheTTL, "still from the environment")
}

func TestOptionsErrors(t *testing.T) {
	const up = "http://127.0.0.1:9000"
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{name: "no upstream", wantErr: "-upstream (or APIKEY_GATEWAY_UPSTREAM) is required"},
		{name: "upstream without scheme", args: []string{"-upstream", "127.0.0.1:9000"}, wantErr: "-upstream"},
		{name: "upstream not http", args: []string{"-upstream", "ftp://files.internal/"}, wantErr: "must be an http:// or https:// URL"},
		{name: "upstream with query", args: []string{"-upstream", up + "/?a=b"}, wantErr: "must not have a query"},
		{name: "bad env value names the variable", args: []string{"-upstream", up}, env: map[string]string{"APIKEY_GATEWAY_CACHE_TTL": "soon"}, wantErr: "APIKEY_GATEWAY_CACHE_TTL"},
		{name: "bad flag", args: []string{"-upstream", up, "-cache-ttl", "soon"}, wantErr: "invalid value"},
		{name: "unknown flag", args: []string{"-upstream", up, "-nope"}, wantErr: "not defined"},
		{name: "stray argument", args: []string{"-upstream", up, "extra"}, wantErr: "unexpected arguments"},
		{name: "bad trusted proxy", args: []string{"-upstream", up, "-trusted-proxies", "10.0.0.0/8,example.com"}, wantErr: "neither a CIDR nor an IP"},
		{name: "bad log level", args: []string{"-upstream", up, "-log-level", "loud"}, wantErr: "-log-level"},
		{name: "empty mount", args: []string{"-upstream", up, "-mount", "/"}, wantErr: "-mount must not be empty"},
		{name: "authorization as key header", args: []string{"-upstream", up, "-api-key-header", "authorization"}, wantErr: "not a usable header name"},
		{name: "tls cert without key", args: []string{"-upstream", up, "-tls-cert-file", "cert.pem"}, wantErr: "go together"},
		{name: "missing config file", args: []string{"-upstream", up, "-config", "/nonexistent/routes.json"}, wantErr: "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseOptions(tc.args, envFrom(tc.env), io.Discard)
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestConfigFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "routes.json")
	require.NoError(t, os.WriteFile(file, []byte(`{
		"routes": [
			{"path_prefix": "/orders", "methods": ["get", "HEAD"], "scopes": ["orders:read"]},
			{"path_prefix": "/orders", "methods": ["POST"], "scopes": ["orders:write"], "cost": 5},
			{"path_prefix": "/admin/", "scopes": ["admin:*"]},
			{"path_prefix": "/"}
		]
	}`), 0o600))
	o, err := parseOptions([]string{"-upstream", "http://127.0.0.1:9000", "-config", file}, envFrom(nil), io.Discard)
	require.NoError(t, err)
	require.Len(t, o.routes, 4)
	require.Equal(t, []string{"GET", "HEAD"}, o.routes[0].Methods, "methods are upper-cased")
	require.Equal(t, []string{"orders:write"}, o.routes[1].Scopes)
	require.Equal(t, 5, *o.routes[1].Cost)
	require.Nil(t, o.routes[2].Methods)
	require.Empty(t, o.routes[3].Scopes)

	o, err = parseOptions([]string{"-upstream", "http://127.0.0.1:9000"}, envFrom(map[string]string{"APIKEY_GATEWAY_CONFIG": file}), io.Discard)
	require.NoError(t, err)
	require.Len(t, o.routes, 4, "-config from the environment")
}

func TestConfigFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, json, wantErr string
	}{
		{name: "not json", json: `routes:`, wantErr: "invalid character"},
		{name: "unknown field (typo must not open a route)", json: `{"routes":[{"path_prefix":"/a","scope":["x"]}]}`, wantErr: `unknown field "scope"`},
		{name: "no routes", json: `{"routes":[]}`, wantErr: "at least one route"},
		{name: "trailing data", json: `{"routes":[{"path_prefix":"/"}]} {}`, wantErr: "trailing data"},
		{name: "relative prefix", json: `{"routes":[{"path_prefix":"orders"}]}`, wantErr: "must start with /"},
		{name: "unclean prefix", json: `{"routes":[{"path_prefix":"/a/../b"}]}`, wantErr: "clean path"},
		{name: "double slash", json: `{"routes":[{"path_prefix":"//a"}]}`, wantErr: "clean path"},
		{name: "bad method", json: `{"routes":[{"path_prefix":"/a","methods":["GE T"]}]}`, wantErr: "not an HTTP method"},
		{name: "method twice", json: `{"routes":[{"path_prefix":"/a","methods":["GET","get"]}]}`, wantErr: "listed twice"},
		{name: "same prefix and method", json: `{"routes":[{"path_prefix":"/a","methods":["GET"]},{"path_prefix":"/a","methods":["POST","GET"]}]}`, wantErr: "same path prefix and method"},
		{name: "same prefix, any method twice", json: `{"routes":[{"path_prefix":"/a"},{"path_prefix":"/a"}]}`, wantErr: "same path prefix"},
		{name: "bad scope", json: `{"routes":[{"path_prefix":"/a","scopes":["a b"]}]}`, wantErr: "scopes"},
		{name: "negative cost", json: `{"routes":[{"path_prefix":"/a","cost":-1}]}`, wantErr: "cost must be 0 or more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseRoutes([]byte(tc.json))
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}
