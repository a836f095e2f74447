package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/apikeyauth"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/clientaddr"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/scopes"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usagestats"
)

// envPrefix + the flag name in upper case with "-" as "_" is each flag's environment
// variable: -cache-ttl is APIKEY_GATEWAY_CACHE_TTL.
const envPrefix = "APIKEY_GATEWAY_"

// options is the gateway's command line.
type options struct {
	listen           string
	upstream         *url.URL
	mount            string
	configPath       string
	routes           []routeConfig
	trustedProxies   []netip.Prefix
	cacheTTL         time.Duration
	negativeCacheTTL time.Duration
	cacheSize        int
	verifyTimeout    time.Duration
	apiKeyHeader     string
	auth             bool
	stripCredentials bool
	logLevel         slog.Level
	shutdownTimeout  time.Duration
	tlsCertFile      string
	tlsKeyFile       string

	// methods are the request methods accepted at all; nil: standardMethods.
	methods []string
	// maxBodyBytes bounds request bodies; 0: no bound.
	maxBodyBytes int64
	// allowUpgrade lets WebSocket and other upgrade requests through.
	allowUpgrade bool
	// metricsListen is the address of the metrics listener; "": none.
	metricsListen     string
	readHeaderTimeout time.Duration
	readTimeout       time.Duration
	idleTimeout       time.Duration

	negativeCacheSize int
	failureBudget     int
	failureWindow     time.Duration
	failureBudgetSize int

	// fleet turns on apikeyauth's Config.Fleet: grants for metered keys, the change
	// feed, usage reports.
	fleet          bool
	fleetCacheTTL  time.Duration
	feedTimeout    time.Duration
	reportInterval time.Duration

	// routeTag is the name of the tag that carries each route's tag value to verify;
	// "": no route tag.
	routeTag string

	// mode is modeProxy (forward accepted requests to upstream) or modeForwardAuth
	// (answer proxies' forward-auth requests; no upstream).
	mode string
	// grpcListen is the address of the Envoy ext_authz gRPC listener (forward-auth
	// mode); "": none.
	grpcListen string
	// originalMethodHeader and originalURIHeader carry the original request's method
	// and URI in the nginx auth_request shape (canonical header names).
	originalMethodHeader string
	originalURIHeader    string
}

// standardMethods are the methods accepted by default: the ones APIs use. Everything else
// (lower-case spellings, WebDAV, CONNECT, TRACE, made-up names) is refused with 400,
// since servers behind the gateway disagree about what they mean.
func standardMethods() []string {
	return []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
}

// Defaults of the flags that bound what a client may send.
const (
	defaultMaxBodyBytes      = 10 << 20
	defaultReadHeaderTimeout = 10 * time.Second
	defaultReadTimeout       = time.Minute
	defaultIdleTimeout       = 2 * time.Minute
)

// parseOptions reads flags from args, then fills every flag not given on the command
// line from its environment variable (looked up with getenv).
func parseOptions(args []string, getenv func(string) string, usageOut io.Writer) (options, error) {
	var (
		o              options
		upstream       string
		trustedProxies string
		logLevel       string
		methods        string
	)
	fs := flag.NewFlagSet("apikey-gateway", flag.ContinueOnError)
	fs.SetOutput(usageOut)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address to listen on")
	fs.StringVar(&upstream, "upstream", "", "base URL of the service to protect (required), e.g. http://127.0.0.1:9000")
	fs.StringVar(&o.mount, "mount", apikeyauth.DefaultMount, "path the apikey secrets engine is enabled at")
	fs.StringVar(&o.configPath, "config", "", "JSON file with routes (path prefix, methods, required scopes); none: any valid key may call any path")
	fs.StringVar(&o.routeTag, "route-tag", "", "tag NAME: send NAME=<the route's tag> with every verify, for the engine's usage counts per tag (empty: off); without -config no request is tagged")
	fs.StringVar(&trustedProxies, "trusted-proxies", "", "comma-separated CIDRs (or IPs) of proxies in front of the gateway whose X-Forwarded-For is believed")
	fs.DurationVar(&o.cacheTTL, "cache-ttl", apikeyauth.DefaultCacheTTL, "longest a VALID verify result is reused, and so how late a revocation may take effect (negative: no caching of VALID results)")
	fs.DurationVar(&o.negativeCacheTTL, "negative-cache-ttl", apikeyauth.DefaultNegativeCacheTTL, "how long a refusal is reused (negative: not at all)")
	fs.IntVar(&o.cacheSize, "cache-size", apikeyauth.DefaultCacheSize, "most verify results kept (negative: no cache)")
	fs.DurationVar(&o.verifyTimeout, "verify-timeout", apikeyauth.DefaultVerifyTimeout, "bound on one verify call to Vault")
	fs.StringVar(&o.apiKeyHeader, "api-key-header", apikeyauth.DefaultAPIKeyHeader, "header holding a bare API key (Authorization: Bearer is always read)")
	fs.BoolVar(&o.auth, "auth", true, "verify API keys; -auth=false proxies without any check (benchmarks only)")
	fs.BoolVar(&o.stripCredentials, "strip-credentials", true, "remove Authorization and the API key header before forwarding")
	fs.StringVar(&o.tlsCertFile, "tls-cert-file", "", "serve HTTPS with this PEM certificate (chain); needs -tls-key-file")
	fs.StringVar(&o.tlsKeyFile, "tls-key-file", "", "PEM private key for -tls-cert-file")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long in-flight requests may finish after SIGINT/SIGTERM")
	fs.StringVar(&methods, "methods", strings.Join(standardMethods(), ","), "comma-separated request methods accepted at all (upper case); others get 400")
	fs.Int64Var(&o.maxBodyBytes, "max-body-bytes", defaultMaxBodyBytes, "largest request body forwarded, in bytes; larger ones get 413 (0: no limit)")
	fs.BoolVar(&o.allowUpgrade, "allow-upgrade", false, "forward WebSocket and other upgrade requests; the key is verified only at the handshake, so a revoked key's open connection stays open")
	fs.StringVar(&o.metricsListen, "metrics-listen", "", "address of a separate listener serving /metrics (empty: metrics are not served)")
	fs.DurationVar(&o.readHeaderTimeout, "read-header-timeout", defaultReadHeaderTimeout, "longest a client may take to send a request's headers")
	fs.DurationVar(&o.readTimeout, "read-timeout", defaultReadTimeout, "longest a client may take to send a whole request, body included")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", defaultIdleTimeout, "longest an idle keep-alive connection is kept open")
	fs.IntVar(&o.negativeCacheSize, "negative-cache-size", apikeyauth.DefaultNegativeCacheSize, "most refusals kept, apart from VALID results (negative: refusals not cached)")
	fs.IntVar(&o.failureBudget, "failure-budget", apikeyauth.DefaultFailureBudget, "refusals of unknown or invalid keys one client address may get per -failure-window before it gets 429 without a Vault call (negative: no budget)")
	fs.DurationVar(&o.failureWindow, "failure-window", apikeyauth.DefaultFailureWindow, "period of -failure-budget")
	fs.StringVar(&o.mode, "mode", modeProxy, "proxy: forward accepted requests to -upstream; forward-auth: answer the forward-auth requests of nginx (auth_request), Traefik and Caddy (forward auth) and Envoy (ext_authz) instead (docs/proxies)")
	fs.StringVar(&o.grpcListen, "grpc-listen", "", "forward-auth mode: address of the Envoy ext_authz gRPC listener (envoy.service.auth.v3.Authorization); empty: none")
	fs.StringVar(&o.originalMethodHeader, "original-method-header", defaultOriginalMethodHeader, "forward-auth mode: header with the original request method, for nginx auth_request")
	fs.StringVar(&o.originalURIHeader, "original-uri-header", defaultOriginalURIHeader, "forward-auth mode: header with the original request URI (path and query), for nginx auth_request")
	fs.IntVar(&o.failureBudgetSize, "failure-budget-size", apikeyauth.DefaultFailureBudgetSize, "most client addresses tracked for -failure-budget")
	fs.BoolVar(&o.fleet, "fleet", false, "serve metered keys from the cache by spending quota grants, learn of revocations through the engine's change feed, report cached uses (docs/gateway.md#fleet); the Vault token needs the verifier policy's grants/renew, feed and usage/report")
	fs.DurationVar(&o.fleetCacheTTL, "fleet-cache-ttl", apikeyauth.DefaultFleetCacheTTL, "with -fleet: longest a VALID result is reused while the change feed is healthy (otherwise -cache-ttl)")
	fs.DurationVar(&o.feedTimeout, "feed-timeout", apikeyauth.DefaultFeedTimeout, "with -fleet: how long the change feed may go without answering before results fall back to -cache-ttl")
	fs.DurationVar(&o.reportInterval, "report-interval", apikeyauth.DefaultFleetReportInterval, "with -fleet: how often uses served without a Vault call are reported to the engine")
	fs.Usage = func() {
		fmt.Fprintf(usageOut, "Usage: apikey-gateway -upstream URL [flags]\n"+
			"       apikey-gateway -mode forward-auth -trusted-proxies CIDRS [flags]\n\n"+
			"A reverse proxy that lets through requests with a valid API key from Vault's apikey\n"+
			"secrets engine, or (-mode forward-auth) the authorization service of nginx, Traefik,\n"+
			"Caddy or Envoy. Vault is configured the standard way: VAULT_ADDR, VAULT_TOKEN (a token\n"+
			"with the verifier policy), VAULT_CACERT, ... Every flag can also be set with\n"+
			"%s<FLAG> (upper case, '-' as '_'); the command line wins.\n\nFlags:\n", envPrefix)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := envName(f.Name)
		v := getenv(name)
		if onCommandLine[f.Name] || v == "" || envErr != nil {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			envErr = fmt.Errorf("%s: %w", name, err)
		}
	})
	if envErr != nil {
		return options{}, envErr
	}

	var err error
	if o.trustedProxies, err = parsePrefixes(trustedProxies); err != nil {
		return options{}, fmt.Errorf("-trusted-proxies: %w", err)
	}
	switch o.mode {
	case modeProxy:
		if o.upstream, err = parseUpstream(upstream); err != nil {
			return options{}, err
		}
		if o.grpcListen != "" {
			return options{}, errors.New("-grpc-listen needs -mode forward-auth")
		}
	case modeForwardAuth:
		if err := o.checkForwardAuth(upstream); err != nil {
			return options{}, err
		}
	default:
		return options{}, fmt.Errorf("-mode %.40q: must be %s or %s", o.mode, modeProxy, modeForwardAuth)
	}
	if err := o.logLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return options{}, fmt.Errorf("-log-level: %w", err)
	}
	if o.mount = strings.Trim(o.mount, "/"); o.mount == "" {
		return options{}, errors.New("-mount must not be empty")
	}
	if o.verifyTimeout <= 0 {
		return options{}, errors.New("-verify-timeout must be positive")
	}
	if o.shutdownTimeout < 0 {
		return options{}, errors.New("-shutdown-timeout must not be negative")
	}
	if o.apiKeyHeader == "" || strings.EqualFold(o.apiKeyHeader, "Authorization") || strings.ContainsAny(o.apiKeyHeader, " :\t\r\n") {
		return options{}, fmt.Errorf("-api-key-header %q is not a usable header name", o.apiKeyHeader)
	}
	if (o.tlsCertFile == "") != (o.tlsKeyFile == "") {
		return options{}, errors.New("-tls-cert-file and -tls-key-file go together")
	}
	if o.methods, err = parseMethods(methods); err != nil {
		return options{}, fmt.Errorf("-methods: %w", err)
	}
	if o.maxBodyBytes < 0 {
		return options{}, errors.New("-max-body-bytes must not be negative (0: no limit)")
	}
	if o.readHeaderTimeout <= 0 || o.readTimeout <= 0 || o.idleTimeout <= 0 {
		return options{}, errors.New("-read-header-timeout, -read-timeout and -idle-timeout must be positive")
	}
	if o.failureWindow <= 0 {
		return options{}, errors.New("-failure-window must be positive")
	}
	if o.fleetCacheTTL <= 0 || o.feedTimeout <= 0 || o.reportInterval <= 0 {
		return options{}, errors.New("-fleet-cache-ttl, -feed-timeout and -report-interval must be positive")
	}
	if o.fleet && (o.cacheTTL < 0 || o.cacheSize < 0) {
		return options{}, errors.New("-fleet needs the cache: -cache-ttl and -cache-size must not be negative")
	}
	if o.failureBudget == 0 || o.failureBudgetSize <= 0 {
		return options{}, errors.New("-failure-budget must not be 0 (negative: no budget) and -failure-budget-size must be positive")
	}
	if o.routeTag != "" {
		if err := checkTagPart(usagestats.Tag{Name: o.routeTag, Value: "route"}); err != nil {
			return options{}, fmt.Errorf("-route-tag %.80q: %w", o.routeTag, err)
		}
	}
	if o.configPath != "" {
		if o.routes, err = loadRoutes(o.configPath); err != nil {
			return options{}, err
		}
		for i, r := range o.routes {
			for _, m := range r.Methods {
				if !slices.Contains(o.methods, m) {
					return options{}, fmt.Errorf("-config %s: route %d (%.60q): method %s is not in -methods", o.configPath, i+1, r.PathPrefix, m)
				}
			}
			// An explicit tag was checked with the file; a path_prefix is a tag value only
			// with -route-tag.
			if o.routeTag != "" && r.Tag == "" {
				if err := checkTagPart(usagestats.Tag{Name: o.routeTag, Value: r.PathPrefix}); err != nil {
					return options{}, fmt.Errorf("-config %s: route %d (%.60q): the path_prefix is not a valid -route-tag value (%w): give the route a \"tag\"", o.configPath, i+1, r.PathPrefix, err)
				}
			}
		}
	}
	return o, nil
}

// checkForwardAuth checks the flags of forward-auth mode and canonicalizes its header
// names.
func (o *options) checkForwardAuth(upstream string) error {
	if upstream != "" {
		return errors.New("-upstream has no use with -mode forward-auth: the proxy forwards the requests")
	}
	if len(o.trustedProxies) == 0 {
		return errors.New("-mode forward-auth needs -trusted-proxies: the networks of the proxies that ask (only they are answered)")
	}
	if !o.auth {
		return errors.New("-auth=false has no use with -mode forward-auth: it would allow every request")
	}
	for _, h := range []*string{&o.originalMethodHeader, &o.originalURIHeader} {
		if *h == "" || strings.ContainsFunc(*h, func(c rune) bool { return !isTokenChar(c) }) {
			return fmt.Errorf("-original-method-header and -original-uri-header must be header names, not %.40q", *h)
		}
		*h = http.CanonicalHeaderKey(*h)
		norm := normalizedHeaderName(*h)
		if norm == "authorization" || strings.EqualFold(norm, o.apiKeyHeader) || identityHeader(norm) || forwardingHeader(norm) {
			return fmt.Errorf("-original-method-header and -original-uri-header must not be a credential, identity or forwarding header (%s)", *h)
		}
	}
	if normalizedHeaderName(o.originalMethodHeader) == normalizedHeaderName(o.originalURIHeader) {
		return errors.New("-original-method-header and -original-uri-header must differ")
	}
	return nil
}

// isTokenChar reports whether c may appear in a header name (RFC 9110 token).
func isTokenChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", c)
}

// parseMethods parses a comma-separated list of request methods. Methods are
// case-sensitive tokens; upper case only, so that no server folds one into another.
// CONNECT opens a tunnel, which a reverse proxy cannot check.
func parseMethods(raw string) ([]string, error) {
	var out []string
	for _, m := range strings.Split(raw, ",") {
		m = strings.TrimSpace(m)
		if m == "" {
			continue
		}
		if strings.ContainsFunc(m, func(c rune) bool { return c < 'A' || c > 'Z' }) {
			return nil, fmt.Errorf("%.20q is not an upper-case method name", m)
		}
		if m == "CONNECT" {
			return nil, errors.New("CONNECT cannot be proxied")
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no methods: at least one is needed")
	}
	return out, nil
}

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func parseUpstream(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("-upstream (or %sUPSTREAM) is required", envPrefix)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("-upstream: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("-upstream %q must be an http:// or https:// URL with a host", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("-upstream %q must not have a query, fragment or user info", raw)
	}
	return u, nil
}

// parsePrefixes parses a comma-separated list of CIDRs; a bare address is a network of
// that one address.
func parsePrefixes(raw string) ([]netip.Prefix, error) {
	return clientaddr.ParsePrefixes(strings.Split(raw, ","))
}

// fileConfig is the -config file.
type fileConfig struct {
	Routes []routeConfig `json:"routes"`
}

// routeConfig protects the paths under PathPrefix: requests need a key granted Scopes.
// Methods restricts the route to those methods (empty: any).
type routeConfig struct {
	PathPrefix string   `json:"path_prefix"`
	Methods    []string `json:"methods,omitempty"`
	Scopes     []string `json:"scopes,omitempty"`
	// Cost is counted against the key's max_uses per request (default 1).
	Cost *int `json:"cost,omitempty"`
	// Tag is the value verify gets for the -route-tag name with this route's requests;
	// "": PathPrefix.
	Tag string `json:"tag,omitempty"`
}

// tagValue is the route's value of the -route-tag tag.
func (r routeConfig) tagValue() string {
	if r.Tag != "" {
		return r.Tag
	}
	return r.PathPrefix
}

// checkTagPart checks t as verify checks a tag (usagestats), and returns only the
// reason, for errors that name the flag or route themselves.
func checkTagPart(t usagestats.Tag) error {
	err := t.Validate()
	if te, ok := errors.AsType[*usagestats.TagError](err); ok {
		return errors.New(te.Reason)
	}
	return err
}

func loadRoutes(file string) ([]routeConfig, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("-config: %w", err)
	}
	routes, err := parseRoutes(b)
	if err != nil {
		return nil, fmt.Errorf("-config %s: %w", file, err)
	}
	return routes, nil
}

// parseRoutes decodes and checks a config file. Unknown fields are errors: a misspelt
// "scope" must not silently leave a route open to any key.
func parseRoutes(b []byte) ([]routeConfig, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var cfg fileConfig
	if err := dec.Decode(&cfg); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	if len(cfg.Routes) == 0 {
		return nil, errors.New("no routes: a config file must list at least one route")
	}
	seen := map[string]bool{}
	for i := range cfg.Routes {
		r := &cfg.Routes[i]
		if err := checkRoute(r); err != nil {
			return nil, fmt.Errorf("route %d (%.60q): %w", i+1, r.PathPrefix, err)
		}
		methods := r.Methods
		if len(methods) == 0 {
			methods = []string{""}
		}
		for _, m := range methods {
			// "/x/" and "/x" cover the same paths (routeKey).
			k := m + " " + routeKey(r.PathPrefix)
			if seen[k] {
				return nil, fmt.Errorf("route %d (%.60q): another route has the same path prefix and method %q (a trailing / does not count)", i+1, r.PathPrefix, m)
			}
			seen[k] = true
		}
	}
	return cfg.Routes, nil
}

func checkRoute(r *routeConfig) error {
	p := r.PathPrefix
	if !strings.HasPrefix(p, "/") {
		return errors.New("path_prefix must start with /")
	}
	if canonicalPath(p) != p {
		return errors.New("path_prefix must be a clean path (no //, /./, /../)")
	}
	for i, m := range r.Methods {
		m = strings.ToUpper(strings.TrimSpace(m))
		if m == "" || strings.ContainsFunc(m, func(c rune) bool { return c < 'A' || c > 'Z' }) {
			return fmt.Errorf("method %.20q is not an HTTP method", r.Methods[i])
		}
		r.Methods[i] = m
	}
	if len(r.Methods) != len(slices.Compact(slices.Sorted(slices.Values(r.Methods)))) {
		return errors.New("a method is listed twice")
	}
	if err := scopes.Validate(r.Scopes); err != nil {
		return fmt.Errorf("scopes: %w", err)
	}
	if r.Cost != nil && *r.Cost < 0 {
		return errors.New("cost must be 0 or more")
	}
	if r.Tag != "" {
		// Checked whatever -route-tag is, so that turning it on later cannot break start-up.
		if err := checkTagPart(usagestats.Tag{Name: "route", Value: r.Tag}); err != nil {
			return fmt.Errorf("tag %.60q: %w", r.Tag, err)
		}
	}
	return nil
}

// canonicalPath is p cleaned, keeping a trailing slash.
func canonicalPath(p string) string {
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}
