package apikeyauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usagestats"
)

// TestRouteTagValue: a route pattern becomes a valid tag value the same way every time,
// whatever bytes it holds, so that no pattern can make Vault refuse every request (400).
func TestRouteTagValue(t *testing.T) {
	long := "/" + strings.Repeat("a", 200)
	for _, tc := range []struct {
		name, pattern, want string
	}{
		{name: "empty: no route tag", pattern: "", want: ""},
		{name: "valid as it is", pattern: "/orders/{id}", want: "/orders/{id}"},
		{name: "method and space", pattern: "GET /orders/{id}", want: "GET_/orders/{id}"},
		{name: "host pattern", pattern: "POST api.example.com/orders/{id...}", want: "POST_api.example.com/orders/{id...}"},
		{name: "equals sign", pattern: "/a=b", want: "/a_b"},
		{name: "non-ASCII: one _ per byte", pattern: "/café", want: "/caf__"},
		{name: "control characters", pattern: "/a\tb\x00\x7f", want: "/a_b__"},
		{name: "cut to the longest value", pattern: long, want: long[:usagestats.MaxTagValueLen]},
		{name: "cut after the replacement", pattern: "GET " + long, want: ("GET_" + long)[:usagestats.MaxTagValueLen]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := routeTagValue(tc.pattern)
			require.Equal(t, tc.want, got)
			require.Equal(t, got, routeTagValue(tc.pattern), "deterministic")
			if got != "" {
				require.NoError(t, usagestats.Tag{Name: "route", Value: got}.Validate())
			}
		})
	}

	// Every byte value, alone and in a pattern, gives a value verify accepts.
	for c := 0; c < 256; c++ {
		for _, p := range []string{string([]byte{byte(c)}), "GET /x/" + string([]byte{byte(c)}) + "/{id}"} {
			_, err := usagestats.ParseTags([]string{"route=" + routeTagValue(p)})
			require.NoError(t, err, "pattern %q", p)
		}
	}
}

// TestNewRefusesBadTags: Config.Tags and Config.RouteTag are checked as verify checks
// them, so that a typo fails at start-up instead of making every verify a 400.
func TestNewRefusesBadTags(t *testing.T) {
	nine := make([]string, 9)
	eight := make([]string, 8)
	for i := range nine {
		nine[i] = "t" + string(rune('a'+i)) + "=v"
	}
	copy(eight, nine)
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string // "": accepted
	}{
		{name: "valid tags", cfg: Config{Tags: []string{"region=eu", "service=orders"}, RouteTag: "route"}},
		{name: "eight tags", cfg: Config{Tags: eight}},
		{name: "no =", cfg: Config{Tags: []string{"region"}}, wantErr: `"region": must be name=value`},
		{name: "upper-case name", cfg: Config{Tags: []string{"Region=eu"}}, wantErr: `"Region=eu"`},
		{name: "space in value", cfg: Config{Tags: []string{"region=eu west"}}, wantErr: `"region=eu west"`},
		{name: "empty value", cfg: Config{Tags: []string{"region="}}, wantErr: `"region=": empty value`},
		{name: "name twice", cfg: Config{Tags: []string{"region=eu", "region=us"}}, wantErr: `"region=us": name given twice`},
		{name: "too many", cfg: Config{Tags: nine}, wantErr: "at most 8 tags"},
		{name: "route tag takes one of the eight", cfg: Config{Tags: eight, RouteTag: "route"}, wantErr: "at most 8 tags"},
		{name: "route tag name also a static tag", cfg: Config{Tags: []string{"route=x"}, RouteTag: "route"}, wantErr: `"route=x": name given twice`},
		{name: "route tag not a name", cfg: Config{RouteTag: "Route"}, wantErr: `RouteTag "Route"`},
		{name: "route tag with =", cfg: Config{RouteTag: "route=x"}, wantErr: `RouteTag "route=x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Client = testClient(t, "http://127.0.0.1:1")
			_, err := New(tc.cfg)
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

// TestTagsSentToVerify: what the verify body carries, for requests routed by a
// ServeMux (which sets Request.Pattern) or not. The fake Vault refuses bad tags with a
// 400 as the engine does, so every case also proves the tags were valid.
func TestTagsSentToVerify(t *testing.T) {
	for _, tc := range []struct {
		name       string
		cfg        Config
		handlerTag []string // RequireTagged's tags; nil: Require
		pattern    string   // ServeMux pattern; "": the handler is called directly
		path       string
		wantTags   []string // nil: no tags field at all
	}{
		{name: "no tags configured", pattern: "GET /orders/{id}", path: "/orders/42"},
		{name: "route tag off: pattern not sent", cfg: Config{Tags: []string{"region=eu"}}, pattern: "GET /orders/{id}", path: "/orders/42", wantTags: []string{"region=eu"}},
		{name: "route tag: the pattern, not the path", cfg: Config{RouteTag: "route"}, pattern: "GET /orders/{id}", path: "/orders/42", wantTags: []string{"route=GET_/orders/{id}"}},
		{name: "route tag without a pattern: none (never the raw path)", cfg: Config{RouteTag: "route"}, path: "/orders/42"},
		{name: "static, handler and route tags", cfg: Config{Tags: []string{"region=eu"}, RouteTag: "endpoint"}, handlerTag: []string{"tier=gold"}, pattern: "/orders/", path: "/orders/42", wantTags: []string{"region=eu", "tier=gold", "endpoint=/orders/"}},
		{name: "handler tags without a router", handlerTag: []string{"route=/orders/{id}"}, path: "/orders/42", wantTags: []string{"route=/orders/{id}"}},
		{name: "pattern outside the charset is made valid", cfg: Config{RouteTag: "route"}, pattern: "GET /café/{id}", path: "/caf%C3%A9/1", wantTags: []string{"route=GET_/caf__/{id}"}},
		{name: "long pattern is cut", cfg: Config{RouteTag: "route"}, pattern: "/" + strings.Repeat("x", 300), path: "/" + strings.Repeat("x", 300), wantTags: []string{"route=/" + strings.Repeat("x", usagestats.MaxTagValueLen-1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg)
			h.vault.set(func(fv *fakeVault) { fv.data = validData(h.clock.Now(), time.Hour) })
			var handler http.Handler
			if tc.handlerTag != nil {
				handler = h.mw.RequireTagged(tc.handlerTag, "orders:read")(identityHandler())
			} else {
				handler = h.mw.Require("orders:read")(identityHandler())
			}
			if tc.pattern != "" {
				mux := http.NewServeMux()
				mux.Handle(tc.pattern, handler)
				handler = mux
			}
			r := httptest.NewRequest(http.MethodGet, tc.path, nil)
			r.Header.Set("X-API-Key", newKey(t))
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, r)
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			require.EqualValues(t, 1, h.vault.calls.Load())
			require.Equal(t, tc.wantTags, h.vault.lastRequest().Tags)
		})
	}
}

// TestVerifyCarriesConfigTags: Verify, without a request, sends Config.Tags only.
func TestVerifyCarriesConfigTags(t *testing.T) {
	h := newHarness(t, Config{Tags: []string{"region=eu"}, RouteTag: "route"})
	h.vault.set(func(fv *fakeVault) { fv.data = validData(h.clock.Now(), time.Hour) })
	res, err := h.mw.Verify(context.Background(), newKey(t), []string{"orders:read"}, netip.Addr{}, 1)
	require.NoError(t, err)
	require.True(t, res.Valid)
	require.Equal(t, []string{"region=eu"}, h.vault.lastRequest().Tags)
}

// TestCachedResultServesOtherTags: tags label a call but never change verify's answer,
// so a cached VALID result answers a request under another route without a Vault call
// (which is why counts per tag are a sample with the cache on). A metered key is never
// cached, so each of its requests is counted under its own tags.
func TestCachedResultServesOtherTags(t *testing.T) {
	for _, tc := range []struct {
		name      string
		metered   bool
		wantCalls int64
		wantLast  []string
	}{
		{name: "cached VALID serves another route", wantCalls: 1, wantLast: []string{"route=GET_/a"}},
		{name: "metered key: every request counted with its own tags", metered: true, wantCalls: 2, wantLast: []string{"route=GET_/b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{RouteTag: "route"})
			h.vault.set(func(fv *fakeVault) {
				fv.data = validData(h.clock.Now(), time.Hour)
				if tc.metered {
					fv.data["remaining_uses"] = 10
				}
			})
			mux := http.NewServeMux()
			mux.Handle("GET /a", h.mw.Require("orders:read")(identityHandler()))
			mux.Handle("GET /b", h.mw.Require("orders:read")(identityHandler()))
			key := newKey(t)
			for _, path := range []string{"/a", "/b"} {
				r := httptest.NewRequest(http.MethodGet, path, nil)
				r.RemoteAddr = "198.51.100.7:40000" // one client address: one cache entry
				r.Header.Set("X-API-Key", key)
				rec := httptest.NewRecorder()
				mux.ServeHTTP(rec, r)
				require.Equal(t, http.StatusOK, rec.Code, path)
			}
			require.Equal(t, tc.wantCalls, h.vault.calls.Load())
			require.Equal(t, tc.wantLast, h.vault.lastRequest().Tags)
		})
	}
}

// TestRequireTaggedRefusesBadTags: handler tags are set up once at start-up with
// constant values, so a bad one panics like a bad scope does.
func TestRequireTaggedRefusesBadTags(t *testing.T) {
	h := newHarness(t, Config{Tags: []string{"region=eu"}, RouteTag: "route"})
	for _, tc := range []struct {
		name, wantPanic string
		tags            []string
	}{
		{name: "not name=value", tags: []string{"tier"}, wantPanic: `"tier": must be name=value`},
		{name: "bad value", tags: []string{"tier=gold plus"}, wantPanic: `"tier=gold plus"`},
		{name: "name of a Config tag", tags: []string{"region=us"}, wantPanic: `"region=us": name given twice`},
		{name: "name of the route tag", tags: []string{"route=/x"}, wantPanic: `"route=/x": name given twice`},
		{name: "more than 8 with Config.Tags and the route tag", tags: []string{"a=1", "b=1", "c=1", "d=1", "e=1", "f=1", "g=1"}, wantPanic: "at most 8 tags"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				p := recover()
				require.NotNil(t, p, "RequireTagged did not panic")
				require.Contains(t, p, tc.wantPanic)
			}()
			h.mw.RequireTagged(tc.tags, "orders:read")
		})
	}
	// Six handler tags fit: with region and route, eight in all.
	require.NotPanics(t, func() { h.mw.RequireTagged([]string{"a=1", "b=1", "c=1", "d=1", "e=1", "f=1"}) })
}
