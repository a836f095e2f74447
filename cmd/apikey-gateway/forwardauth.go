package main

// Forward-auth mode (-mode forward-auth): instead of forwarding requests itself, the
// gateway answers the question a proxy asks about each request it is about to forward:
// may it pass, and with which identity headers? Each proxy asks in its own shape
// (nginx auth_request, Traefik and Caddy forward auth, Envoy ext_authz over HTTP or
// gRPC); every shape is turned into the original request and goes through the same
// admission rules, routes, middleware (cache, failure budget, client address) and
// identity headers as the reverse proxy. See docs/gateway.md#forward-auth and
// docs/proxies/.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/apikeyauth"
)

// Modes of the gateway (-mode).
const (
	modeProxy       = "proxy"
	modeForwardAuth = "forward-auth"
)

// The forward-auth endpoints on -listen (forward-auth mode).
const (
	// pathAuthRequest answers nginx auth_request: the original request in
	// -original-method-header and -original-uri-header; only 2xx, 401 and 403.
	pathAuthRequest = "/auth-request"
	// pathForwardAuth answers Traefik ForwardAuth and Caddy forward_auth: the original
	// request in X-Forwarded-Method and X-Forwarded-Uri; the answer goes to the client.
	pathForwardAuth = "/forward-auth"
	// pathExtAuthz is the path_prefix of Envoy's ext_authz HTTP service: the original
	// method is the request's, the original path and query follow the prefix.
	pathExtAuthz = "/ext-authz"
)

// Defaults of -original-method-header and -original-uri-header (nginx's usual names).
const (
	defaultOriginalMethodHeader = "X-Original-Method"
	defaultOriginalURIHeader    = "X-Original-Uri"
)

// Headers of forward-auth answers besides the identity headers.
const (
	// headerCode is the outcome: VALID, a verify code or a refusal's code.
	headerCode = "X-Api-Key-Code"
	// headerStatus is the HTTP status the answer stands for: nginx only accepts 401 and
	// 403 as refusals, so a 429 is answered 403 with X-Api-Key-Status: 429.
	headerStatus = "X-Api-Key-Status"
	// headerEnvoyRemove lists the request headers Envoy removes before forwarding an
	// allowed request (the HTTP service's form of headers_to_remove).
	headerEnvoyRemove = "X-Envoy-Auth-Headers-To-Remove"
)

// Outcomes of forward-auth requests refused before any route (requests_total labels).
const (
	// outcomeUntrustedProxy: the asker is not in -trusted-proxies.
	outcomeUntrustedProxy = "UNTRUSTED_PROXY"
	// outcomeBadForwardAuth: the asker did not say, or said twice, what the original
	// request is (method, URI, client address).
	outcomeBadForwardAuth = "BAD_FORWARD_AUTH"
	// outcomeOverrideRefused: the original request carries a method or URL override
	// header, which the upstream could route by; the reverse proxy removes them, forward
	// auth cannot.
	outcomeOverrideRefused = "OVERRIDE_REFUSED"
)

// shape is a proxy's forward-auth convention.
type shape int

const (
	shapeNginx     shape = iota // nginx auth_request
	shapeForward                // Traefik ForwardAuth, Caddy forward_auth
	shapeEnvoyHTTP              // Envoy ext_authz, HTTP service
	shapeEnvoyGRPC              // Envoy ext_authz, gRPC service
)

func (s shape) String() string {
	switch s {
	case shapeNginx:
		return "auth-request"
	case shapeForward:
		return "forward-auth"
	case shapeEnvoyHTTP:
		return "ext-authz-http"
	default:
		return "ext-authz-grpc"
	}
}

// forwardAuth serves the forward-auth endpoints.
type forwardAuth struct {
	g *gateway
}

// newForwardAuth returns forward-auth mode's handler; mw is required (parseOptions
// refuses -auth=false in this mode).
func newForwardAuth(o options, mw *apikeyauth.Middleware, m *metrics, log *slog.Logger) *forwardAuth {
	g := newRouter(o, mw, m, log)
	g.addRoutes(mw, http.HandlerFunc(allow))
	return &forwardAuth{g: g}
}

// allow ends the route chain in forward-auth mode: the key passed, so the answer is
// 200 with the identity headers.
func allow(w http.ResponseWriter, r *http.Request) {
	id, ok := apikeyauth.IdentityFrom(r.Context())
	if !ok {
		// Only reachable without the middleware, which this mode does not allow.
		writeError(w, http.StatusServiceUnavailable, "API keys cannot be verified right now", apikeyauth.CodeUnavailable)
		return
	}
	if info := requestInfoFrom(r.Context()); info != nil {
		info.keyID = id.KeyID
	}
	setIdentityHeaders(w.Header(), id)
	w.Header().Set(headerCode, apikeyauth.CodeValid)
	w.WriteHeader(http.StatusOK)
}

func (f *forwardAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == pathHealth:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	case r.URL.Path == pathAuthRequest:
		f.serveHTTP(w, r, shapeNginx)
	case r.URL.Path == pathForwardAuth:
		f.serveHTTP(w, r, shapeForward)
	case strings.HasPrefix(r.RequestURI, pathExtAuthz+"/"):
		f.serveHTTP(w, r, shapeEnvoyHTTP)
	default:
		writeError(w, http.StatusNotFound, "no forward-auth endpoint here: "+pathAuthRequest+", "+pathForwardAuth+" or "+pathExtAuthz+"/...", "NO_ENDPOINT")
	}
}

// serveHTTP answers one forward-auth request of an HTTP shape.
func (f *forwardAuth) serveHTTP(w http.ResponseWriter, r *http.Request, s shape) {
	start := time.Now()
	info := &requestInfo{}
	ans := newAnswer()
	orig := f.decide(ans, r, s, info)
	status := 499 // the proxy went away before the answer
	if r.Context().Err() == nil {
		status = f.writeHTTP(w, r.Header, ans, s)
	}
	f.logRequest(r.Context(), s, orig, ans, status, start, info, r.RemoteAddr)
}

// decide answers into ans whether the request that r describes (in shape s) may pass,
// and returns that original request (nil when r does not describe one). r is the
// proxy's request; its headers are the original request's, as far as the proxy passes
// them on.
func (f *forwardAuth) decide(ans *answer, r *http.Request, s shape, info *requestInfo) *http.Request {
	g := f.g
	refuse := func(status int, msg, outcome string) *http.Request {
		g.metrics.Decision(outcome)
		writeError(ans, status, msg, outcome)
		return nil
	}
	// Only a proxy may describe a request: anyone else could claim another client
	// address, method or path.
	if !g.peerIsTrustedProxy(r.RemoteAddr) {
		return refuse(http.StatusForbidden, "forward-auth requests are answered only for the proxies in -trusted-proxies", outcomeUntrustedProxy)
	}
	method, uri, err := f.original(r, s)
	if err != nil {
		return refuse(http.StatusBadRequest, "the forward-auth request does not describe the original request: "+err.Error(), outcomeBadForwardAuth)
	}
	// The client address is the one the proxy saw (the right-most untrusted hop, as in
	// the reverse proxy). Without it every client would share the proxy's address, its
	// bound_cidrs checks and its failure budget.
	if len(r.Header.Values("X-Forwarded-For")) == 0 {
		return refuse(http.StatusBadRequest, "the forward-auth request has no X-Forwarded-For: the proxy must send the client's address", outcomeBadForwardAuth)
	}
	// The reverse proxy removes these before the upstream sees them; here the proxy
	// forwards the request, so they are refused instead.
	for name := range r.Header {
		if f.ownHeader(name, s) {
			continue
		}
		if slices.ContainsFunc(overrideHeaderNames, func(norm string) bool { return headerNameIs(name, norm) }) {
			return refuse(http.StatusBadRequest, "method and URL override headers are not allowed", outcomeOverrideRefused)
		}
	}
	orig, err := originalRequest(r, method, uri, info)
	if err != nil {
		return refuse(http.StatusBadRequest, "the request path is not canonical", outcomeBadPath)
	}
	if g.admit(ans, orig) {
		g.dispatch(ans, orig)
	}
	return orig
}

// original returns the original request's method and request target as shape s
// carries them.
func (f *forwardAuth) original(r *http.Request, s shape) (method, uri string, err error) {
	switch s {
	case shapeNginx:
		if method, err = singleHeader(r.Header, f.g.opts.originalMethodHeader); err != nil {
			return "", "", err
		}
		uri, err = singleHeader(r.Header, f.g.opts.originalURIHeader)
		return method, uri, err
	case shapeForward:
		if method, err = singleHeader(r.Header, "X-Forwarded-Method"); err != nil {
			return "", "", err
		}
		if uri, err = singleHeader(r.Header, "X-Forwarded-Uri"); err != nil {
			return "", "", err
		}
		if len(r.Header.Values("X-Forwarded-Host")) > 1 {
			return "", "", errors.New("X-Forwarded-Host is sent more than once")
		}
		return method, uri, nil
	case shapeEnvoyHTTP:
		// Envoy keeps the method and puts path_prefix before the original target.
		return r.Method, strings.TrimPrefix(r.RequestURI, pathExtAuthz), nil
	default: // shapeEnvoyGRPC: checkHTTPRequest put them there
		if r.Method == "" || r.RequestURI == "" {
			return "", "", errors.New("the check request has no method or path")
		}
		return r.Method, r.RequestURI, nil
	}
}

// ownHeader reports whether name is a header that shape s itself uses to describe the
// original request, and so no override header of the client's.
func (f *forwardAuth) ownHeader(name string, s shape) bool {
	if s != shapeNginx {
		return false
	}
	return name == f.g.opts.originalMethodHeader || name == f.g.opts.originalURIHeader
}

// singleHeader is the one non-empty value of h's header name; a missing, empty or
// repeated header is an error.
func singleHeader(h http.Header, name string) (string, error) {
	values := h.Values(name)
	switch {
	case len(values) == 0:
		return "", fmt.Errorf("%s is missing", name)
	case len(values) > 1:
		return "", fmt.Errorf("%s is sent more than once", name)
	}
	v := strings.TrimSpace(values[0])
	if v == "" {
		return "", fmt.Errorf("%s is empty", name)
	}
	return v, nil
}

// originalRequest returns the request the proxy asks about: r's headers, peer and Host,
// with method and the request target uri (origin form: path and query, as the client
// sent them), and no body. Its context carries info, for the access log.
func originalRequest(r *http.Request, method, uri string, info *requestInfo) (*http.Request, error) {
	if !strings.HasPrefix(uri, "/") {
		return nil, errors.New("the original request target is not a path")
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return nil, err
	}
	o := r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info))
	o.Method = method
	o.URL = u
	o.RequestURI = uri
	o.Body = http.NoBody
	o.ContentLength = 0
	o.TransferEncoding = nil
	return o, nil
}

// answer records the decision as the reverse proxy's handlers write it (status, headers,
// JSON error body), before it is put in the shape the proxy expects.
type answer struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newAnswer() *answer { return &answer{header: http.Header{}} }

func (a *answer) Header() http.Header { return a.header }

func (a *answer) WriteHeader(code int) {
	if a.status == 0 && code >= 200 {
		a.status = code
	}
}

func (a *answer) Write(b []byte) (int, error) {
	if a.status == 0 {
		a.status = http.StatusOK
	}
	return a.body.Write(b)
}

// allowed reports whether the key passed.
func (a *answer) allowed() bool { return a.status >= 200 && a.status < 300 }

// finalStatus is the status of the decision; 503 if nothing was written (cannot happen
// while the asker waits: the middleware writes nothing only when it went away).
func (a *answer) finalStatus() int {
	if a.status == 0 {
		return http.StatusServiceUnavailable
	}
	return a.status
}

// code is the outcome: X-Api-Key-Code of an allowed answer, else the code of the JSON
// error body that every refusal has (the middleware's and the gateway's; both are
// constants, never anything the client sent).
func (a *answer) code() string {
	if c := a.header.Get(headerCode); c != "" {
		return c
	}
	var body struct {
		Code string `json:"code"`
	}
	if json.Unmarshal(a.body.Bytes(), &body) == nil && body.Code != "" {
		return body.Code
	}
	return apikeyauth.CodeUnavailable
}

// writeHTTP writes ans to the proxy in shape s and returns the status the answer stands
// for (for the log). reqHeader are the headers of the proxy's request.
//
//   - allowed: 200 with the identity headers and X-Api-Key-Code: VALID, no body; Envoy
//     also gets the credentials (and stray identity headers) to remove;
//   - refused: the reverse proxy's answer (status, WWW-Authenticate, Retry-After, Allow,
//     JSON body) with X-Api-Key-Code and X-Api-Key-Status, except that nginx gets 401
//     for a 401 and 403 for everything else, since it turns any other status into 500.
func (f *forwardAuth) writeHTTP(w http.ResponseWriter, reqHeader http.Header, ans *answer, s shape) int {
	h := w.Header()
	for k, v := range ans.header {
		h[k] = v
	}
	status := ans.finalStatus()
	h.Set(headerCode, ans.code())
	h.Set("Cache-Control", "no-store")
	if ans.allowed() {
		if s == shapeEnvoyHTTP {
			if h.Get(headerKeyScopes) == "" {
				// Removed instead (headersToRemove): Envoy may not copy an empty value.
				h.Del(headerKeyScopes)
			}
			if remove := f.headersToRemove(reqHeader, ans); len(remove) > 0 {
				h.Set(headerEnvoyRemove, strings.Join(remove, ", "))
			}
		}
		w.WriteHeader(http.StatusOK)
		return status
	}
	h.Set(headerStatus, strconv.Itoa(status))
	wire := status
	if s == shapeNginx && status != http.StatusUnauthorized {
		wire = http.StatusForbidden
	}
	w.WriteHeader(wire)
	_, _ = w.Write(ans.body.Bytes())
	return status
}

// headersToRemove are the request headers Envoy is to remove from the allowed request
// ans answers (lower case, sorted): the credentials (unless -strip-credentials=false),
// in every spelling seen; identity headers the answer does not set (X_Api_Key_Id,
// X-Api-Key-Tenant, ... and X-Api-Key-Scopes when it is empty), which the answer's own
// headers would not overwrite; and forwarding headers spelled with "_", which Envoy
// never sets itself.
func (f *forwardAuth) headersToRemove(reqHeader http.Header, ans *answer) []string {
	var out []string
	if ans.header.Get(headerKeyScopes) == "" {
		out = append(out, strings.ToLower(headerKeyScopes))
	}
	if f.g.opts.stripCredentials {
		for _, c := range f.g.credentialHeaders {
			out = append(out, strings.ToLower(c))
		}
	}
	for name := range reqHeader {
		norm := normalizedHeaderName(name)
		lower := strings.ToLower(name)
		switch {
		case f.g.opts.stripCredentials && credentialHeader(norm, f.g.credentialHeaders):
		case identityHeader(norm) && !slices.Contains([]string{"x-api-key-id", "x-api-key-role", "x-api-key-scopes"}, lower):
		case forwardingHeader(norm) && strings.Contains(name, "_"):
		default:
			continue
		}
		out = append(out, lower)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// logRequest writes the access log line of one forward-auth request: the original
// method and path (never the query), the status the answer stands for, and the asker.
func (f *forwardAuth) logRequest(ctx context.Context, s shape, orig *http.Request, ans *answer, status int, start time.Time, info *requestInfo, remoteAddr string) {
	method, path := "", ""
	if orig != nil {
		method, path = orig.Method, orig.URL.Path
	}
	f.g.log.LogAttrs(ctx, slog.LevelInfo, "forward-auth",
		slog.String("endpoint", s.String()),
		slog.String("method", method),
		slog.String("path", path),
		slog.Int("status", status),
		slog.String("code", ans.code()),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
		slog.String("key_id", info.keyID),
		slog.String("remote_addr", remoteAddr),
	)
}
