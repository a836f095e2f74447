package dashboard

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testClock is a clock the test moves.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	t     *testing.T
	vault *fakeVault
	srv   *Server
	http  *httptest.Server
	log   *syncBuffer
	clock *testClock
	base  string
}

const (
	adminToken  = "hvs.admin-token-0123456789"
	readerToken = "hvs.reader-token-0123456789"
)

// newEnv is a dashboard under /dash in front of a fake Vault with an admin and a reader
// token, a user alice and a role demo.
func newEnv(t *testing.T, mutate ...func(*Config)) *env {
	t.Helper()
	fv := newFakeVault(t)
	fv.addToken(adminToken, "token-admin", 0, false)
	fv.addToken(readerToken, "token-reader", 0, true)
	fv.users["alice"] = "alice-password-1"
	fv.roles["demo"] = roleData{Scopes: []string{"orders:read"}, KeyPrefix: "vk", TTL: 3600}
	log := &syncBuffer{}
	clock := &testClock{now: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
	cfg := Config{
		VaultAddr: fv.srv.URL,
		BasePath:  "/dash",
		Logger:    slog.New(slog.NewJSONHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:       clock.Now,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	srv, err := New(cfg)
	require.NoError(t, err)
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return &env{t: t, vault: fv, srv: srv, http: hs, log: log, clock: clock, base: hs.URL + "/dash"}
}

// client is a browser stand-in: a cookie jar, no redirects followed, and the session's
// CSRF token once signed in.
type client struct {
	e    *env
	http *http.Client
	csrf string
}

func (e *env) client() *client {
	jar, err := cookiejar.New(nil)
	require.NoError(e.t, err)
	return &client{e: e, http: &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type response struct {
	*http.Response
	body string
}

func (c *client) get(path string) response {
	c.e.t.Helper()
	resp, err := c.http.Get(c.e.base + path)
	require.NoError(c.e.t, err)
	return read(c.e.t, resp)
}

func read(t *testing.T, resp *http.Response) response {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return response{resp, string(b)}
}

// post sends a form; with the session's CSRF token unless form has one (or "-" to send
// none).
func (c *client) post(path string, form url.Values) response {
	c.e.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	switch form.Get("csrf") {
	case "":
		form.Set("csrf", c.csrf)
	case "-":
		form.Del("csrf")
	}
	resp, err := c.http.PostForm(c.e.base+path, form)
	require.NoError(c.e.t, err)
	return read(c.e.t, resp)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func formCSRF(t *testing.T, html string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(html)
	require.NotNil(t, m, "no CSRF field in %s", html)
	return m[1]
}

// login signs in with form (method and its fields) through the sign-in page.
func (c *client) login(form url.Values) response {
	c.e.t.Helper()
	page := c.get("/login")
	require.Equal(c.e.t, http.StatusOK, page.StatusCode)
	form.Set("csrf", formCSRF(c.e.t, page.body))
	resp := c.post("/login", form)
	if resp.StatusCode == http.StatusSeeOther {
		home := c.get("/")
		require.Equal(c.e.t, http.StatusOK, home.StatusCode, home.body)
		c.csrf = formCSRF(c.e.t, home.body)
	}
	return resp
}

func (c *client) loginToken(token string) response {
	return c.login(url.Values{"method": {"token"}, "token": {token}})
}

func (c *client) loginUserpass(user, password string) response {
	return c.login(url.Values{"method": {"userpass"}, "username": {user}, "password": {password}})
}

func (c *client) sessionCookie() *http.Cookie {
	u, _ := url.Parse(c.e.base + "/")
	for _, ck := range c.http.Jar.Cookies(u) {
		if ck.Name == sessionCookie {
			return ck
		}
	}
	return nil
}

func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	c.loginToken(adminToken)
	for _, path := range []string{"/login", "/", "/keys", "/nowhere"} {
		r := c.get(path)
		h := r.Header
		require.Equal(t, contentSecurityPolicy, h.Get("Content-Security-Policy"), path)
		require.Contains(t, h.Get("Content-Security-Policy"), "script-src 'self'")
		require.Contains(t, h.Get("Content-Security-Policy"), "frame-ancestors 'none'")
		require.NotContains(t, h.Get("Content-Security-Policy"), "unsafe-inline")
		require.Equal(t, "nosniff", h.Get("X-Content-Type-Options"))
		require.Equal(t, "no-referrer", h.Get("Referrer-Policy"))
		require.Equal(t, "DENY", h.Get("X-Frame-Options"))
		require.Equal(t, "no-store", h.Get("Cache-Control"))
		// No inline script or style anywhere: the CSP would block it anyway.
		require.NotRegexp(t, `<script>|<script [^>]*>[^<]|<style|style="|onclick=|onload=|onerror=|javascript:`, r.body, path)
	}
	// Assets: immutable under their hash.
	home := c.get("/")
	m := regexp.MustCompile(`src="(/dash/assets/app\.js\?v=[0-9a-f]+)"`).FindStringSubmatch(home.body)
	require.NotNil(t, m)
	resp, err := c.http.Get(e.http.URL + m[1])
	require.NoError(t, err)
	js := read(t, resp)
	require.Equal(t, http.StatusOK, js.StatusCode)
	require.Equal(t, "text/javascript; charset=utf-8", js.Header.Get("Content-Type"))
	require.Contains(t, js.Header.Get("Cache-Control"), "immutable")
	require.NotContains(t, c.get("/assets/../dashboard.go").body, "package dashboard")
	require.Equal(t, http.StatusNotFound, c.get("/assets/nope.css").StatusCode)

	hsts := newEnv(t, func(c *Config) { c.HSTS = true })
	require.Contains(t, hsts.client().get("/login").Header.Get("Strict-Transport-Security"), "max-age=")
}

func TestSignInWithATokenAndTheSessionCookie(t *testing.T) {
	for _, secure := range []bool{false, true} {
		e := newEnv(t, func(c *Config) { c.SecureCookies = secure })
		c := e.client()
		resp := c.loginToken(adminToken)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		require.Equal(t, "/dash/", resp.Header.Get("Location"))
		var session *http.Cookie
		for _, ck := range resp.Cookies() {
			if ck.Name == sessionCookie {
				session = ck
			}
		}
		require.NotNil(t, session)
		require.True(t, session.HttpOnly)
		require.Equal(t, http.SameSiteStrictMode, session.SameSite)
		require.Equal(t, "/dash", session.Path)
		require.Equal(t, secure, session.Secure)
		require.Len(t, session.Value, 43, "32 random bytes, base64url")
		require.NotContains(t, session.Value, adminToken)
		home := c.get("/")
		require.Contains(t, home.body, "token-admin", "the token's display name")
		require.NotContains(t, home.body, adminToken)
	}
}

func TestSignInRefusals(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	// No CSRF cookie and field: refused before Vault is asked.
	r := c.post("/login", url.Values{"method": {"token"}, "token": {adminToken}, "csrf": {"-"}})
	require.Equal(t, http.StatusForbidden, r.StatusCode)
	r = c.post("/login", url.Values{"method": {"token"}, "token": {adminToken}, "csrf": {"forged"}})
	require.Equal(t, http.StatusForbidden, r.StatusCode)
	require.Empty(t, e.vault.calls())
	// A field that does not match the cookie.
	c.get("/login")
	r = c.post("/login", url.Values{"method": {"token"}, "token": {adminToken}, "csrf": {strings.Repeat("x", 43)}})
	require.Equal(t, http.StatusForbidden, r.StatusCode)
	require.Empty(t, e.vault.calls())

	require.Equal(t, http.StatusUnauthorized, c.loginToken("hvs.unknown").StatusCode)
	require.Equal(t, http.StatusBadRequest, c.loginToken("not a token").StatusCode)
	require.Equal(t, http.StatusUnauthorized, c.loginUserpass("alice", "wrong").StatusCode)
	bad := c.loginUserpass("../../sys/seal", "x")
	require.Equal(t, http.StatusBadRequest, bad.StatusCode, "a user name cannot change the login path")
	for _, call := range e.vault.calls() {
		require.NotContains(t, call.Path, "sys/seal")
	}
	require.Nil(t, c.sessionCookie())
}

func TestCSRFIsRequiredOnEveryStateChangingForm(t *testing.T) {
	e := newEnv(t)
	e.vault.addKey(keyRecord{KeyID: "AAAAAAAAAAAAAAAA", Role: "demo"})
	c := e.client()
	c.loginToken(adminToken)
	before := len(e.vault.writes())
	posts := []string{"/logout", "/issue", "/rotate", "/roles/new", "/roles/demo/edit",
		"/keys/AAAAAAAAAAAAAAAA/disable", "/keys/AAAAAAAAAAAAAAAA/enable", "/keys/AAAAAAAAAAAAAAAA/rotate", "/keys/AAAAAAAAAAAAAAAA/delete"}
	for _, p := range posts {
		for _, token := range []string{"-", "wrong", strings.Repeat("A", 43)} {
			r := c.post(p, url.Values{"csrf": {token}, "role": {"demo"}, "name": {"x"}, "disabled": {"true"}})
			require.Equal(t, http.StatusForbidden, r.StatusCode, "%s with csrf %q", p, token)
			require.Contains(t, r.body, "CSRF")
		}
	}
	require.Len(t, e.vault.writes(), before, "no Vault write without the CSRF token")
	require.NotNil(t, c.sessionCookie(), "still signed in")
	// Another session's token does not do either.
	other := e.client()
	other.loginToken(adminToken)
	require.NotEqual(t, c.csrf, other.csrf)
	r := c.post("/keys/AAAAAAAAAAAAAAAA/disable", url.Values{"csrf": {other.csrf}})
	require.Equal(t, http.StatusForbidden, r.StatusCode)
	// The right one does.
	r = c.post("/keys/AAAAAAAAAAAAAAAA/disable", nil)
	require.Equal(t, http.StatusSeeOther, r.StatusCode)
	require.True(t, e.vault.keys["AAAAAAAAAAAAAAAA"].Disabled)
}

func TestHostileValuesAreEscaped(t *testing.T) {
	e := newEnv(t)
	hostile := `<script>alert(1)</script>"'&<img src=x onerror=alert(2)>`
	e.vault.addKey(keyRecord{KeyID: "AAAAAAAAAAAAAAAA", Role: "demo", Name: hostile,
		Metadata: map[string]string{hostile: hostile}, Scopes: []string{hostile}, BoundCIDRs: []string{hostile},
		CreatedAt: "2026-11-28T10:00:00Z", ExpiresAt: hostile})
	c := e.client()
	c.loginToken(adminToken)
	pages := []string{"/", "/keys", "/keys?name=" + url.QueryEscape(hostile) + "&metadata=" + url.QueryEscape(hostile),
		"/keys/AAAAAAAAAAAAAAAA", "/keys/AAAAAAAAAAAAAAAA/rotate"}
	for _, p := range pages {
		r := c.get(p)
		require.Equal(t, http.StatusOK, r.StatusCode, p)
		require.NotContains(t, r.body, "<script>alert", p)
		require.NotContains(t, r.body, "<img src=x", p)
		require.NotContains(t, r.body, "<b>x</b>", p)
		require.NotContains(t, r.body, `<script>alert("a")`, p)
	}
	detail := c.get("/keys/AAAAAAAAAAAAAAAA").body
	require.Contains(t, detail, "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;&amp;&lt;img src=x onerror=alert(2)&gt;")

	// An issued key's name and metadata, and the engine's own messages.
	r := c.post("/issue", url.Values{"role": {"demo"}, "name": {hostile}, "metadata": {"k=" + hostile}})
	require.Equal(t, http.StatusOK, r.StatusCode, r.body)
	require.NotContains(t, r.body, "<script>alert")
	require.Contains(t, r.body, "&lt;script&gt;")
	r = c.post("/roles/new", url.Values{"name": {"r1"}, "ttl": {"bad"}})
	require.Equal(t, http.StatusBadRequest, r.StatusCode)
	require.Contains(t, r.body, `ttl: &#34;bad&#34; is not a duration &lt;script&gt;`)
}

func TestIssuedKeyIsShownOnceAndNeverLoggedOrInAURL(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	c.loginUserpass("alice", "alice-password-1")
	r := c.post("/issue", url.Values{"role": {"demo"}, "scopes": {"orders:read"}, "ttl": {"10m"}, "name": {"ci"}, "metadata": {"a=1\nb=x=y"}})
	require.Equal(t, http.StatusOK, r.StatusCode, r.body)
	require.Len(t, e.vault.issued, 1)
	key := e.vault.issued[0]
	require.Equal(t, 1, strings.Count(r.body, key), "the key once, in the page")
	require.Equal(t, "no-store", r.Header.Get("Cache-Control"))
	require.Contains(t, r.body, `id="lease-warning"`, "a userpass session is told sign-out revokes the key")
	last := e.vault.calls()[len(e.vault.calls())-1]
	require.Equal(t, "/v1/apikey/creds/demo", last.Path)
	require.Equal(t, map[string]any{"scopes": []any{"orders:read"}, "ttl": "10m", "name": "ci", "metadata": map[string]any{"a": "1", "b": "x=y"}}, last.Body)

	// No other page has it, and no log line.
	for _, p := range []string{"/", "/keys", "/keys/" + last.Body["name"].(string)} {
		require.NotContains(t, c.get(p).body, key)
	}
	r = c.post("/keys/K000000000000002/rotate", url.Values{"role": {"demo"}, "grace_period": {"10m"}, "api_key": {key}})
	require.Equal(t, http.StatusOK, r.StatusCode, r.body)
	rotated := e.vault.issued[1]
	require.Contains(t, r.body, rotated)
	require.NotContains(t, r.body, key, "the key given as proof of possession is not shown back")
	require.Equal(t, map[string]any{"api_key": key, "grace_period": "10m"}, e.vault.calls()[len(e.vault.calls())-1].Body)

	// An issuer rotates a key it holds from the issue page.
	r = c.post("/rotate", url.Values{"role": {"demo"}, "api_key": {rotated}, "grace_period": {"0"}})
	require.Equal(t, http.StatusOK, r.StatusCode, r.body)
	require.Contains(t, r.body, e.vault.issued[2])
	require.NotContains(t, r.body, rotated)
	require.Equal(t, map[string]any{"api_key": rotated, "grace_period": "0"}, e.vault.calls()[len(e.vault.calls())-1].Body)
	r = c.post("/rotate", url.Values{"role": {"demo"}})
	require.Equal(t, http.StatusBadRequest, r.StatusCode)
	require.Contains(t, r.body, "paste the key")

	c.post("/logout", nil)
	log := e.log.String()
	require.Contains(t, log, `"msg":"key issued"`)
	for _, secret := range append([]string{"alice-password-1", adminToken}, e.vault.issued...) {
		require.NotContains(t, log, secret)
	}
	for _, call := range e.vault.calls() {
		require.NotContains(t, call.Path+call.Query, "password")
		if strings.HasPrefix(call.Token, "hvs.userpass") {
			require.NotContains(t, log, call.Token, "the session's token is never logged")
		}
	}
}

func TestForbiddenPagesNameTheCapabilityAndPath(t *testing.T) {
	e := newEnv(t)
	e.vault.addKey(keyRecord{KeyID: "AAAAAAAAAAAAAAAA", Role: "demo"})
	c := e.client()
	c.loginToken(readerToken)
	for _, tc := range []struct {
		method, path, form, capability, vaultPath string
	}{
		{"POST", "/keys/AAAAAAAAAAAAAAAA/disable", "", "update", "apikey/keys/AAAAAAAAAAAAAAAA"},
		{"POST", "/keys/AAAAAAAAAAAAAAAA/delete", "", "delete", "apikey/keys/AAAAAAAAAAAAAAAA"},
		{"POST", "/issue", "role=demo", "update", "apikey/creds/demo"},
		{"POST", "/roles/demo/edit", "scopes=a", "update", "apikey/roles/demo"},
	} {
		form, _ := url.ParseQuery(tc.form)
		r := c.post(tc.path, form)
		require.Equal(t, http.StatusForbidden, r.StatusCode, tc.path)
		require.Contains(t, r.body, `<code class="cap" id="denied-capability">`+tc.capability+`</code>`, tc.path)
		require.Contains(t, r.body, `<code class="vpath" id="denied-path">`+tc.vaultPath+`</code>`, tc.path)
		require.Contains(t, r.body, "permission denied")
		require.Contains(t, r.body, `path "`+strings.ReplaceAll(policyPath(tc.vaultPath), "+", "&#43;")+`" {`)
	}
	require.False(t, e.vault.keys["AAAAAAAAAAAAAAAA"].Disabled)
	// The key page offers no action the token lacks.
	page := c.get("/keys/AAAAAAAAAAAAAAAA").body
	require.NotContains(t, page, `id="action-disable"`)
	require.NotContains(t, page, `id="action-delete"`)
	require.Contains(t, page, "cannot <code>update</code>")
	// A part of the overview the token may not read says so in place.
	page = c.get("/").body
	require.Contains(t, page, "Counted from the inventory", "no metrics read: the inventory fallback")
}

func TestATokenVaultNoLongerAcceptsEndsTheSession(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	c.loginUserpass("alice", "alice-password-1")
	e.vault.mu.Lock()
	for _, tok := range e.vault.tokens {
		if tok.name == "userpass-alice" {
			tok.dead = true // revoked behind the dashboard's back
		}
	}
	e.vault.mu.Unlock()
	r := c.get("/keys")
	require.Equal(t, http.StatusSeeOther, r.StatusCode)
	require.Equal(t, "/dash/login?ended=1", r.Header.Get("Location"))
	require.Equal(t, 0, e.srv.sessions.len())
	require.Contains(t, c.get("/login?ended=1").body, "Your session ended")
}

func TestSessionsExpireWithTheTokenAndTheMaximum(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SessionTTLMax = 2 * time.Hour })
	e.vault.addToken("hvs.short", "short", 60, false)
	short := e.client()
	short.loginToken("hvs.short")
	long := e.client()
	long.loginToken(adminToken) // no TTL: the maximum applies
	require.Equal(t, http.StatusOK, short.get("/").StatusCode)
	e.clock.add(61 * time.Second)
	require.Equal(t, http.StatusSeeOther, short.get("/").StatusCode, "ended with its token's TTL")
	require.Equal(t, http.StatusOK, long.get("/").StatusCode)
	e.clock.add(2 * time.Hour)
	require.Equal(t, http.StatusSeeOther, long.get("/").StatusCode, "ended at -session-ttl-max")
	require.Equal(t, 0, e.srv.sessions.len())
}

func TestSessionsAreBounded(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxSessions = 3 })
	clients := make([]*client, 4)
	for i := range 3 {
		clients[i] = e.client()
		clients[i].loginToken(adminToken)
	}
	clients[0].get("/") // the first is now the most recently used; the second the least
	clients[3] = e.client()
	clients[3].loginToken(adminToken)
	require.Equal(t, 3, e.srv.sessions.len())
	require.Equal(t, http.StatusOK, clients[0].get("/").StatusCode)
	require.Equal(t, http.StatusSeeOther, clients[1].get("/").StatusCode, "the least recently used session went")
	require.Equal(t, http.StatusOK, clients[2].get("/").StatusCode)
	require.Equal(t, http.StatusOK, clients[3].get("/").StatusCode)
}

func TestSignOutRevokesOnlyWhatTheDashboardObtained(t *testing.T) {
	e := newEnv(t)
	pasted := e.client()
	pasted.loginToken(adminToken)
	r := pasted.post("/logout", nil)
	require.Equal(t, http.StatusSeeOther, r.StatusCode)
	require.Equal(t, "/dash/login?out=kept", r.Header.Get("Location"))
	require.Empty(t, e.vault.revoked, "a pasted token is never revoked")
	require.Equal(t, http.StatusSeeOther, pasted.get("/").StatusCode)

	owned := e.client()
	owned.loginUserpass("alice", "alice-password-1")
	old := owned.sessionCookie()
	r = owned.post("/logout", nil)
	require.Equal(t, "/dash/login?out=revoked", r.Header.Get("Location"))
	require.Len(t, e.vault.revoked, 1)
	require.True(t, strings.HasPrefix(e.vault.revoked[0], "hvs.userpass-alice"))
	require.Nil(t, owned.sessionCookie(), "the cookie is cleared")
	// The old cookie value is worth nothing now.
	req, _ := http.NewRequest(http.MethodGet, e.base+"/", nil)
	req.AddCookie(old)
	resp, err := http.DefaultTransport.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
}

// TestKeyIdentityIsShown: the key's identity (issue 17) is on the detail page and in
// the list, escaped like every value an issuer chooses.
func TestKeyIdentityIsShown(t *testing.T) {
	e := newEnv(t)
	e.vault.addKey(keyRecord{KeyID: "BBBBBBBBBBBBBBBB", Role: "demo", Name: "n", Identity: "customer:<acme>", SharedLimits: true,
		CreatedAt: "2026-11-28T10:00:00Z", ExpiresAt: "2026-12-28T10:00:00Z"})
	c := e.client()
	c.loginToken(adminToken)
	detail := c.get("/keys/BBBBBBBBBBBBBBBB").body
	require.Contains(t, detail, `<dd id="key-identity"><code>customer:&lt;acme&gt;</code>`)
	require.Contains(t, detail, "shared with its other keys")
	require.Contains(t, c.get("/keys").body, `<td class="identity"><code>customer:&lt;acme&gt;</code></td>`)
}

func TestKeyListPagesThroughTheEngine(t *testing.T) {
	e := newEnv(t)
	for i := range 60 {
		e.vault.addKey(keyRecord{KeyID: "K" + strings.Repeat("0", 13) + itoa(10+i), Role: "demo", Name: "k"}) // K000000000000010...
	}
	c := e.client()
	c.loginToken(adminToken)
	r := c.get("/keys?role=demo&limit=25&name=k*&metadata=" + url.QueryEscape("a=1, b=2"))
	require.Equal(t, http.StatusOK, r.StatusCode)
	require.Equal(t, 25, strings.Count(r.body, "<tr data-key-id="))
	last := e.vault.calls()
	var list fakeRequest
	for _, call := range last {
		if call.Path == "/v1/apikey/keys" {
			list = call
		}
	}
	q, _ := url.ParseQuery(list.Query)
	require.Equal(t, "25", q.Get("limit"))
	require.Equal(t, "", q.Get("after"))
	require.Equal(t, []string{"a=1", "b=2"}, q["metadata"])
	require.Equal(t, "k*", q.Get("name"))
	m := regexp.MustCompile(`id="next-page" rel="next" href="|href="([^"]+)" id="next-page"`).FindStringSubmatch(r.body)
	require.NotNil(t, m, "a next page link")
	next := strings.NewReplacer("&amp;", "&", "&#43;", "+").Replace(m[1])
	require.Contains(t, next, "after=K000000000000034")
	r2 := c.get(strings.TrimPrefix(next, "/dash"))
	require.Equal(t, 25, strings.Count(r2.body, "<tr data-key-id="))
	require.Contains(t, r2.body, `id="first-page"`)
	require.NotContains(t, r2.body, `data-key-id="K000000000000034"`)
	require.Contains(t, r2.body, `data-key-id="K000000000000035"`)

	// A key_id search opens the key; a bad filter shows the engine's message.
	r = c.get("/keys?key_id=K000000000000010")
	require.Equal(t, http.StatusSeeOther, r.StatusCode)
	require.Equal(t, "/dash/keys/K000000000000010", r.Header.Get("Location"))
	r = c.get("/keys?unused_for=soon")
	require.Equal(t, http.StatusBadRequest, r.StatusCode)
	require.Contains(t, r.body, "unused_for: &#34;soon&#34; is not a duration")
}

func TestRoleFormsAndNamesThatWouldChangeThePath(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	c.loginToken(adminToken)
	before := len(e.vault.writes())
	for _, name := range []string{"../sys", "a/b", "Upper", "", "a..b", "-x"} {
		r := c.post("/roles/new", url.Values{"name": {name}})
		require.Equal(t, http.StatusBadRequest, r.StatusCode, name)
		r = c.post("/issue", url.Values{"role": {name}})
		require.Equal(t, http.StatusBadRequest, r.StatusCode, name)
	}
	require.Len(t, e.vault.writes(), before)
	require.Equal(t, http.StatusNotFound, c.get("/roles/..%2fsys").StatusCode)

	r := c.post("/roles/new", url.Values{"name": {"demo"}})
	require.Contains(t, r.body, "exists already", "create does not overwrite")
	r = c.post("/roles/new", url.Values{"name": {"reports"}, "scopes": {"a, b"}, "ttl": {"30m"}, "metadata": {"team=x"}})
	require.Equal(t, http.StatusSeeOther, r.StatusCode, r.body)
	require.Equal(t, "/dash/roles/reports?done=role-created", r.Header.Get("Location"))
	w := e.vault.writes()
	require.Equal(t, map[string]any{"scopes": []any{"a", "b"}, "ttl": "30m", "metadata": map[string]any{"team": "x"}}, w[len(w)-1].Body,
		"a new role gets only what was filled in")
	// An edit sends every field, so clearing one clears it.
	r = c.post("/roles/reports/edit", url.Values{"scopes": {""}, "key_prefix": {"vk"}})
	require.Equal(t, http.StatusSeeOther, r.StatusCode, r.body)
	w = e.vault.writes()
	require.Equal(t, map[string]any{"scopes": []any{}, "bound_cidrs": []any{}, "metadata": map[string]any{}, "ttl": "0", "max_ttl": "0",
		"rate_limit": "0", "rate_limit_burst": "0", "max_uses": "0", "key_prefix": "vk"}, w[len(w)-1].Body)
	r = c.post("/roles/reports/edit", url.Values{"metadata": {"novalue"}})
	require.Equal(t, http.StatusBadRequest, r.StatusCode)
	require.Contains(t, r.body, "metadata: line 1 is not key=value")
}

func TestBasePathAndRoutes(t *testing.T) {
	e := newEnv(t)
	resp, err := http.Get(e.http.URL + "/keys")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "nothing outside the base path")
	c := e.client()
	r := c.get("")
	require.Equal(t, http.StatusSeeOther, r.StatusCode)
	require.Equal(t, "/dash/", r.Header.Get("Location"))
	require.Equal(t, http.StatusOK, c.get("/healthz").StatusCode)
	r = c.get("/keys")
	require.Equal(t, "/dash/login", r.Header.Get("Location"))
	c.loginToken(adminToken)
	require.Equal(t, http.StatusNotFound, c.get("/keys/short").StatusCode)
	require.Equal(t, http.StatusNotFound, c.get("/keys/AAAAAAAAAAAAAAAA/explode").StatusCode)
	require.Equal(t, http.StatusNotFound, c.post("/keys", nil).StatusCode)

	for _, bad := range []string{"dash", "/a b", "/../x", "/x?y"} {
		_, err := New(Config{VaultAddr: "http://127.0.0.1:1", BasePath: bad})
		require.Error(t, err, bad)
	}
	_, err = New(Config{VaultAddr: "http://127.0.0.1:1", Mount: "../sys"})
	require.Error(t, err)
}

func TestVaultDown(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	c.loginToken(adminToken)
	e.vault.srv.Close()
	r := c.get("/keys")
	require.Equal(t, http.StatusBadGateway, r.StatusCode)
	require.Contains(t, r.body, "Vault did not answer")
	require.NotContains(t, r.body, adminToken)
}
