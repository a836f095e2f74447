package main

import (
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
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
	require.False(t, o.fleet)
	require.Equal(t, time.Minute, o.fleetCacheTTL)
	require.Equal(t, 15*time.Second, o.feedTimeout)
	require.Equal(t, 5*time.Second, o.reportInterval)
}

func TestOptionsFleet(t *testing.T) {
	const up = "http://127.0.0.1:9000"
	o, err := parseOptions([]string{"-upstream", up, "-fleet", "-fleet-cache-ttl", "30s", "-feed-timeout", "5s", "-report-interval", "1s"}, envFrom(nil), io.Discard)
	require.NoError(t, err)
	require.True(t, o.fleet)
	require.Equal(t, 30*time.Second, o.fleetCacheTTL)
	require.Equal(t, 5*time.Second, o.feedTimeout)
	require.Equal(t, time.Second, o.reportInterval)

	o, err = parseOptions([]string{"-upstream", up}, envFrom(map[string]string{
		"APIKEY_GATEWAY_FLEET": "true", "APIKEY_GATEWAY_FLEET_CACHE_TTL": "2m", "APIKEY_GATEWAY_FEED_TIMEOUT": "20s", "APIKEY_GATEWAY_REPORT_INTERVAL": "10s",
	}), io.Discard)
	require.NoError(t, err)
	require.True(t, o.fleet)
	require.Equal(t, 2*time.Minute, o.fleetCacheTTL)
	require.Equal(t, 20*time.Second, o.feedTimeout)
	require.Equal(t, 10*time.Second, o.reportInterval)

	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{args: []string{"-fleet-cache-ttl", "0s"}, wantErr: "must be positive"},
		{args: []string{"-feed-timeout", "-1s"}, wantErr: "must be positive"},
		{args: []string{"-report-interval", "0s"}, wantErr: "must be positive"},
		{args: []string{"-fleet", "-cache-ttl", "-1s"}, wantErr: "-fleet needs the cache"},
		{args: []string{"-fleet", "-cache-size", "-1"}, wantErr: "-fleet needs the cache"},
	} {
		_, err := parseOptions(append([]string{"-upstream", up}, tc.args...), envFrom(nil), io.Discard)
		require.ErrorContains(t, err, tc.wantErr, "%v", tc.args)
	}
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
		{name: "bad trusted proxy", args: []string{"-upstream", up, "-trusted-proxies", "10.0.0.0/8,example.com"}, wantErr: "is not a CIDR block or IP address"},
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
		{name: "tag with a space", json: `{"routes":[{"path_prefix":"/a","tag":"a b"}]}`, wantErr: `route 1 ("/a"): tag "a b": value byte ' '`},
		{name: "tag with =", json: `{"routes":[{"path_prefix":"/a","tag":"a=b"}]}`, wantErr: `tag "a=b"`},
		{name: "tag too long", json: `{"routes":[{"path_prefix":"/a","tag":"` + strings.Repeat("t", 129) + `"}]}`, wantErr: "value longer than 128 bytes"},
		{name: "tag not a string", json: `{"routes":[{"path_prefix":"/a","tag":1}]}`, wantErr: "cannot unmarshal number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseRoutes([]byte(tc.json))
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestOptionsHardeningFlags(t *testing.T) {
	const up = "http://127.0.0.1:9000"
	o, err := parseOptions([]string{"-upstream", up}, envFrom(nil), io.Discard)
	require.NoError(t, err)
	require.Equal(t, []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}, o.methods)
	require.EqualValues(t, 10<<20, o.maxBodyBytes)
	require.False(t, o.allowUpgrade)
	require.Empty(t, o.metricsListen, "no metrics listener unless asked for")
	require.Equal(t, 10*time.Second, o.readHeaderTimeout)
	require.Equal(t, time.Minute, o.readTimeout)
	require.Equal(t, 2*time.Minute, o.idleTimeout)
	require.Equal(t, 10000, o.negativeCacheSize)
	require.Equal(t, 60, o.failureBudget)
	require.Equal(t, time.Minute, o.failureWindow)
	require.Equal(t, 10000, o.failureBudgetSize)

	o, err = parseOptions(nil, envFrom(map[string]string{
		"APIKEY_GATEWAY_UPSTREAM":            up,
		"APIKEY_GATEWAY_METHODS":             "GET, PROPFIND,GET",
		"APIKEY_GATEWAY_MAX_BODY_BYTES":      "0",
		"APIKEY_GATEWAY_ALLOW_UPGRADE":       "true",
		"APIKEY_GATEWAY_METRICS_LISTEN":      "127.0.0.1:9090",
		"APIKEY_GATEWAY_READ_HEADER_TIMEOUT": "2s",
		"APIKEY_GATEWAY_READ_TIMEOUT":        "3s",
		"APIKEY_GATEWAY_IDLE_TIMEOUT":        "4s",
		"APIKEY_GATEWAY_NEGATIVE_CACHE_SIZE": "-1",
		"APIKEY_GATEWAY_FAILURE_BUDGET":      "-1",
		"APIKEY_GATEWAY_FAILURE_WINDOW":      "30s",
		"APIKEY_GATEWAY_FAILURE_BUDGET_SIZE": "5",
	}), io.Discard)
	require.NoError(t, err)
	require.Equal(t, []string{"GET", "PROPFIND"}, o.methods)
	require.Zero(t, o.maxBodyBytes)
	require.True(t, o.allowUpgrade)
	require.Equal(t, "127.0.0.1:9090", o.metricsListen)
	require.Equal(t, 2*time.Second, o.readHeaderTimeout)
	require.Equal(t, 3*time.Second, o.readTimeout)
	require.Equal(t, 4*time.Second, o.idleTimeout)
	require.Equal(t, -1, o.negativeCacheSize)
	require.Equal(t, -1, o.failureBudget)
	require.Equal(t, 30*time.Second, o.failureWindow)
	require.Equal(t, 5, o.failureBudgetSize)

	routes := filepath.Join(t.TempDir(), "routes.json")
	require.NoError(t, os.WriteFile(routes, []byte(`{"routes":[{"path_prefix":"/a","methods":["DELETE"]}]}`), 0o600))
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "lower-case method", args: []string{"-methods", "GET,post"}, wantErr: "not an upper-case method"},
		{name: "CONNECT", args: []string{"-methods", "GET,CONNECT"}, wantErr: "CONNECT"},
		{name: "no methods", args: []string{"-methods", " , "}, wantErr: "no methods"},
		{name: "route method not accepted", args: []string{"-methods", "GET", "-config", routes}, wantErr: "method DELETE is not in -methods"},
		{name: "negative body limit", args: []string{"-max-body-bytes", "-1"}, wantErr: "-max-body-bytes"},
		{name: "zero header timeout", args: []string{"-read-header-timeout", "0s"}, wantErr: "must be positive"},
		{name: "zero read timeout", args: []string{"-read-timeout", "0s"}, wantErr: "must be positive"},
		{name: "zero failure window", args: []string{"-failure-window", "0s"}, wantErr: "-failure-window"},
		{name: "zero failure budget", args: []string{"-failure-budget", "0"}, wantErr: "-failure-budget"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseOptions(append([]string{"-upstream", up}, tc.args...), envFrom(nil), io.Discard)
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

// TestTrailingSlashRoutesAreTheSamePrefix: "/x/" covers "/x", so "/x" and "/x/" for one
// method would be two answers to one request.
func TestTrailingSlashRoutesAreTheSamePrefix(t *testing.T) {
	_, err := parseRoutes([]byte(`{"routes":[{"path_prefix":"/a/","methods":["GET"]},{"path_prefix":"/a","methods":["GET"]}]}`))
	require.ErrorContains(t, err, "same path prefix and method")
	_, err = parseRoutes([]byte(`{"routes":[{"path_prefix":"/a/","methods":["GET"]},{"path_prefix":"/a","methods":["POST"]}]}`))
	require.NoError(t, err)
}

// TestOptionsRouteTag: -route-tag and the routes' tags are checked at start-up as
// verify checks tags, so that no route's requests all fail with a 400 from Vault.
func TestOptionsRouteTag(t *testing.T) {
	const up = "http://127.0.0.1:9000"
	dir := t.TempDir()
	write := func(name, body string) string {
		file := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(file, []byte(body), 0o600))
		return file
	}
	good := write("good.json", `{"routes":[{"path_prefix":"/orders","tag":"orders"},{"path_prefix":"/"}]}`)
	spacePrefix := write("space.json", `{"routes":[{"path_prefix":"/a"},{"path_prefix":"/my orders"}]}`)
	spacePrefixTagged := write("space-tagged.json", `{"routes":[{"path_prefix":"/my orders","tag":"my-orders"}]}`)
	for _, tc := range []struct {
		name         string
		args         []string
		env          map[string]string
		wantRouteTag string
		wantErr      string // "": accepted
	}{
		{name: "off by default", args: []string{"-config", good}},
		{name: "flag", args: []string{"-config", good, "-route-tag", "route"}, wantRouteTag: "route"},
		{name: "environment", env: map[string]string{"APIKEY_GATEWAY_ROUTE_TAG": "endpoint"}, args: []string{"-config", good}, wantRouteTag: "endpoint"},
		{name: "without -config: accepted, nothing to tag", args: []string{"-route-tag", "route"}, wantRouteTag: "route"},
		{name: "not a tag name", args: []string{"-route-tag", "Route"}, wantErr: `-route-tag "Route": name byte 'R'`},
		{name: "name with =", args: []string{"-route-tag", "route=x"}, wantErr: `-route-tag "route=x"`},
		{name: "path_prefix no valid value: the route is named", args: []string{"-config", spacePrefix, "-route-tag", "route"},
			wantErr: `route 2 ("/my orders"): the path_prefix is not a valid -route-tag value`},
		{name: "path_prefix no valid value, -route-tag off: not a tag", args: []string{"-config", spacePrefix}},
		{name: "path_prefix no valid value, but the route has a tag", args: []string{"-config", spacePrefixTagged, "-route-tag", "route"}, wantRouteTag: "route"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseOptions(append([]string{"-upstream", up}, tc.args...), envFrom(tc.env), io.Discard)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantRouteTag, o.routeTag)
		})
	}

	o, err := parseOptions([]string{"-upstream", up, "-config", good}, envFrom(nil), io.Discard)
	require.NoError(t, err)
	require.Equal(t, "orders", o.routes[0].tagValue())
	require.Equal(t, "/", o.routes[1].tagValue(), "the path_prefix when there is no tag")
}
