// Package apikeyauth is net/http middleware that lets a service accept the API keys issued
// by the apikey secrets engine.
//
// For every request it reads the key from "Authorization: Bearer <key>" or "X-API-Key"
// (both names configurable), rejects keys that are not even well formed locally (prefix,
// charset, length, checksum: no Vault call), and otherwise asks Vault's <mount>/verify
// through the official API client, passing the scopes the handler requires, the client's
// IP address and the request's cost. The answer decides the response:
//
//	VALID                                    the handler runs; IdentityFrom(ctx) has the key's identity
//	no key                                   401, WWW-Authenticate: Bearer realm="api"
//	MALFORMED, NOT_FOUND, DISABLED, EXPIRED  401, WWW-Authenticate: Bearer realm="api", error="invalid_token"
//	FORBIDDEN_IP, INSUFFICIENT_SCOPE         403 (insufficient_scope also named in WWW-Authenticate)
//	RATE_LIMITED                             429 with Retry-After
//	USAGE_EXCEEDED                           429 (Retry-After only if Vault gave one: spent uses do not come back)
//	TOO_MANY_FAILURES (the middleware's own) 429 with Retry-After: the client's failure budget is spent
//	Vault unreachable, 5xx, any other error  503: the middleware fails closed
//
// Error bodies are small JSON objects {"error": "...", "code": "..."}. Neither bodies,
// logs nor errors ever contain the key; cache entries are keyed by a SHA-256 of it.
//
// # Client address
//
// The client IP sent to verify (checked there against the role's bound_cidrs) is the
// connection's peer address. Only when that peer is in Config.TrustedProxies is
// X-Forwarded-For consulted, walking it from the right and taking the first address that
// is not itself a trusted proxy: every hop left of that was written by the client and
// can be forged. An unparsable hop makes the address unknown, and verify then refuses
// keys that are bound to CIDRs.
//
// # Failure budget
//
// Anyone can mint well-formed keys (the checksum is public), and only Vault can refuse
// them. So each client address (an IPv6 client's /64) may collect Config.FailureBudget
// refusals that say the key is no usable key (MALFORMED, NOT_FOUND, DISABLED, EXPIRED)
// per Config.FailureWindow (default 60 per minute). Beyond that, its requests that would
// ask Vault get 429 TOO_MANY_FAILURES with Retry-After until the window ends; answers
// already cached are still served. Addresses are tracked in a bounded LRU.
//
// # Caching, and what it costs
//
// Results are kept in bounded LRU caches keyed by SHA-256(key, scopes, client IP, cost),
// VALID results apart from refusals, so that refusals (which anyone can cause) never
// evict a VALID result:
//
//   - VALID results for at most Config.CacheTTL (default 5s), and never past the key's
//     expires_at (nor its ttl, which guards against clock skew between Vault and the
//     service);
//   - negative results (NOT_FOUND, DISABLED, EXPIRED, FORBIDDEN_IP, INSUFFICIENT_SCOPE,
//     USAGE_EXCEEDED, MALFORMED) for Config.NegativeCacheTTL (default 1s); RATE_LIMITED
//     for that long or until its retry_after, whichever is sooner;
//   - errors never.
//
// Concurrent misses for the same cache key are collapsed into one Vault call
// (singleflight). Each Vault call sends a fresh random request_id, which the API client
// repeats when it retries after a 5xx, so that verify does not charge the key twice.
//
// The price of the cache is staleness and counting. A key that is revoked or disabled
// in Vault keeps working in this process until its cached VALID result expires, so
// Config.CacheTTL is the bound on how late a revocation takes effect here. And Vault
// counts a use (max_uses) and spends a rate-limit token only when it is asked: a request
// served from the cache, or collapsed into another request's Vault call, is neither
// counted nor rate limited. Rate limits are therefore enforced by Vault on cache misses
// only: with caching on, a key makes at most one Vault call per distinct (scopes, client
// IP) per CacheTTL, however many requests it sends. To keep max_uses and rate limits
// exact, a VALID result for a metered key (verify returns remaining_uses or rate_limit:
// the key has max_uses or a rate limit) is never cached and never shared with collapsed
// requests: each such request makes its own Vault call (with Config.Fleet, it spends a
// quota grant instead: see below).
//
// # Fleet
//
// Config.Fleet (off by default; then nothing of this happens and verify requests are as
// above) is for many middleware instances in front of one engine: replicas of a service,
// gateway processes. The guarantees, and what may be over- or under-admitted for how
// long, are in docs/gateway.md#fleet. With it:
//
//   - Every verify call carries this instance's random holder id. A VALID answer for a
//     metered key then carries a quota grant: uses already debited from the key's
//     max_uses, and a share of each of its rate limits. Such answers are cached too, and
//     each request served from the cache spends the grant: its uses exactly, and a token
//     of its share of each rate (a spent share answers RATE_LIMITED with Retry-After, no
//     Vault call). An empty grant sends the request to verify, which tops it up. Grants
//     are renewed in the background (at half their TTL, or when low), sized by the
//     demand seen; idle ones are released with their unused uses.
//   - The engine's change feed is long-polled. Its events (revoked, disabled, rotated,
//     expiry or limits changed, ...) drop the cached answers about the key, answers of
//     Vault calls in flight included, and the key's grant when the engine cancelled it;
//     a reset drops everything. While the feed is healthy (it answered within
//     Config.FeedTimeout, 15s), VALID results are reused for up to Config.FleetCacheTTL
//     (60s); otherwise only for Config.CacheTTL from when they were stored.
//   - Answers served without a Vault call (cache hits, grant spends, local refusals) are
//     reported every Config.FleetReportInterval (5s), counted per key, code, tags and
//     client network, so that the engine's counts and anomaly detection see all traffic.
//     A report holds at most 10000 groups; beyond, answers are left out (and logged).
//
// Close returns the grants' unused uses, sends the last report and stops the background
// work. The Vault token needs the verifier policy's grants/renew, feed and usage/report.
// A FleetObserver (an Observer with FleetCall) hears of every Vault call by kind.
//
// # Usage tags
//
// Verify calls may carry tags ("name=value") that the engine counts usage by
// (docs/reference.md#verify): Config.Tags on every call, a handler's own with
// RequireTagged or RequireCostTagged, and, with Config.RouteTag set, RouteTag=<pattern>
// for requests a net/http ServeMux routed (http.Request.Pattern; bytes a tag value may
// not hold become '_', so "GET /orders/{id}" is sent as "GET_/orders/{id}"). The raw URL
// path is never sent: its values are unbounded. Tags are checked at set-up as verify
// checks them. They are not part of the cache key, since they never change the answer:
// only verify calls (cache misses) are counted, so with the cache on the counts per tag
// are a sample of the requests, not all of them.
package apikeyauth
