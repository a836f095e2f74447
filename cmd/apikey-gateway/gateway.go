package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/apikeyauth"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/clientaddr"
)

// Headers the gateway adds for the upstream, describing the verified key.
const (
	headerKeyID     = "X-Api-Key-Id"
	headerKeyRole   = "X-Api-Key-Role"
	headerKeyScopes = "X-Api-Key-Scopes" // comma-separated
)

// pathHealth is answered by the gateway itself and never proxied. /metrics is served
// only on the -metrics-listen listener: on the public one it is a path like any other.
const pathHealth = "/healthz"

// Outcomes of requests the gateway refuses before the middleware sees them, or lets
// through without it (requests_total labels, next to the verify codes).
const (
	outcomeBadPath          = "BAD_PATH"
	outcomeBadMethod        = "BAD_METHOD"
	outcomeUpgradeRefused   = "UPGRADE_REFUSED"
	outcomeBodyTooLarge     = "BODY_TOO_LARGE"
	outcomeNoRoute          = "NO_ROUTE"
	outcomeMethodNotAllowed = "METHOD_NOT_ALLOWED"
	outcomeAuthDisabled     = "AUTH_DISABLED"
)

type gateway struct {
	opts    options
	log     *slog.Logger
	metrics *metrics
	routes  map[string][]*route // by path prefix, without a trailing "/" (see routeKey)
	// prefixes are the keys of routes, longest first: the most specific prefix wins.
	prefixes []string
	// credentialHeaders are matched case-insensitively and with "_" read as "-" (see
	// applyHeaderRules).
	credentialHeaders []string
	// methods are the request methods accepted at all (-methods).
	methods []string
	// clientIP is the client address as the middleware works it out (also with -auth=false).
	clientIP func(*http.Request) netip.Addr
}

type route struct {
	prefix  string
	methods []string // empty: any method
	handler http.Handler
}

// upstreamIdleConns is how many idle keep-alive connections to the upstream are kept.
const upstreamIdleConns = 256

// newGateway returns the reverse proxy's handler. mw nil means -auth=false.
func newGateway(o options, mw *apikeyauth.Middleware, m *metrics, log *slog.Logger) http.Handler {
	g := newRouter(o, mw, m, log)
	// The default transport keeps 2 idle connections per host: under concurrency the
	// gateway would dial the upstream for most requests.
	upstream := http.DefaultTransport.(*http.Transport).Clone()
	upstream.MaxIdleConns = upstreamIdleConns
	upstream.MaxIdleConnsPerHost = upstreamIdleConns
	proxy := &httputil.ReverseProxy{
		Rewrite:      g.rewrite,
		ErrorHandler: g.proxyError,
		Transport:    upstream,
	}
	forward := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, ok := apikeyauth.IdentityFrom(r.Context()); ok {
			if info := requestInfoFrom(r.Context()); info != nil {
				info.keyID = id.KeyID
			}
		} else {
			m.Decision(outcomeAuthDisabled)
		}
		proxy.ServeHTTP(w, r)
	})
	g.addRoutes(mw, forward)
	return g
}

// newRouter returns a gateway without routes: what the reverse proxy and the
// forward-auth endpoints share (admission rules, routes, client address). mw nil means
// -auth=false.
func newRouter(o options, mw *apikeyauth.Middleware, m *metrics, log *slog.Logger) *gateway {
	g := &gateway{
		opts:              o,
		log:               log,
		metrics:           m,
		routes:            map[string][]*route{},
		credentialHeaders: []string{"Authorization", o.apiKeyHeader},
		methods:           o.methods,
	}
	if len(g.methods) == 0 {
		g.methods = standardMethods()
	}
	if mw != nil {
		g.clientIP = mw.ClientIP
	} else {
		g.clientIP = func(r *http.Request) netip.Addr { return apikeyauth.ClientIPFor(r, o.trustedProxies) }
	}
	return g
}

// addRoutes installs the routes of -config (without one: a single route for every
// path, any valid key), each checking the key with mw (nil: not at all) before terminal
// runs: the upstream in the reverse proxy, the "allowed" answer in forward-auth mode.
func (g *gateway) addRoutes(mw *apikeyauth.Middleware, terminal http.Handler) {
	o := g.opts
	routes := o.routes
	if routes == nil {
		// No config file: one route for everything, any valid key, and no route tag.
		routes = []routeConfig{{PathPrefix: "/"}}
	}
	for _, rc := range routes {
		h := terminal
		if mw != nil {
			cost := 1
			if rc.Cost != nil {
				cost = *rc.Cost
			}
			var tags []string
			if o.routeTag != "" && o.routes != nil {
				// Checked by parseOptions: RequireCostTagged does not panic.
				tags = []string{o.routeTag + "=" + rc.tagValue()}
			}
			h = mw.RequireCostTagged(cost, tags, rc.Scopes...)(terminal)
		}
		key := routeKey(rc.PathPrefix)
		g.routes[key] = append(g.routes[key], &route{prefix: rc.PathPrefix, methods: rc.Methods, handler: h})
	}
	for p := range g.routes {
		g.prefixes = append(g.prefixes, p)
	}
	slices.SortFunc(g.prefixes, func(a, b string) int { return len(b) - len(a) })
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == pathHealth {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
		return
	}

	start := time.Now()
	info := &requestInfo{}
	rec := &statusRecorder{ResponseWriter: w}
	r = r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info))
	if g.admit(rec, r) {
		g.dispatch(rec, r)
	}
	// The path only: a query string may carry anything, keys included.
	g.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", rec.status()),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
		slog.String("key_id", info.keyID),
		slog.String("remote_addr", r.RemoteAddr),
	)
}

// admit refuses, before any route or Vault call, the requests that the upstream could
// read differently from the gateway (docs/gateway.md, "Requests the gateway refuses"),
// and bounds the request body. It reports whether r may go on.
func (g *gateway) admit(w http.ResponseWriter, r *http.Request) bool {
	refuse := func(status int, msg, outcome string) bool {
		g.metrics.Decision(outcome)
		writeError(w, status, msg, outcome)
		return false
	}
	// Methods are case-sensitive: "get" is not GET to Go, but some servers fold it.
	if !slices.Contains(g.methods, r.Method) {
		return refuse(http.StatusBadRequest, "the request method is not allowed", outcomeBadMethod)
	}
	if !unambiguousPath(r) {
		return refuse(http.StatusBadRequest, "the request path is not canonical", outcomeBadPath)
	}
	// An upgraded connection outlives the one verify of its handshake: it would keep
	// working after the key is revoked.
	if isUpgrade(r.Header) && !g.opts.allowUpgrade {
		return refuse(http.StatusBadRequest, "connection upgrades are not allowed", outcomeUpgradeRefused)
	}
	if g.opts.maxBodyBytes > 0 {
		if r.ContentLength > g.opts.maxBodyBytes {
			w.Header().Set("Connection", "close")
			return refuse(http.StatusRequestEntityTooLarge, "the request body is too large", outcomeBodyTooLarge)
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, g.opts.maxBodyBytes)
		}
	}
	return true
}

// unambiguousPath reports whether the gateway and any upstream read r's path the same:
// canonical ("/public/../admin", "//x", "/a/%2e%2e/b" are not), and without characters
// that some servers read as something else: ";" (path parameters: Tomcat and Spring
// read "/public/..;/admin" as "/admin"), "\" (read as "/" by IIS and others), "%"
// after decoding (a "%252e" decoded once more), control characters (NUL truncates), and
// encoded slashes ("%2F": one segment to us, two to a server that decodes first).
func unambiguousPath(r *http.Request) bool {
	p := r.URL.Path
	if !strings.HasPrefix(p, "/") || canonicalPath(p) != p {
		return false
	}
	if strings.ContainsFunc(p, func(c rune) bool {
		return c == ';' || c == '\\' || c == '%' || c < 0x20 || c == 0x7f
	}) {
		return false
	}
	rawURI, _, _ := strings.Cut(r.RequestURI, "?")
	for _, raw := range []string{r.URL.RawPath, r.URL.EscapedPath(), rawURI} {
		if strings.Contains(strings.ToLower(raw), "%2f") {
			return false
		}
	}
	return true
}

// isUpgrade reports whether h asks for a protocol switch (WebSocket, h2c, ...).
func isUpgrade(h http.Header) bool {
	if len(h.Values("Upgrade")) > 0 {
		return true
	}
	for _, v := range h.Values("Connection") {
		for _, token := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(token), "upgrade") {
				return true
			}
		}
	}
	return false
}

func (g *gateway) dispatch(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if g.caseAmbiguous(p) {
		g.metrics.Decision(outcomeBadPath)
		writeError(w, http.StatusBadRequest, "the request path matches a route only in another letter case", outcomeBadPath)
		return
	}
	for _, prefix := range g.prefixes {
		if !pathHasPrefix(p, prefix) {
			continue
		}
		routes := g.routes[prefix]
		var anyMethod *route
		for _, rt := range routes {
			if len(rt.methods) == 0 {
				anyMethod = rt
			} else if slices.Contains(rt.methods, r.Method) {
				rt.handler.ServeHTTP(w, r)
				return
			}
		}
		if anyMethod != nil {
			anyMethod.handler.ServeHTTP(w, r)
			return
		}
		// The most specific prefix decides: falling back to a shorter one could let a
		// DELETE through under a route that was only meant for GET.
		g.metrics.Decision(outcomeMethodNotAllowed)
		w.Header().Set("Allow", allowedMethods(routes))
		writeError(w, http.StatusMethodNotAllowed, "method not allowed", outcomeMethodNotAllowed)
		return
	}
	g.metrics.Decision(outcomeNoRoute)
	writeError(w, http.StatusNotFound, "no route", outcomeNoRoute)
}

// caseAmbiguous reports whether p would fall under a more specific route if letter case
// were ignored: many servers (IIS, ASP.NET, Express by default) route case-insensitively,
// so "/ADMIN" must not pass under the weaker "/" route while the upstream serves
// "/admin". Prefixes are sorted longest first, so the first match is the most specific.
func (g *gateway) caseAmbiguous(p string) bool {
	exact, folded := -1, -1
	for _, prefix := range g.prefixes {
		if exact < 0 && pathHasPrefix(p, prefix) {
			exact = len(prefix)
		}
		if folded < 0 && pathHasPrefixFold(p, prefix) {
			folded = len(prefix)
		}
		if exact >= 0 && folded >= 0 {
			break
		}
	}
	return folded > exact
}

// pathHasPrefixFold is pathHasPrefix ignoring letter case.
func pathHasPrefixFold(p, prefix string) bool {
	if prefix == "/" {
		return true
	}
	return strings.EqualFold(p, prefix) ||
		len(p) > len(prefix) && p[len(prefix)] == '/' && strings.EqualFold(p[:len(prefix)], prefix)
}

// routeKey is a route's path prefix without its trailing "/": "/reports/" covers
// "/reports" too, since most servers answer both alike, and a request for "/reports"
// must not fall through to a weaker route such as "/".
func routeKey(prefix string) string {
	if prefix == "/" {
		return prefix
	}
	return strings.TrimSuffix(prefix, "/")
}

// pathHasPrefix matches whole segments: "/orders" covers "/orders" and "/orders/1" but
// not "/ordersX". prefix is a routeKey.
func pathHasPrefix(p, prefix string) bool {
	if prefix == "/" {
		return true
	}
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

func allowedMethods(routes []*route) string {
	var ms []string
	for _, rt := range routes {
		ms = append(ms, rt.methods...)
	}
	slices.Sort(ms)
	return strings.Join(slices.Compact(ms), ", ")
}

func (g *gateway) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(g.opts.upstream)
	id, _ := apikeyauth.IdentityFrom(pr.In.Context())
	applyHeaderRules(pr.Out.Header, id, g.opts.stripCredentials, g.credentialHeaders)
	// Keep the chain of X-Forwarded-For only from proxies we trust; anyone else's is a
	// claim we will not pass on.
	if g.peerIsTrustedProxy(pr.In.RemoteAddr) {
		if chain := pr.In.Header["X-Forwarded-For"]; len(chain) > 0 {
			pr.Out.Header["X-Forwarded-For"] = slices.Clone(chain)
		}
	}
	pr.SetXForwarded()
	// The address the gateway decided on, the one verify checked bound_cidrs against.
	if ip := g.clientIP(pr.In); ip.IsValid() {
		pr.Out.Header.Set("X-Real-Ip", ip.String())
	}
}

// peerIsTrustedProxy applies the middleware's rules (internal/clientaddr), so the chain
// the gateway passes on and the client address it decided on agree.
func (g *gateway) peerIsTrustedProxy(remoteAddr string) bool {
	return clientaddr.Contains(g.opts.trustedProxies, clientaddr.ParseRemoteAddr(remoteAddr))
}

// applyHeaderRules prepares the upstream request's headers: whatever the client sent
// that the upstream would trust is removed first (see gatewayOnlyHeader), credentials
// are removed when strip is set, and the verified identity (nil: none) is added. The
// gateway's own forwarding headers are set after this, by rewrite.
//
// Headers are matched case-insensitively and with "_" read as "-": many servers (CGI,
// WSGI, PHP, nginx's underscores_in_headers) map X_Api_Key_Id to the same variable as
// X-Api-Key-Id, so a client must not get one through as the other.
func applyHeaderRules(h http.Header, id *apikeyauth.Identity, strip bool, credentialHeaders []string) {
	for name := range h {
		norm := normalizedHeaderName(name)
		if gatewayOnlyHeader(norm) || strip && credentialHeader(norm, credentialHeaders) {
			delete(h, name)
		}
	}
	if id == nil {
		return
	}
	setIdentityHeaders(h, id)
}

// setIdentityHeaders sets the headers that describe the verified key: the reverse
// proxy's for the upstream, forward auth's for the proxy to copy. X-Api-Key-Id and
// X-Api-Key-Role are never empty (verify answers VALID only with both);
// X-Api-Key-Scopes is empty only for a key without scopes.
func setIdentityHeaders(h http.Header, id *apikeyauth.Identity) {
	h.Set(headerKeyID, id.KeyID)
	h.Set(headerKeyRole, id.Role)
	h.Set(headerKeyScopes, strings.Join(id.Scopes, ","))
}

// normalizedHeaderName is name in lower case with "_" as "-", the form the header rules
// match: many servers read X_Api_Key_Id as X-Api-Key-Id.
func normalizedHeaderName(name string) string {
	return strings.ToLower(strings.ReplaceAll(name, "_", "-"))
}

// credentialHeader reports whether a normalized header name is one of the headers a key
// is read from.
func credentialHeader(norm string, credentialHeaders []string) bool {
	return slices.ContainsFunc(credentialHeaders, func(c string) bool { return strings.EqualFold(c, norm) })
}

// gatewayOnlyHeader reports whether a header (its name normalized) is one only the
// gateway may send: an identity header, a forwarding header or an override header.
func gatewayOnlyHeader(norm string) bool {
	return identityHeader(norm) || forwardingHeader(norm) || overrideHeader(norm)
}

// identityHeader: every X-Api-Key-* name, not only the three the gateway sets: a later
// version or the upstream may read others.
func identityHeader(norm string) bool {
	return strings.HasPrefix(norm, "x-api-key-")
}

// forwardingHeader: the headers from which upstreams take the client's address, host
// and scheme.
func forwardingHeader(norm string) bool {
	switch norm {
	case "forwarded", "x-forwarded", "x-real-ip", "x-client-ip", "true-client-ip",
		"client-ip", "x-cluster-client-ip", "cf-connecting-ip", "fastly-client-ip",
		"x-original-forwarded-for":
		return true
	}
	return strings.HasPrefix(norm, "x-forwarded-")
}

// overrideHeader: the method and URL override headers, with which many frameworks route
// a request to another method or path than the one the gateway checked.
func overrideHeader(norm string) bool {
	return slices.Contains(overrideHeaderNames, norm)
}

// overrideHeaderNames are the override headers, normalized.
var overrideHeaderNames = []string{
	"x-http-method-override", "x-method-override", "x-http-method",
	"x-original-url", "x-original-uri", "x-rewrite-url",
}

// headerNameIs reports whether name, normalized, is norm; normalizedHeaderName(name)
// == norm without allocating, for the per-request checks of forward auth.
func headerNameIs(name, norm string) bool {
	if len(name) != len(norm) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != norm[i] {
			return false
		}
	}
	return true
}

func (g *gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
		// The body outgrew -max-body-bytes while it was being forwarded.
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusRequestEntityTooLarge, "the request body is too large", outcomeBodyTooLarge)
		return
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away; not the upstream's fault. 499 (nginx's "client closed
		// request") only shows in the access log: nobody reads it.
		w.WriteHeader(499)
		return
	}
	g.metrics.upstreamErrors.Inc()
	g.log.LogAttrs(r.Context(), slog.LevelWarn, "upstream request failed",
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("error", err.Error()))
	writeError(w, http.StatusBadGateway, "the upstream service is unavailable", "UPSTREAM_ERROR")
}

func writeError(w http.ResponseWriter, status int, msg, code string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg, "code": code})
}

// requestInfo collects what the access log line needs from inside the handler chain.
type requestInfo struct {
	keyID string
}

type requestInfoKey struct{}

func requestInfoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(requestInfoKey{}).(*requestInfo)
	return info
}

// statusRecorder remembers the status code for the access log. Unwrap lets
// http.ResponseController (used by ReverseProxy to flush streamed responses) reach the
// real writer.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	// 1xx (103 Early Hints, passed on by ReverseProxy) precede the final status.
	if s.code == 0 && code >= 200 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}
