package apikeyauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
	"golang.org/x/sync/singleflight"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/clientaddr"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/keyformat"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/lru"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/scopes"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultMount               = "apikey"
	DefaultAuthorizationHeader = "Authorization"
	DefaultAPIKeyHeader        = "X-API-Key"
	DefaultRealm               = "api"
	DefaultCacheSize           = 10000
	DefaultCacheTTL            = 5 * time.Second
	DefaultNegativeCacheTTL    = 1 * time.Second
	DefaultVerifyTimeout       = 10 * time.Second
	DefaultNegativeCacheSize   = 10000
	DefaultFailureBudget       = 60
	DefaultFailureWindow       = time.Minute
	DefaultFailureBudgetSize   = 10000
	DefaultFleetCacheTTL       = 60 * time.Second
	DefaultFeedTimeout         = 15 * time.Second
	DefaultFleetReportInterval = 5 * time.Second
)

// Config configures a Middleware. The zero value is usable: it verifies against the
// "apikey" mount of the Vault that api.DefaultConfig finds in the environment
// (VAULT_ADDR, VAULT_TOKEN, VAULT_CACERT, ...).
type Config struct {
	// Client talks to Vault. Nil: api.NewClient(api.DefaultConfig()). Its token needs
	// "update" on <Mount>/verify and nothing else (policies/verifier.hcl).
	Client *api.Client
	// Mount is the path the secrets engine is enabled at. Default "apikey".
	Mount string

	// AuthorizationHeader is read for "Bearer <key>"; default "Authorization". APIKeyHeader
	// holds the bare key; default "X-API-Key". A bearer key wins when both are sent. Set
	// either to "-" to not read it.
	AuthorizationHeader string
	APIKeyHeader        string
	// Realm is named in WWW-Authenticate. Default "api".
	Realm string

	// TrustedProxies are the networks of reverse proxies whose X-Forwarded-For is
	// believed. Empty: the connection's peer address is the client.
	TrustedProxies []netip.Prefix

	// CacheSize bounds the number of cached VALID results. 0: DefaultCacheSize;
	// negative: no cache at all (neither VALID results nor refusals).
	CacheSize int
	// NegativeCacheSize bounds the number of cached refusals, kept apart from VALID
	// results so that a flood of unknown keys never evicts a valid one.
	// 0: DefaultNegativeCacheSize; negative: refusals are not cached.
	NegativeCacheSize int
	// CacheTTL is the longest a VALID result is reused (and so the longest a revoked key
	// keeps working here). 0: DefaultCacheTTL; negative: VALID results are not cached.
	CacheTTL time.Duration
	// NegativeCacheTTL is how long a refusal is reused. 0: DefaultNegativeCacheTTL;
	// negative: refusals are not cached.
	NegativeCacheTTL time.Duration

	// FailureBudget is how many refusals of keys that are no usable key at all
	// (MALFORMED, NOT_FOUND, DISABLED, EXPIRED) one client address (IPv6: its /64) may
	// collect per FailureWindow. Once it is spent, a request from there that would ask
	// Vault is answered 429 TOO_MANY_FAILURES with Retry-After instead, until the window
	// ends; answers from the cache are still served. 0: DefaultFailureBudget; negative:
	// no budget.
	FailureBudget int
	// FailureWindow is the period a failure budget covers. 0: DefaultFailureWindow.
	FailureWindow time.Duration
	// FailureBudgetSize bounds how many client addresses are tracked (least recently
	// seen forgotten first). 0: DefaultFailureBudgetSize.
	FailureBudgetSize int

	// VerifyTimeout bounds one verify call to Vault (the client's own retries included).
	// 0: DefaultVerifyTimeout.
	VerifyTimeout time.Duration

	// Tags ("name=value") are sent with every verify call, for the engine's usage counts
	// per tag. New checks them as verify does (usagestats.ParseTags; at most MaxTags
	// with the route tag and a handler's tags). Tags never change verify's answer, so a
	// cached result serves requests with other tags: only verify calls (cache misses) are
	// counted, and with the cache on the counts per tag are a sample of the requests.
	Tags []string
	// RouteTag is a tag name (for example "route"). When set, a request that a
	// net/http ServeMux routed (http.Request.Pattern, such as "GET /orders/{id}") sends
	// RouteTag=<pattern> with its verify call, the pattern made a valid tag value (bytes
	// other than printable ASCII without '=' become '_': "GET_/orders/{id}"; cut to 128
	// bytes). Without a pattern no route tag is sent: the URL path is never used, as its
	// values are unbounded. Other routers: give the route to RequireTagged. "": off.
	RouteTag string

	// Fleet turns on what lets many middleware instances (replicas of a service, gateway
	// processes) serve metered keys from the cache and learn of changes within a second
	// (see "Fleet" in the package documentation). It needs the cache (CacheSize and
	// CacheTTL not negative), an engine version with grants, the change feed and usage
	// reports, and a token with the verifier policy's grants on them. Call Close on
	// shutdown. Off (the default): behaviour and verify requests are exactly as without
	// it.
	Fleet bool
	// FleetCacheTTL is the longest a VALID result is reused while the change feed is
	// healthy (Fleet only). 0: DefaultFleetCacheTTL.
	FleetCacheTTL time.Duration
	// FeedTimeout is how long the change feed may go without answering before it counts
	// as unhealthy, and VALID results are again reused for CacheTTL only (Fleet only).
	// 0: DefaultFeedTimeout.
	FeedTimeout time.Duration
	// FleetReportInterval is how often the uses served without a Vault call are reported
	// to the engine (Fleet only). 0: DefaultFleetReportInterval.
	FleetReportInterval time.Duration

	// Logger receives decisions (debug) and Vault failures (warn/error). Never the key.
	// Nil: nothing is logged.
	Logger *slog.Logger
	// Observer is told about decisions, cache lookups and Vault calls, for metrics. If
	// it also implements FleetObserver, it is told about every Vault call by kind.
	Observer Observer
}

// Observer receives events for metrics. Implementations must be safe for concurrent use
// and fast: they run on the request path.
type Observer interface {
	// Decision is called once per request the middleware handles, with the verify code
	// (VALID, NOT_FOUND, ...) or one of the middleware's own codes (CodeMissing,
	// CodeUnavailable, CodeTooManyFailures, ...).
	Decision(code string)
	// CacheLookup is called on every cache lookup.
	CacheLookup(hit bool)
	// VerifyCall is called after every call to Vault's verify; err is nil when Vault
	// answered with a verify result.
	VerifyCall(elapsed time.Duration, err error)
}

// FleetObserver is an optional extension of Observer (found by a type assertion):
// FleetCall is called after every call the middleware makes to Vault, with call one of
// "verify" (also reported to VerifyCall), "renew" (grants/renew), "feed" (one poll of
// the change feed) and "report" (usage/report); err is nil when Vault answered as
// expected.
type FleetObserver interface {
	FleetCall(call string, elapsed time.Duration, err error)
}

type nopObserver struct{}

func (nopObserver) Decision(string)                 {}
func (nopObserver) CacheLookup(bool)                {}
func (nopObserver) VerifyCall(time.Duration, error) {}

// Middleware checks API keys against Vault. Create it with New; it is safe for
// concurrent use.
type Middleware struct {
	client        *api.Client
	verifyPath    string
	authzHeader   string
	apiKeyHeader  string
	realm         string
	trusted       []netip.Prefix
	cache         *lru.Cache[cacheKey, cacheEntry] // VALID results; nil: none cached
	negCache      *lru.Cache[cacheKey, cacheEntry] // refusals; nil: none cached
	budget        *failureBudget                   // nil: no failure budget
	positiveTTL   time.Duration                    // <= 0: VALID not cached
	negativeTTL   time.Duration                    // <= 0: refusals not cached
	verifyTimeout time.Duration
	tags          []string // Config.Tags, valid
	routeTag      string   // Config.RouteTag; "": no route tag
	flights       singleflight.Group
	log           *slog.Logger
	observer      Observer
	fleetObserver FleetObserver // nil: Observer does not implement it
	now           func() time.Time
	fleet         *fleet // nil: Config.Fleet off
}

// New returns a Middleware for cfg. With cfg.Fleet it starts background work (the
// change feed, grant renewals, usage reports) that Close stops.
func New(cfg Config) (*Middleware, error) {
	return newMiddleware(cfg, hooks{})
}

// hooks are what tests change before any background work starts.
type hooks struct {
	now func() time.Time
	// noLoops: start no background work (tests drive it by hand).
	noLoops bool
	// tick is how often grants are checked for renewal; feedWait the feed's long-poll
	// wait; 0: the defaults.
	tick, feedWait time.Duration
}

func newMiddleware(cfg Config, hk hooks) (*Middleware, error) {
	client := cfg.Client
	if client == nil {
		vcfg := api.DefaultConfig()
		if vcfg.Error != nil {
			return nil, fmt.Errorf("reading Vault client configuration: %w", vcfg.Error)
		}
		var err error
		if client, err = api.NewClient(vcfg); err != nil {
			return nil, fmt.Errorf("creating Vault client: %w", err)
		}
	}
	mount := strings.Trim(cfg.Mount, "/")
	if mount == "" {
		mount = DefaultMount
	}
	m := &Middleware{
		client:        client,
		verifyPath:    mount + "/verify",
		authzHeader:   headerName(cfg.AuthorizationHeader, DefaultAuthorizationHeader),
		apiKeyHeader:  headerName(cfg.APIKeyHeader, DefaultAPIKeyHeader),
		realm:         orDefault(cfg.Realm, DefaultRealm),
		trusted:       make([]netip.Prefix, 0, len(cfg.TrustedProxies)),
		positiveTTL:   durationOrDefault(cfg.CacheTTL, DefaultCacheTTL),
		negativeTTL:   durationOrDefault(cfg.NegativeCacheTTL, DefaultNegativeCacheTTL),
		verifyTimeout: durationOrDefault(cfg.VerifyTimeout, DefaultVerifyTimeout),
		log:           cfg.Logger,
		observer:      cfg.Observer,
		now:           time.Now,
	}
	if m.authzHeader == "" && m.apiKeyHeader == "" {
		return nil, errors.New("both key headers are disabled: no key could ever be read")
	}
	if strings.ContainsAny(m.realm, "\"\\\r\n") {
		return nil, errors.New("realm must not contain quotes, backslashes or line breaks")
	}
	for _, p := range cfg.TrustedProxies {
		if !p.IsValid() {
			return nil, fmt.Errorf("trusted proxy network %v is not valid", p)
		}
		m.trusted = append(m.trusted, clientaddr.NormalizePrefix(p))
	}
	if cfg.RouteTag != "" {
		if err := checkRouteTagName(cfg.RouteTag); err != nil {
			return nil, err
		}
		m.routeTag = cfg.RouteTag
	}
	var err error
	if m.tags, err = checkTags(m.routeTag, cfg.Tags); err != nil {
		return nil, fmt.Errorf("Config.Tags: %w", err)
	}
	if cfg.CacheSize >= 0 {
		m.cache = lru.New[cacheKey, cacheEntry](intOrDefault(cfg.CacheSize, DefaultCacheSize))
		if cfg.NegativeCacheSize >= 0 {
			m.negCache = lru.New[cacheKey, cacheEntry](intOrDefault(cfg.NegativeCacheSize, DefaultNegativeCacheSize))
		}
	}
	if cfg.FailureBudget >= 0 {
		window := durationOrDefault(cfg.FailureWindow, DefaultFailureWindow)
		if window < 0 {
			return nil, errors.New("the failure window must not be negative")
		}
		if cfg.FailureBudgetSize < 0 {
			return nil, errors.New("the failure budget size must not be negative")
		}
		m.budget = newFailureBudget(intOrDefault(cfg.FailureBudget, DefaultFailureBudget), window,
			intOrDefault(cfg.FailureBudgetSize, DefaultFailureBudgetSize))
	}
	if m.log == nil {
		m.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if m.observer == nil {
		m.observer = nopObserver{}
	}
	m.fleetObserver, _ = m.observer.(FleetObserver)
	if hk.now != nil {
		m.now = hk.now
	}
	if cfg.Fleet {
		if m.cache == nil || m.positiveTTL < 0 {
			return nil, errors.New("fleet mode needs the cache of VALID results (CacheSize and CacheTTL must not be negative)")
		}
		if m.fleet, err = newFleet(m, client, mount, cfg, hk); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Close stops the background work of Config.Fleet: it returns the uses left in the
// middleware's grants to the engine, sends the last usage report, and stops the change
// feed, renewals and reports. Requests after Close are still served, each metered one
// by a verify call (as without Fleet), VALID results for CacheTTL; answers they get from
// the cache are no longer reported. ctx bounds the calls to Vault. Close is safe to
// call more than once (later calls return the first one's error) and does nothing
// without Fleet.
func (m *Middleware) Close(ctx context.Context) error {
	if m.fleet == nil {
		return nil
	}
	return m.fleet.close(ctx)
}

func (m *Middleware) fleetCall(call string, elapsed time.Duration, err error) {
	if m.fleetObserver != nil {
		m.fleetObserver.FleetCall(call, elapsed, err)
	}
}

func headerName(v, def string) string {
	switch v {
	case "":
		return def
	case "-":
		return ""
	}
	return v
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func durationOrDefault(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

func intOrDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// Require returns middleware that lets a request through only with a key that is valid
// and granted every one of scopes; each request counts as one use of the key.
// Scopes must be valid scope names; Require panics otherwise, as it is set up once at
// start-up with constant scopes.
func (m *Middleware) Require(scopes ...string) func(http.Handler) http.Handler {
	return m.RequireCost(1, scopes...)
}

// RequireCost is Require with a request cost other than 1, counted against the key's
// max_uses (0 checks the key without counting a use).
func (m *Middleware) RequireCost(cost int, required ...string) func(http.Handler) http.Handler {
	return m.RequireCostTagged(cost, nil, required...)
}

// RequireTagged is Require whose verify calls also carry tags ("name=value", after
// Config.Tags; see Config.Tags for what is counted), for example
// []string{"route=/orders/{id}"} with a router that sets no http.Request.Pattern.
// Tags must be valid and, with Config.Tags and the route tag, at most MaxTags with no
// name twice; RequireTagged panics otherwise, as it is set up once at start-up.
func (m *Middleware) RequireTagged(tags []string, required ...string) func(http.Handler) http.Handler {
	return m.RequireCostTagged(1, tags, required...)
}

// RequireCostTagged is RequireCost with tags, as in RequireTagged.
func (m *Middleware) RequireCostTagged(cost int, tags []string, required ...string) func(http.Handler) http.Handler {
	if cost < 0 {
		panic("apikeyauth: cost must be 0 or more")
	}
	req := requirement{scopes: normalizeScopes(required), cost: cost, tags: m.tags}
	if err := scopes.Validate(req.scopes); err != nil {
		panic("apikeyauth: " + err.Error())
	}
	if len(tags) > 0 {
		all, err := checkTags(m.routeTag, append(slices.Clip(m.tags), tags...))
		if err != nil {
			panic("apikeyauth: tags: " + err.Error())
		}
		req.tags = all
	}
	req.scopeList = strings.Join(req.scopes, " ")
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m.serve(w, r, next, req)
		})
	}
}

type requirement struct {
	scopes    []string
	scopeList string // for WWW-Authenticate
	cost      int
	tags      []string // Config.Tags and the handler's: sent with every verify call
}

// normalizeScopes sorts and deduplicates a copy, so that the same requirement written in
// another order shares cache entries.
func normalizeScopes(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}

func (m *Middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler, req requirement) {
	key, presented := m.keyFrom(r)
	if !presented {
		m.refuse(w, CodeMissing, Result{}, req)
		return
	}
	clientIP := m.ClientIP(r)
	if _, err := keyformat.Parse(key); err != nil {
		m.noteRefusal(clientIP, CodeMalformed)
		m.refuse(w, CodeMalformed, Result{}, req)
		return
	}
	res, err := m.verify(r.Context(), key, req.scopes, clientIP, req.cost, m.tagsFor(r, req))
	if err != nil {
		if r.Context().Err() != nil {
			// The client went away; nobody reads the answer and Vault is not to blame.
			m.observer.Decision(CodeCanceled)
			return
		}
		m.log.LogAttrs(r.Context(), slog.LevelWarn, "api key verification failed",
			slog.String("error", err.Error()), slog.String("client_ip", addrString(clientIP)))
		m.refuse(w, CodeUnavailable, Result{}, req)
		return
	}
	if !res.Valid {
		attrs := []slog.Attr{slog.String("code", res.Code), slog.String("client_ip", addrString(clientIP))}
		if res.Identity != nil {
			attrs = append(attrs, slog.String("key_id", res.Identity.KeyID))
		}
		m.log.LogAttrs(r.Context(), slog.LevelDebug, "api key refused", attrs...)
		m.refuse(w, res.Code, res, req)
		return
	}
	m.observer.Decision(CodeValid)
	next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), res.Identity.clone())))
}

// keyFrom returns the presented key and whether one was presented at all. A header sent
// twice, or a bearer credential with nothing after the scheme, is presented but empty,
// which Parse rejects as malformed.
func (m *Middleware) keyFrom(r *http.Request) (string, bool) {
	if m.authzHeader != "" {
		switch values := r.Header.Values(m.authzHeader); len(values) {
		case 0:
		case 1:
			scheme, credential, _ := strings.Cut(strings.TrimSpace(values[0]), " ")
			// Another scheme (Basic, ...) is not ours: look at the API key header.
			if strings.EqualFold(scheme, "Bearer") {
				return strings.TrimSpace(credential), true
			}
		default:
			return "", true
		}
	}
	if m.apiKeyHeader != "" {
		switch values := r.Header.Values(m.apiKeyHeader); len(values) {
		case 0:
		case 1:
			return strings.TrimSpace(values[0]), true
		default:
			return "", true
		}
	}
	return "", false
}

type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// refuse writes the error response for code. Messages are constants and code is one of
// the known codes, so nothing the client or Vault sent is echoed.
func (m *Middleware) refuse(w http.ResponseWriter, code string, res Result, req requirement) {
	h := w.Header()
	var status int
	var msg string
	switch code {
	case CodeMissing:
		// RFC 6750 3.1: no error attribute when the request carried no credentials.
		status, msg = http.StatusUnauthorized, "an API key is required"
		h.Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q`, m.realm))
	case CodeMalformed, CodeNotFound:
		status, msg = http.StatusUnauthorized, "the API key is not valid"
	case CodeDisabled:
		status, msg = http.StatusUnauthorized, "the API key is disabled"
	case CodeExpired:
		status, msg = http.StatusUnauthorized, "the API key has expired"
	case CodeForbiddenIP:
		status, msg = http.StatusForbidden, "the API key may not be used from this address"
	case CodeInsufficientScope:
		status, msg = http.StatusForbidden, "the API key lacks a scope this request requires"
		h.Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q, error="insufficient_scope", scope=%q`, m.realm, req.scopeList))
	case CodeRateLimited:
		status, msg = http.StatusTooManyRequests, "the API key's rate limit is exceeded"
		h.Set("Retry-After", retryAfterSeconds(res.RetryAfter))
	case CodeUsageExceeded:
		status, msg = http.StatusTooManyRequests, "the API key's allowed uses are spent"
		if res.RetryAfter > 0 {
			h.Set("Retry-After", retryAfterSeconds(res.RetryAfter))
		}
	case CodeTooManyFailures:
		status, msg = http.StatusTooManyRequests, "too many invalid API keys from this address"
		h.Set("Retry-After", retryAfterSeconds(res.RetryAfter))
	case CodeUnavailable:
		status, msg = http.StatusServiceUnavailable, "API keys cannot be verified right now"
	default:
		// A code this version does not know: refuse, but do not echo it.
		status, msg, code = http.StatusForbidden, "the API key was refused", CodeRefused
	}
	m.observer.Decision(code)
	if status == http.StatusUnauthorized && code != CodeMissing {
		h.Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q, error="invalid_token"`, m.realm))
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorBody{Error: msg, Code: code})
}

// retryAfterSeconds rounds up to whole seconds (the header has no fractions), at least 1.
func retryAfterSeconds(d time.Duration) string {
	s := int64(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
