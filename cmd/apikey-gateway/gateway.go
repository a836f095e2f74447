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

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/apikeyauth"
)

// Headers the gateway adds for the upstream, describing the verified key.
const (
	headerKeyID     = "X-Api-Key-Id"
	headerKeyRole   = "X-Api-Key-Role"
	headerKeyScopes = "X-Api-Key-Scopes" // comma-separated
)

// Paths the gateway answers itself; they are never proxied.
const (
	pathHealth  = "/healthz"
	pathMetrics = "/metrics"
)

// Outcomes of requests the gateway refuses before the middleware sees them, or lets
// through without it (requests_total labels, next to the verify codes).
const (
	outcomeBadPath          = "BAD_PATH"
	outcomeNoRoute          = "NO_ROUTE"
	outcomeMethodNotAllowed = "METHOD_NOT_ALLOWED"
	outcomeAuthDisabled     = "AUTH_DISABLED"
)

type gateway struct {
	opts    options
	log     *slog.Logger
	metrics *metrics
	routes  map[string][]*route // by path prefix
	// prefixes are the keys of routes, longest first: the most specific prefix wins.
	prefixes []string
	// credentialHeaders and identityHeaders are matched case-insensitively and with "_"
	// read as "-" (see applyHeaderRules).
	credentialHeaders []string
	metricsHandler    http.Handler
}

type route struct {
	prefix  string
	methods []string // empty: any method
	handler http.Handler
}

// upstreamIdleConns is how many idle keep-alive connections to the upstream are kept.
const upstreamIdleConns = 256

// newGateway returns the gateway's handler. mw nil means -auth=false.
func newGateway(o options, mw *apikeyauth.Middleware, m *metrics, log *slog.Logger) http.Handler {
	g := &gateway{
		opts:              o,
		log:               log,
		metrics:           m,
		routes:            map[string][]*route{},
		credentialHeaders: []string{"Authorization", o.apiKeyHeader},
		metricsHandler:    promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}),
	}
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

	routes := o.routes
	if routes == nil {
		// No config file: one route for everything, any valid key.
		routes = []routeConfig{{PathPrefix: "/"}}
	}
	for _, rc := range routes {
		var h http.Handler = forward
		if mw != nil {
			cost := 1
			if rc.Cost != nil {
				cost = *rc.Cost
			}
			h = mw.RequireCost(cost, rc.Scopes...)(forward)
		}
		g.routes[rc.PathPrefix] = append(g.routes[rc.PathPrefix], &route{prefix: rc.PathPrefix, methods: rc.Methods, handler: h})
	}
	for p := range g.routes {
		g.prefixes = append(g.prefixes, p)
	}
	slices.SortFunc(g.prefixes, func(a, b string) int { return len(b) - len(a) })
	return g
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case pathHealth:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
		return
	case pathMetrics:
		g.metricsHandler.ServeHTTP(w, r)
		return
	}

	start := time.Now()
	info := &requestInfo{}
	rec := &statusRecorder{ResponseWriter: w}
	r = r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info))
	g.dispatch(rec, r)
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

func (g *gateway) dispatch(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	// A path the upstream may read differently from us ("/public/../admin", "//x",
	// "/a/%2e%2e/b") could dodge the route that should protect it.
	if !strings.HasPrefix(p, "/") || canonicalPath(p) != p {
		g.metrics.Decision(outcomeBadPath)
		writeError(w, http.StatusBadRequest, "the request path is not canonical", outcomeBadPath)
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

// pathHasPrefix matches whole segments: "/orders" covers "/orders" and "/orders/1" but
// not "/ordersX"; a prefix ending in "/" covers everything below it.
func pathHasPrefix(p, prefix string) bool {
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(p, prefix)
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
	// Keep the chain of X-Forwarded-For only from proxies we trust; anyone else's is a
	// claim we will not pass on.
	if g.peerIsTrustedProxy(pr.In.RemoteAddr) {
		pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
	}
	pr.SetXForwarded()
	id, _ := apikeyauth.IdentityFrom(pr.In.Context())
	applyHeaderRules(pr.Out.Header, id, g.opts.stripCredentials, g.credentialHeaders)
}

func (g *gateway) peerIsTrustedProxy(remoteAddr string) bool {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range g.opts.trustedProxies {
		if p.Contains(a) || p.Contains(ap.Addr()) {
			return true
		}
	}
	return false
}

var identityHeaders = []string{headerKeyID, headerKeyRole, headerKeyScopes}

// applyHeaderRules prepares the upstream request's headers: whatever the client sent as
// identity headers is removed first (the upstream trusts them), credentials are removed
// when strip is set, and the verified identity (nil: none) is added.
//
// Headers are matched case-insensitively and with "_" read as "-": many servers (CGI,
// WSGI, nginx's underscores_in_headers) map X_Api_Key_Id to the same variable as
// X-Api-Key-Id, so a client must not get one through as the other.
func applyHeaderRules(h http.Header, id *apikeyauth.Identity, strip bool, credentialHeaders []string) {
	remove := slices.Clone(identityHeaders)
	if strip {
		remove = append(remove, credentialHeaders...)
	}
	for name := range h {
		norm := strings.ReplaceAll(name, "_", "-")
		for _, r := range remove {
			if strings.EqualFold(norm, r) {
				delete(h, name)
				break
			}
		}
	}
	if id == nil {
		return
	}
	h.Set(headerKeyID, id.KeyID)
	h.Set(headerKeyRole, id.Role)
	h.Set(headerKeyScopes, strings.Join(id.Scopes, ","))
}

func (g *gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
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
