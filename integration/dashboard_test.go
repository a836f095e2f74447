//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/vaulttest"
)

// The dashboard as a person uses it: the built apikey-dashboard binary in front of a
// real Vault with the real plugin, driven by a real headless Chromium (Debian's
// chromium package) through chromedp. Sign-in with userpass and with a pasted token,
// issuing and reading a key once, usage after verifies, disable, enable, rotate, delete,
// roles, the inventory's search and pages, a policy-limited person's 403s, hostile names
// rendered inert, session cookies, CSRF and sign-out.
//
// With DASHBOARD_SCREENSHOTS=1 the tests write PNG screenshots of the main pages to
// docs/screenshots/: the issue result and a 403 here, the pages with charts in
// TestDashboardCharts (scripted traffic).

const (
	dashboardBase  = "/console"
	sessionCookie  = "apikey_dashboard_session"
	browserTimeout = 30 * time.Second
)

// Hostile values: markup, quotes and long unicode in what issuers control (a key's name
// and metadata; role names are validated by the engine). Each must render as text.
var (
	hostileName     = `<script>window.__xss=1</script>"'&` + strings.Repeat("ключ🔑", 7)
	hostileMetaKey  = `<i>k</i>"'`
	hostileMetaVal  = `<img src=x onerror="window.__xss=2">` + strings.Repeat("زمان", 40)
	hostileMetaLine = hostileMetaKey + "=" + hostileMetaVal
)

// chromiumPath is the browser the test drives: $CHROMIUM_BIN, else chromium on PATH
// (Debian's package, which .ci/run installs), else /usr/bin/chromium.
func chromiumPath() string {
	if p := os.Getenv("CHROMIUM_BIN"); p != "" {
		return p
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	return "/usr/bin/chromium"
}

// requireChromium fails the test at once when there is no browser to drive: the
// dashboard is only tested in a real one, never skipped.
func requireChromium(t *testing.T) string {
	t.Helper()
	exe := chromiumPath()
	if st, err := os.Stat(exe); err != nil || st.IsDir() {
		t.Fatalf("no Chromium at %s (%v): the dashboard test drives a real browser. Install Debian's chromium package "+
			"(apt-get install chromium; .ci/run does) or set CHROMIUM_BIN to a Chromium or Chrome binary", exe, err)
	}
	return exe
}

// browser is a headless Chromium with one tab, opened on the dashboard.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string // the dashboard's URL, base path included
}

// newBrowser starts Chromium (headless, --no-sandbox since tests may run as root, a
// temporary profile) and stops it when the test ends, failed or not. A missing browser
// fails the test: the dashboard is only tested in a real browser.
func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	exe := requireChromium(t)
	profile := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancel()      // closes the tab and the browser
		cancelAlloc() // waits for the browser process to exit
	})
	// The first run starts the browser, with the tab's own context: a timeout here would
	// stop the browser when it ends.
	require.NoError(t, chromedp.Do(ctx), "starting %s", exe)
	return &browser{t: t, ctx: ctx, base: base}
}

// on is b failing t (a subtest) instead of the test that started it.
func (b *browser) on(t *testing.T) *browser {
	c := *b
	c.t = t
	return &c
}

func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	require.NoError(b.t, chromedp.Do(ctx, actions...))
}

// open loads a page of the dashboard (path after the base path).
func (b *browser) open(path string) {
	b.t.Helper()
	b.do(chromedp.Navigate(b.base + path))
}

// click clicks sel and waits for the page it loads.
func (b *browser) click(sel string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.CSS(sel))))
	require.NoError(b.t, err, "clicking %s", sel)
}

// text is the rendered text of the first element matching sel (waiting for it).
func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	require.NoError(b.t, err, "text of %s on %s", sel, b.location())
	return strings.TrimSpace(s)
}

// eval runs a JavaScript expression that yields a value of type T.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	require.NoError(b.t, err, "evaluating %s", expr)
	return v
}

// has reports whether an element matches the CSS selector now (no waiting).
func (b *browser) has(sel string) bool {
	b.t.Helper()
	q, _ := json.Marshal(sel)
	return eval[bool](b, "document.querySelector("+string(q)+") !== null")
}

func (b *browser) location() string {
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	return loc
}

// body is the page's whole text.
func (b *browser) body() string { return eval[string](b, "document.body.innerText") }

// requireInert checks that nothing hostile ran or became markup on the current page.
func (b *browser) requireInert() {
	b.t.Helper()
	require.Equal(b.t, "undefined", eval[string](b, "typeof window.__xss"), "a script ran on %s", b.location())
	require.Zero(b.t, eval[int](b, "document.querySelectorAll('main script, main img, main i').length"),
		"hostile markup became elements on %s", b.location())
}

// cookie is the dashboard's cookie of this name in the browser (nil if none).
func (b *browser) cookie(name string) *network.Cookie {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.base + "/"}})
	require.NoError(b.t, err)
	for _, c := range res.Cookies {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// screenshot writes the page to docs/screenshots/<name>.png when DASHBOARD_SCREENSHOTS
// is set.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	if os.Getenv("DASHBOARD_SCREENSHOTS") == "" {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(b.t, err)
	dir := filepath.Join("..", "docs", "screenshots")
	require.NoError(b.t, os.MkdirAll(dir, 0o755))
	require.NoError(b.t, os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644))
	b.t.Logf("wrote %s", filepath.Join(dir, name+".png"))
}

// signInUserpass signs in through the userpass form.
func (b *browser) signInUserpass(user, password string) {
	b.t.Helper()
	b.open("/login")
	b.do(chromedp.SetValue(chromedp.ID("username"), user), chromedp.SetValue(chromedp.ID("password"), password))
	b.click("#userpass-submit")
	require.Equal(b.t, "userpass-"+user, b.text("#whoami"), "signed in as %s (page %s)", user, b.location())
}

// requireDenied checks the current page is the 403 page naming capability on path.
func (b *browser) requireDenied(capability, path string) {
	b.t.Helper()
	require.True(b.t, b.has(`#error[data-status="403"]`), "expected a 403 page at %s, got:\n%s", b.location(), b.body())
	require.Equal(b.t, capability, b.text("#denied-capability"))
	require.Equal(b.t, path, b.text("#denied-path"))
}

// startDashboard runs the built dashboard against addr under dashboardBase.
func startDashboard(t *testing.T, addr string) *vaulttest.Dashboard {
	t.Helper()
	d, err := vaulttest.StartDashboard(context.Background(), vaulttest.DashboardOptions{
		Bin:       dashboardBin,
		Dir:       t.TempDir(),
		VaultAddr: addr,
		BasePath:  dashboardBase,
		Args:      []string{"-log-level", "debug"},
		Cleaner:   t,
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- dashboard log %s ----\n%s\n---- end of dashboard log ----", d.LogPath, d.LogTail(60))
		}
	})
	return d
}

// noRedirects is an HTTP client that shows redirects instead of following them.
var noRedirects = &http.Client{
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func TestDashboard(t *testing.T) {
	requireChromium(t)
	s := Setup(t)
	root := s.Client
	ctx := context.Background()

	// The mount: two roles, userpass with an operator who issues and rotates demo keys,
	// and an auditor.
	_, err := root.Logical().Write("apikey/roles/demo", map[string]any{
		"scopes": "orders:read,orders:write", "ttl": "1h", "max_ttl": "24h", "metadata": map[string]any{"team": "checkout"},
	})
	require.NoError(t, err)
	_, err = root.Logical().Write("apikey/roles/bulk", map[string]any{"scopes": "batch", "ttl": "2h"})
	require.NoError(t, err)
	require.NoError(t, root.Sys().EnableAuthWithOptions("userpass", &api.EnableAuthOptions{Type: "userpass"}))
	s.WritePolicy(t, "operator")
	s.WritePolicy(t, "auditor")
	issuer := s.WriteRolePolicy(t, "issuer", "demo")
	// Rotation by key_id, as docs/operations.md grants it to an operator. It lists
	// key_id in allowed_parameters: Vault merges the parameter lists of policies on the
	// same path, so without it the issuer template's list (api_key only) would apply.
	require.NoError(t, root.Sys().PutPolicy("rotator-demo", `
path "apikey/creds/demo/rotate" {
  capabilities = ["update"]
  allowed_parameters = {
    "key_id"       = []
    "api_key"      = []
    "grace_period" = []
  }
}`))
	alicePassword, bobPassword := "pw-"+vaulttest.RandomHex(12), "pw-"+vaulttest.RandomHex(12)
	_, err = root.Logical().Write("auth/userpass/users/alice", map[string]any{
		"password": alicePassword, "token_policies": "operator," + issuer + ",rotator-demo", "token_ttl": "1h",
	})
	require.NoError(t, err)
	_, err = root.Logical().Write("auth/userpass/users/bob", map[string]any{"password": bobPassword, "token_policies": "auditor"})
	require.NoError(t, err)

	// Keys issued outside the dashboard (by root, so their leases outlive every session),
	// with some traffic: the inventory and the overview have something to show.
	verifier := s.NewClient(t, s.VerifierToken(t))
	verify := func(key string, scopes ...string) string {
		t.Helper()
		data := map[string]any{"api_key": key, "client_ip": "203.0.113.7", "tags": []string{"route=orders"}}
		if len(scopes) > 0 {
			data["scopes"] = scopes
		}
		sec, err := verifier.Logical().Write("apikey/verify", data)
		require.NoError(t, err)
		return fmt.Sprint(sec.Data["code"])
	}
	var keys []string // every key issued: none may leak into the dashboard's log
	issueAsRoot := func(role, name string, md map[string]any) (string, string) {
		t.Helper()
		sec, err := root.Logical().Write("apikey/creds/"+role, map[string]any{"name": name, "metadata": md})
		require.NoError(t, err)
		key := fmt.Sprint(sec.Data["api_key"])
		keys = append(keys, key)
		return key, fmt.Sprint(sec.Data["key_id"])
	}
	billing, billingID := issueAsRoot("demo", "billing worker", map[string]any{"host": "w1"})
	mobile, _ := issueAsRoot("demo", "mobile app", map[string]any{"platform": "ios"})
	for range 6 {
		require.Equal(t, "VALID", verify(billing, "orders:read"))
	}
	require.Equal(t, "INSUFFICIENT_SCOPE", verify(mobile, "admin"))
	require.Equal(t, "VALID", verify(mobile))
	for i := range 30 {
		issueAsRoot("bulk", fmt.Sprintf("batch-%02d", i), nil)
	}

	dash := startDashboard(t, s.Addr)
	b := newBrowser(t, dash.URL)

	t.Run("signed out, every page leads to sign-in", func(t *testing.T) {
		b := b.on(t)
		resp, err := noRedirects.Get(dash.URL + "/keys")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		require.Equal(t, dashboardBase+"/login", resp.Header.Get("Location"))
		b.open("/")
		require.True(t, strings.HasSuffix(b.location(), dashboardBase+"/login"), b.location())
		require.True(t, b.has("#userpass-form") && b.has("#token-form"))
		// A wrong password is refused, and the password is not put back in the form.
		b.do(chromedp.SetValue(chromedp.ID("username"), "alice"), chromedp.SetValue(chromedp.ID("password"), "wrong"))
		b.click("#userpass-submit")
		require.Contains(t, b.text("#login-error"), "refused")
		require.Equal(t, "", eval[string](b, "document.getElementById('password').value"))
	})

	// --- alice: operator and issuer of demo, signed in with userpass -------------------
	b.signInUserpass("alice", alicePassword)

	t.Run("session cookie flags", func(t *testing.T) {
		b := b.on(t)
		c := b.cookie(sessionCookie)
		require.NotNil(t, c, "session cookie")
		require.True(t, c.HTTPOnly, "HttpOnly")
		require.Equal(t, network.CookieSameSiteStrict, c.SameSite)
		require.Equal(t, dashboardBase, c.Path)
		require.False(t, c.Secure, "plain HTTP here: Secure is for TLS (-tls-cert or -secure-cookies)")
		require.GreaterOrEqual(t, len(c.Value), 40, "a long random id")
		require.NotContains(t, c.Value, ".", "an opaque id, not a Vault token")
		// JavaScript cannot read it.
		require.NotContains(t, eval[string](b, "document.cookie"), c.Value)
	})

	var k1, k1ID string // the hostile key
	t.Run("issue a key and read it once", func(t *testing.T) {
		b := b.on(t)
		b.open("/issue")
		require.True(t, b.has("#lease-warning"), "userpass sessions are warned that sign-out revokes their keys")
		b.do(
			chromedp.SetValue(chromedp.ID("issue-role"), "demo"),
			chromedp.SetValue(chromedp.ID("issue-name"), "ci deploy"),
			chromedp.SetValue(chromedp.ID("issue-metadata"), "pipeline=main"),
		)
		b.click("#issue-submit")
		plain := b.text("#issued-key")
		require.Regexp(t, `^vk_[A-Za-z0-9]{65}$`, plain)
		keys = append(keys, plain)
		require.False(t, eval[bool](b, "document.getElementById('copy-key').hidden"), "app.js (allowed by the CSP) shows the copy button")
		require.Contains(t, b.text("#issued"), "shown this once")
		require.NotContains(t, b.location(), plain, "the key is never in a URL")
		b.screenshot("issue-result")
		require.Equal(t, "VALID", verify(plain, "orders:read"))

		// The hostile one.
		b.open("/issue")
		b.do(
			chromedp.SetValue(chromedp.ID("issue-role"), "demo"),
			chromedp.SetValue(chromedp.ID("issue-name"), hostileName),
			chromedp.SetValue(chromedp.ID("issue-metadata"), hostileMetaLine),
		)
		b.click("#issue-submit")
		k1 = b.text("#issued-key")
		k1ID = b.text("#issued-key-id")
		keys = append(keys, k1)
		require.Regexp(t, `^vk_`+k1ID+`[A-Za-z0-9]{49}$`, k1)
		require.Equal(t, hostileName, b.text("#issued-name"))
		b.requireInert()

		// No other page shows it.
		b.open("/keys/" + k1ID)
		require.NotContains(t, b.body(), k1)
	})

	t.Run("the key verifies and its usage shows", func(t *testing.T) {
		b := b.on(t)
		for range 3 {
			require.Equal(t, "VALID", verify(k1, "orders:read"))
		}
		require.Equal(t, "INSUFFICIENT_SCOPE", verify(k1, "admin"))
		// Usage is read with the unflushed counts of this (only) node: no tidy needed.
		s.Eventually(t, 15*time.Second, func() error {
			b.open("/keys/" + k1ID)
			if got := b.text("#usage .n-total"); got != "4" {
				return fmt.Errorf("usage total %s, want 4", got)
			}
			return nil
		})
		require.Equal(t, "1", b.text("#usage .n-refused"))
		require.Equal(t, "3", b.text(`#usage .n[data-code="VALID"]`))
		require.Equal(t, "1", b.text(`#usage .n[data-code="INSUFFICIENT_SCOPE"]`))
		require.True(t, b.has("#usage svg.bars g.bar rect.c-VALID"), "the chart has a VALID bar")
		require.Contains(t, b.text("#key-tags"), "route=orders")
		require.Contains(t, b.text("#key-networks"), "203.0.113.0/24")
		require.Equal(t, "3", b.text("#key-use-count"))
		// Hostile name and metadata, as text.
		require.Equal(t, hostileName, b.text("#key-name"))
		require.Equal(t, hostileMetaKey, b.text("#key-metadata tr:nth-child(1) th"))
		require.Equal(t, hostileMetaVal, b.text("#key-metadata tr:nth-child(1) td"))
		b.requireInert()
	})

	t.Run("disable and enable", func(t *testing.T) {
		b := b.on(t)
		b.open("/keys/" + k1ID)
		b.click("#action-disable")
		require.Contains(t, b.text("h1"), "Disable key")
		require.Equal(t, "VALID", verify(k1), "nothing happens before the confirmation")
		b.click("#confirm-submit")
		require.Contains(t, b.text("#flash"), "disabled")
		require.Equal(t, "disabled", b.text("#key-status"))
		require.Equal(t, "DISABLED", verify(k1))

		b.click("#action-enable")
		b.click("#confirm-submit")
		require.Equal(t, "enabled", b.text("#key-status"))
		require.Equal(t, "VALID", verify(k1))
	})

	var k2, k2ID string
	t.Run("rotate with a grace period", func(t *testing.T) {
		b := b.on(t)
		b.open("/keys/" + k1ID)
		b.click("#action-rotate")
		b.do(chromedp.SetValue(chromedp.ID("grace_period"), "10m"))
		b.click("#confirm-submit")
		k2 = b.text("#issued-key")
		k2ID = b.text("#issued-key-id")
		keys = append(keys, k2)
		require.NotEqual(t, k1, k2)
		require.Equal(t, k1ID, b.text("#old-key-id"))
		require.Equal(t, hostileName, b.text("#issued-name"), "the name carries over")
		b.requireInert()
		require.Equal(t, "VALID", verify(k2))
		require.Equal(t, "VALID", verify(k1), "the old key verifies during its grace period")
		b.open("/keys/" + k1ID)
		require.Contains(t, b.text("#key-status"), "rotated")
		require.False(t, b.has("#action-rotate"), "a key is rotated once")
	})

	t.Run("delete", func(t *testing.T) {
		b := b.on(t)
		b.open("/keys/" + k2ID)
		b.click("#action-delete")
		require.Contains(t, b.text("#confirm"), "lease")
		b.click("#confirm-submit")
		require.Contains(t, b.text("#flash"), "deleted")
		require.Equal(t, "NOT_FOUND", verify(k2))
		require.Equal(t, "VALID", verify(k1), "the other key is untouched")
	})

	t.Run("key list: search, filters and pages", func(t *testing.T) {
		b := b.on(t)
		b.open("/keys?role=bulk&limit=25")
		require.Equal(t, 25, eval[int](b, "document.querySelectorAll('#keys-table tbody tr').length"))
		first := b.text("#keys-table tbody tr td code")
		b.click("#next-page")
		require.Equal(t, 5, eval[int](b, "document.querySelectorAll('#keys-table tbody tr[data-key-id]').length"))
		require.NotEqual(t, first, b.text("#keys-table tbody tr td code"))
		require.True(t, b.has("#first-page"))
		require.Contains(t, b.location(), "after=", "the cursor is in the URL: the engine's next_after, never a key")

		b.open("/keys?name=billing*")
		require.Equal(t, []string{billingID}, eval[[]string](b, "[...document.querySelectorAll('#keys-table tbody tr[data-key-id]')].map(r => r.dataset.keyId)"))
		b.open("/keys?" + url.Values{"metadata": {"platform=ios"}}.Encode())
		require.Equal(t, 1, eval[int](b, "document.querySelectorAll('#keys-table tbody tr[data-key-id]').length"))
		b.open("/keys?key_id=" + billingID)
		require.Equal(t, billingID, b.text("#key-id"), "a key_id search opens the key")
		b.open("/keys?unused_for=soon")
		require.Contains(t, b.text("#filter-error"), "unused_for", "the engine's message names the field")

		b.open("/keys?role=demo&status=rotated")
		require.Contains(t, b.text("#keys-table"), hostileName)
		b.requireInert()
	})

	t.Run("roles: create with the engine's validation, edit", func(t *testing.T) {
		b := b.on(t)
		b.open("/roles/new")
		b.do(
			chromedp.SetValue(chromedp.ID("role-name-input"), "reports"),
			chromedp.SetValue(chromedp.CSS(`input[name="scopes"]`), "reports:read"),
			chromedp.SetValue(chromedp.CSS(`input[name="ttl"]`), "48h"),
			chromedp.SetValue(chromedp.CSS(`input[name="max_ttl"]`), "1h"),
		)
		b.click("#role-submit")
		require.Contains(t, b.text("#form-error"), "must not be greater than max_ttl")
		b.do(chromedp.SetValue(chromedp.CSS(`input[name="ttl"]`), "30m"))
		b.click("#role-submit")
		require.Contains(t, b.text("#flash"), "created")
		require.Equal(t, "reports", b.text("#role-name"))

		b.click("#edit-role")
		b.do(chromedp.SetValue(chromedp.CSS(`input[name="scopes"]`), "reports:read, reports:export"))
		b.click("#role-submit")
		require.Contains(t, b.text("#role-def"), "reports:export")
		sec, err := root.Logical().Read("apikey/roles/reports")
		require.NoError(t, err)
		require.Equal(t, []any{"reports:read", "reports:export"}, sec.Data["scopes"])
		require.EqualValues(t, json.Number("1800"), sec.Data["ttl"])

		b.open("/roles")
		require.Contains(t, b.text("#roles-table"), "reports")
	})

	t.Run("overview", func(t *testing.T) {
		b := b.on(t)
		b.open("/")
		require.Contains(t, b.text("#status-section"), "Counted from the inventory", "the operator policy has no metrics read")
		require.NotEmpty(t, b.text("#keys-total"))
		require.True(t, b.has("#hourly-section svg.bars g.bar"), "the 48-hour chart has bars")
		require.Contains(t, b.text("#top-use"), billingID)
		require.Contains(t, b.text("#top-refused"), k1ID)
		b.requireInert()
	})

	t.Run("CSRF: a form without this session's token is refused", func(t *testing.T) {
		b := b.on(t)
		c := b.cookie(sessionCookie)
		require.NotNil(t, c)
		for _, body := range []string{"", "csrf=", "csrf=" + strings.Repeat("A", 43)} {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, dash.URL+"/keys/"+k1ID+"/disable", strings.NewReader(body))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.AddCookie(&http.Cookie{Name: sessionCookie, Value: c.Value})
			resp, err := noRedirects.Do(req)
			require.NoError(t, err)
			html, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, http.StatusForbidden, resp.StatusCode, "body %q", body)
			require.Contains(t, string(html), "CSRF")
		}
		require.Equal(t, "VALID", verify(k1), "not disabled")
	})

	t.Run("sign-out revokes the token the dashboard obtained", func(t *testing.T) {
		b := b.on(t)
		old := b.cookie(sessionCookie)
		require.NotNil(t, old)
		b.click("#signout")
		require.Contains(t, b.text("#notice"), "revoked")
		if c := b.cookie(sessionCookie); c != nil {
			require.Empty(t, c.Value)
		}
		// The old session is gone on the server too.
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, dash.URL+"/keys", nil)
		require.NoError(t, err)
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: old.Value})
		resp, err := noRedirects.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		// Vault revoked alice's token, and with it the leases it created: the key she
		// issued (in its grace period until now) is gone; root's keys are not.
		s.Eventually(t, 15*time.Second, func() error {
			if code := verify(k1); code != "NOT_FOUND" {
				return fmt.Errorf("alice's key verifies %s after sign-out, want NOT_FOUND", code)
			}
			return nil
		})
		require.Equal(t, "VALID", verify(billing))
		accessors, err := root.Logical().List("auth/token/accessors")
		require.NoError(t, err)
		for _, a := range accessors.Data["keys"].([]any) {
			sec, err := root.Auth().Token().LookupAccessor(a.(string))
			if err == nil && sec != nil {
				require.NotEqual(t, "userpass-alice", sec.Data["display_name"], "alice's token outlived her sign-out")
			}
		}
	})

	// --- bob: an auditor, signed in with a token he brought ------------------------------
	bobToken := s.Token(t, "auditor")
	t.Run("a policy-limited person sees 403s naming the capability and cannot act", func(t *testing.T) {
		b := b.on(t)
		b.open("/login")
		b.do(chromedp.SetValue(chromedp.ID("token"), bobToken))
		b.click("#token-submit")
		require.NotEmpty(t, b.text("#whoami"))
		require.NotContains(t, b.location(), bobToken)
		require.Contains(t, b.text("#status-section"), "metrics", "the auditor reads the metrics: exact counts")

		b.open("/roles")
		b.requireDenied("list", "apikey/roles/")

		b.open("/keys/" + billingID)
		require.Equal(t, "billing worker", b.text("#key-name"), "the auditor reads keys")
		for _, sel := range []string{"#action-disable", "#action-rotate", "#action-delete"} {
			require.False(t, b.has(sel), "%s offered to an auditor", sel)
		}
		require.Contains(t, b.text("#actions"), "cannot update")
		// Going to the action anyway: the confirmation page, then Vault's refusal.
		b.open("/keys/" + billingID + "/disable")
		b.click("#confirm-submit")
		b.requireDenied("update", "apikey/keys/"+billingID)
		b.screenshot("forbidden")
		require.Equal(t, "VALID", verify(billing))

		b.open("/issue")
		b.do(chromedp.SetValue(chromedp.ID("issue-role"), "demo"))
		b.click("#issue-submit")
		b.requireDenied("update", "apikey/creds/demo")

		b.open("/roles/new")
		b.do(chromedp.SetValue(chromedp.ID("role-name-input"), "sneaky"), chromedp.SetValue(chromedp.CSS(`input[name="scopes"]`), "x"))
		b.click("#role-submit")
		b.requireDenied("create", "apikey/roles/sneaky")
		sec, err := root.Logical().Read("apikey/roles/sneaky")
		require.NoError(t, err)
		require.Nil(t, sec, "no role was created")
	})

	t.Run("sign-out leaves a pasted token alone", func(t *testing.T) {
		b := b.on(t)
		b.open("/")
		b.click("#signout")
		require.Contains(t, b.text("#notice"), "not revoked")
		_, err := s.NewClient(t, bobToken).Auth().Token().LookupSelf()
		require.NoError(t, err, "bob's token still works")
		b.open("/keys")
		require.True(t, strings.HasSuffix(b.location(), "/login"), b.location())
	})

	t.Run("no key, token or password in the log or the browser's history", func(t *testing.T) {
		b := b.on(t)
		log := dash.LogText()
		require.Contains(t, log, `"path":"/console/keys/`+k1ID+`"`, "the log has the requests")
		secrets := append([]string{alicePassword, bobPassword, bobToken, s.RootToken}, keys...)
		for _, secret := range secrets {
			require.NotContains(t, log, secret)
		}
		ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
		defer cancel()
		hist, err := chromedp.Run(ctx, chromedp.NavigationEntries())
		require.NoError(t, err)
		require.NotEmpty(t, hist.Entries)
		for _, e := range hist.Entries {
			for _, secret := range secrets {
				require.NotContains(t, e.URL, secret)
			}
		}
	})
}

// TestDashboardCharts scripts two days of hourly and a month of daily traffic with the
// testclock build of the plugin, then checks that the charts show it bucket by bucket
// and that the counts on the pages are the engine's. A person signs in with a token
// carrying the auditor and operator policies (the metrics give exact key counts). With
// DASHBOARD_SCREENSHOTS=1 this is where the screenshots of the overview, the inventory
// and a key come from: they show realistic traffic.
func TestDashboardCharts(t *testing.T) {
	requireChromium(t)
	s := SetupWithClock(t)
	root := s.Client
	for role, def := range map[string]map[string]any{
		"checkout": {"scopes": "orders:read,orders:write", "ttl": "240h", "max_ttl": "240h", "metadata": map[string]any{"team": "checkout"}},
		"payments": {"scopes": "payments:*", "ttl": "240h", "max_ttl": "240h", "rate_limit": 50, "metadata": map[string]any{"team": "payments"}},
		"reports":  {"scopes": "reports:read", "ttl": "240h", "max_ttl": "240h", "max_uses": 5000},
	} {
		_, err := root.Logical().Write("apikey/roles/"+role, def)
		require.NoError(t, err)
	}
	type issued struct{ key, id, role string }
	var keys []issued
	issue := func(role, name string, md map[string]any) issued {
		t.Helper()
		sec, err := root.Logical().Write("apikey/creds/"+role, map[string]any{"name": name, "metadata": md})
		require.NoError(t, err)
		k := issued{fmt.Sprint(sec.Data["api_key"]), fmt.Sprint(sec.Data["key_id"]), role}
		keys = append(keys, k)
		return k
	}
	web := issue("checkout", "storefront web", map[string]any{"env": "prod"})
	mobile := issue("checkout", "mobile app", map[string]any{"env": "prod", "platform": "ios"})
	batch := issue("payments", "settlement batch", map[string]any{"env": "prod"})
	partner := issue("payments", "partner acme", map[string]any{"env": "prod", "partner": "acme"})
	bi := issue("reports", "bi exporter", nil)
	for _, name := range []string{"ci deploy", "staging web", "load test"} {
		issue("checkout", name, map[string]any{"env": "staging"})
	}
	_, err := root.Logical().Write("apikey/keys/"+keys[len(keys)-1].id, map[string]any{"disabled": true})
	require.NoError(t, err)

	verifier := s.NewClient(t, s.VerifierToken(t))
	webTotal, counting := 0, false // web's verifies within the last 48 hours
	verify := func(k issued, scope, ip, route string) {
		t.Helper()
		data := map[string]any{"api_key": k.key, "client_ip": ip, "tags": []string{"route=" + route}}
		if scope != "" {
			data["scopes"] = []string{scope}
		}
		_, err := verifier.Logical().Write("apikey/verify", data)
		require.NoError(t, err)
		if k.id == web.id && counting {
			webTotal++
		}
	}
	now := time.Now().UTC()
	// A month of daily traffic, then the last 47 hours (in time order, so that last_used_at
	// is the last hour's).
	counting = false
	for d := 30; d >= 3; d-- {
		s.SetClock(t, root.Token(), now.Add(-time.Duration(d)*24*time.Hour))
		for i := range 4 + d%5 {
			verify(web, "orders:read", "198.51.100.10", "/orders")
			if i%2 == 1 {
				verify(batch, "payments:settle", "192.0.2.44", "/settle")
			}
		}
	}
	counting = true
	// 47 hours of traffic, with a day-night rhythm, a few refusals and a burst.
	for h := 47; h >= 1; h-- {
		at := now.Add(-time.Duration(h) * time.Hour).Truncate(time.Hour).Add(20 * time.Minute)
		s.SetClock(t, root.Token(), at)
		n := 3 + int(6+5*math.Sin(float64(at.Hour())/24*2*math.Pi))
		for i := range n {
			verify(web, "orders:read", fmt.Sprintf("198.51.100.%d", 10+i%3), "/orders")
			if i%2 == 0 {
				verify(mobile, "orders:write", "203.0.113.9", "/orders/new")
			}
			if i%3 == 0 {
				verify(batch, "payments:settle", "192.0.2.44", "/settle")
			}
		}
		if at.Hour()%5 == 0 {
			verify(partner, "orders:read", "203.0.113.200", "/orders") // not its scope
			verify(partner, "payments:refund", "203.0.113.200", "/refunds")
		}
		if h == 9 {
			for range 12 {
				verify(web, "admin:all", "233.252.0.7", "/admin") // someone probing
			}
		}
		verify(bi, "reports:read", "10.1.2.3", "/export")
	}
	s.SetClock(t, root.Token(), time.Now())

	s.WritePolicy(t, "operator")
	s.WritePolicy(t, "auditor")
	token := s.Token(t, "operator", "auditor")
	dash := startDashboard(t, s.Addr)
	b := newBrowser(t, dash.URL)
	b.open("/login")
	b.do(chromedp.SetValue(chromedp.ID("token"), token))
	b.click("#token-submit")

	b.open("/")
	require.Contains(t, b.text("#status-section"), "From the engine's metrics")
	require.Equal(t, "8", b.text("#keys-total"))
	bars := eval[int](b, "document.querySelectorAll('#hourly-section g.bar').length")
	require.GreaterOrEqual(t, bars, 46, "a bar for each hour with traffic")
	require.GreaterOrEqual(t, eval[int](b, "document.querySelectorAll('#daily-section g.bar').length"), 29, "a bar for each day with traffic")
	require.Contains(t, b.text("#top-use"), web.id)
	require.Contains(t, b.text("#top-refused"), web.id)
	b.requireInert()
	b.screenshot("overview")

	b.open("/keys?limit=25")
	require.Equal(t, 8, eval[int](b, "document.querySelectorAll('#keys-table tbody tr[data-key-id]').length"))
	b.screenshot("keys")

	b.open("/keys/" + web.id)
	require.Equal(t, fmt.Sprint(webTotal), eval[string](b, "document.querySelector('#usage .n-total').textContent"),
		"hourly range total: every verify of the last 47 hours")
	require.GreaterOrEqual(t, eval[int](b, "document.querySelectorAll('#usage g.bar').length"), 46)
	require.Contains(t, b.text("#key-tags"), "route=/admin")
	require.Contains(t, b.text("#key-networks"), "198.51.100.0/24")
	b.screenshot("key-detail")
	b.open("/keys/" + web.id + "?granularity=day")
	require.GreaterOrEqual(t, eval[int](b, "document.querySelectorAll('#usage g.bar').length"), 29)
}
