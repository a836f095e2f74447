//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/promtext"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/vaulttest"
)

// Issue 12's "Done when" against a real Vault: a scripted day of verify traffic (the
// testclock build of the plugin, its clock moved into each hour) read back per key, role,
// mount and tag; a plugin reload keeps what was flushed; the keys/ LIST filters; 400s
// that name the field; the metrics path checked by promtool.

// dayStart is the scripted day: 24 hours of traffic from this UTC midnight. It lies
// before the keys' creation (the real now), which verify does not mind: a key is checked
// against its expiry only.
var (
	dayStart = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	dayEnd   = dayStart.Add(24 * time.Hour)
	// readClock is where the engine's clock stands while the day is read back: after the
	// day, within the 48 hours of hourly buckets kept.
	readClock = dayEnd.Add(10 * time.Minute)
)

// codeCounts is verify outcomes by code, zeros left out (as the engine answers them).
type codeCounts map[string]uint64

func (c codeCounts) add(code string, n uint64) {
	if n > 0 {
		c[code] += n
	}
}

func (c codeCounts) addAll(o codeCounts) {
	for code, n := range o {
		c.add(code, n)
	}
}

func (c codeCounts) total() uint64 {
	var n uint64
	for _, v := range c {
		n += v
	}
	return n
}

func (c codeCounts) refusals() uint64 { return c.total() - c[codeValid] }

// hours is one scope's counts per hour of the scripted day.
type hours [24]codeCounts

func newHours() *hours {
	var h hours
	for i := range h {
		h[i] = codeCounts{}
	}
	return &h
}

func (h *hours) sum() codeCounts {
	out := codeCounts{}
	for _, c := range h {
		out.addAll(c)
	}
	return out
}

// netSeen is a client network as the test expects it: counts, and the hours of the
// day it was first and last seen in.
type netSeen struct {
	count, refused uint64
	first, last    int
}

// usageModel is what the engine should have counted, kept by the test as it sends each
// verify (from the contract: which code counts for which key, role and mount), never
// read back from the engine.
type usageModel struct {
	mount     *hours
	roles     map[string]*hours
	keys      map[string]*hours
	roleTags  map[string]map[string]codeCounts // role -> "name=value" -> counts
	keyTags   map[string]map[string]codeCounts
	keyNets   map[string]map[string]*netSeen // key_id -> network -> seen
	keyLast   map[string]int                 // key_id -> last hour a verify named it
	metrics   map[string]codeCounts          // metrics role label ("" = no key) -> counts
	validUses map[string]uint64              // key_id -> VALID verifications: its use_count
	verifies  int
}

func newUsageModel() *usageModel {
	return &usageModel{
		mount:     newHours(),
		roles:     map[string]*hours{},
		keys:      map[string]*hours{},
		roleTags:  map[string]map[string]codeCounts{},
		keyTags:   map[string]map[string]codeCounts{},
		keyNets:   map[string]map[string]*netSeen{},
		keyLast:   map[string]int{},
		metrics:   map[string]codeCounts{},
		validUses: map[string]uint64{},
	}
}

// verifyCall is one verify of the scripted day and its expected outcome.
type verifyCall struct {
	apiKey string
	keyID  string // the key the engine counts it for: "" for MALFORMED and unknown keys
	role   string // that key's role
	scopes []string
	ip     string
	tags   []string
	code   string
}

func (m *usageModel) count(h int, c verifyCall) {
	m.verifies++
	m.mount[h].add(c.code, 1)
	if m.metrics[c.role] == nil {
		m.metrics[c.role] = codeCounts{}
	}
	m.metrics[c.role].add(c.code, 1)
	addTags := func(into map[string]map[string]codeCounts, name string) {
		if into[name] == nil {
			into[name] = map[string]codeCounts{}
		}
		for _, tag := range c.tags {
			if into[name][tag] == nil {
				into[name][tag] = codeCounts{}
			}
			into[name][tag].add(c.code, 1)
		}
	}
	if c.role != "" {
		if m.roles[c.role] == nil {
			m.roles[c.role] = newHours()
		}
		m.roles[c.role][h].add(c.code, 1)
		addTags(m.roleTags, c.role)
	}
	if c.keyID == "" {
		return
	}
	if m.keys[c.keyID] == nil {
		m.keys[c.keyID] = newHours()
	}
	m.keys[c.keyID][h].add(c.code, 1)
	addTags(m.keyTags, c.keyID)
	m.keyLast[c.keyID] = h
	if c.code == codeValid {
		m.validUses[c.keyID]++
	}
	if c.ip == "" {
		return
	}
	a := netip.MustParseAddr(c.ip).Unmap()
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p := netip.PrefixFrom(a, bits).Masked().String()
	if m.keyNets[c.keyID] == nil {
		m.keyNets[c.keyID] = map[string]*netSeen{}
	}
	n := m.keyNets[c.keyID][p]
	if n == nil {
		n = &netSeen{first: h}
		m.keyNets[c.keyID][p] = n
	}
	n.count++
	if c.code != codeValid {
		n.refused++
	}
	n.last = h
}

// --- usage responses, decoded -----------------------------------------------------------

type usageBucket struct {
	Start  string     `json:"start"`
	Total  uint64     `json:"total"`
	Counts codeCounts `json:"counts"`
}

type usageTag struct {
	Name   string     `json:"name"`
	Value  string     `json:"value"`
	Total  uint64     `json:"total"`
	Counts codeCounts `json:"counts"`
}

type usageTagDay struct {
	Start string     `json:"start"`
	Tags  []usageTag `json:"tags"`
}

type usageNetwork struct {
	Network   string `json:"network"`
	Count     uint64 `json:"count"`
	Refused   uint64 `json:"refused"`
	FirstSeen string `json:"first_seen"`
	LastSeen  string `json:"last_seen"`
}

type usageTopKey struct {
	KeyID    string     `json:"key_id"`
	Total    uint64     `json:"total"`
	Refusals uint64     `json:"refusals"`
	Counts   codeCounts `json:"counts"`
}

// usageRead is a keys/<key_id>/usage or usage response.
type usageRead struct {
	Granularity string         `json:"granularity"`
	Start       string         `json:"start"`
	End         string         `json:"end"`
	Series      []usageBucket  `json:"series"`
	Totals      codeCounts     `json:"totals"`
	Total       uint64         `json:"total"`
	Refusals    uint64         `json:"refusals"`
	AllTime     codeCounts     `json:"all_time"`
	Tags        []usageTag     `json:"tags"`
	TagSeries   []usageTagDay  `json:"tag_series"`
	KeyID       string         `json:"key_id"`
	Role        string         `json:"role"`
	Exists      bool           `json:"exists"`
	LastUsedAt  string         `json:"last_used_at"`
	Networks    []usageNetwork `json:"networks"`
	GroupBy     string         `json:"group_by"`
	TopKeys     []usageTopKey  `json:"top_keys"`
	// Fields lists the response's fields, to tell an absent list from an empty one.
	Fields []string `json:"-"`
}

func decodeUsage(t *testing.T, data map[string]interface{}) usageRead {
	t.Helper()
	b, err := json.Marshal(data)
	require.NoError(t, err)
	var u usageRead
	require.NoError(t, json.Unmarshal(b, &u), "usage response %s", b)
	for f := range data {
		u.Fields = append(u.Fields, f)
	}
	sort.Strings(u.Fields)
	return u
}

// readUsage reads a usage path over HTTP (GET with query parameters).
func readUsage(t *testing.T, c *api.Client, path string, params map[string]string) usageRead {
	t.Helper()
	q := map[string][]string{}
	for k, v := range params {
		q[k] = []string{v}
	}
	sec, err := c.Logical().ReadWithData(path, q)
	require.NoError(t, err, "GET %s %v", path, params)
	require.NotNil(t, sec, "GET %s %v: 404", path, params)
	return decodeUsage(t, sec.Data)
}

// dayRange is the scripted day as usage query parameters.
func dayRange(granularity string, extra ...string) map[string]string {
	p := map[string]string{
		"granularity": granularity,
		"start":       dayStart.Format(time.RFC3339),
		"end":         dayEnd.Format(time.RFC3339),
	}
	for i := 0; i+1 < len(extra); i += 2 {
		p[extra[i]] = extra[i+1]
	}
	return p
}

func rfc(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func hourAt(h int) time.Time { return dayStart.Add(time.Duration(h) * time.Hour) }

// wantSeries is the series the engine answers for h (hours with traffic only).
func wantSeries(h *hours, granularity string) []usageBucket {
	out := []usageBucket{}
	if granularity == "day" {
		if sum := h.sum(); sum.total() > 0 {
			out = append(out, usageBucket{Start: rfc(dayStart), Total: sum.total(), Counts: sum})
		}
		return out
	}
	for i, c := range h {
		if c.total() > 0 {
			out = append(out, usageBucket{Start: rfc(hourAt(i)), Total: c.total(), Counts: c})
		}
	}
	return out
}

// requireRangeRead checks the series, totals and range of a read of the scripted day.
func requireRangeRead(t *testing.T, what string, want *hours, got usageRead, granularity string) {
	t.Helper()
	sum := want.sum()
	require.Equal(t, granularity, got.Granularity, what)
	require.Equal(t, rfc(dayStart), got.Start, what)
	require.Equal(t, rfc(dayEnd), got.End, what)
	require.Equal(t, wantSeries(want, granularity), got.Series, "%s: series", what)
	require.Equal(t, sum, got.Totals, "%s: totals", what)
	require.Equal(t, sum.total(), got.Total, "%s: total", what)
	require.Equal(t, sum.refusals(), got.Refusals, "%s: refusals", what)
	// Nothing else was ever counted for it: all_time is the day.
	require.Equal(t, sum, got.AllTime, "%s: all_time", what)
}

// requireTags checks tags (name=value -> counts, keeping only tag name when given) and
// that they are ranked most used first.
func requireTags(t *testing.T, what string, want map[string]codeCounts, only string, got []usageTag) {
	t.Helper()
	wantMap := map[string]codeCounts{}
	for nv, c := range want {
		if only == "" || strings.HasPrefix(nv, only+"=") {
			wantMap[nv] = c
		}
	}
	gotMap := map[string]codeCounts{}
	for i, tc := range got {
		require.Equal(t, tc.Counts.total(), tc.Total, "%s: tag %s=%s total", what, tc.Name, tc.Value)
		gotMap[tc.Name+"="+tc.Value] = tc.Counts
		if i > 0 {
			require.GreaterOrEqual(t, got[i-1].Total, tc.Total, "%s: tags most used first: %v", what, got)
		}
	}
	require.Len(t, got, len(gotMap), "%s: a tag twice: %v", what, got)
	require.Equal(t, wantMap, gotMap, "%s: tags", what)
}

// requireTagSeries checks tag_series of a read with tag=<only>: the one day, that tag.
func requireTagSeries(t *testing.T, what string, want map[string]codeCounts, only string, got []usageTagDay) {
	t.Helper()
	require.Len(t, got, 1, "%s: tag_series has the scripted day only: %v", what, got)
	require.Equal(t, rfc(dayStart), got[0].Start, what)
	requireTagsUnranked(t, what+": tag_series", want, only, got[0].Tags)
}

func requireTagsUnranked(t *testing.T, what string, want map[string]codeCounts, only string, got []usageTag) {
	t.Helper()
	wantMap := map[string]codeCounts{}
	for nv, c := range want {
		if strings.HasPrefix(nv, only+"=") {
			wantMap[nv] = c
		}
	}
	gotMap := map[string]codeCounts{}
	for _, tc := range got {
		require.Equal(t, tc.Counts.total(), tc.Total, what)
		gotMap[tc.Name+"="+tc.Value] = tc.Counts
	}
	require.Equal(t, wantMap, gotMap, what)
}

// --- the test -------------------------------------------------------------------------------

// monitoringKeys are the keys of the scripted day.
type monitoringKeys struct {
	o1, o2, o3, o4 issued // role orders: o3 and o4 are never verified
	r1, r2         issued // role reports (bound_cidrs); r2 lives 24h
}

func (k *monitoringKeys) byID() map[string]string {
	return map[string]string{
		k.o1.KeyID: "o1", k.o2.KeyID: "o2", k.o3.KeyID: "o3", k.o4.KeyID: "o4",
		k.r1.KeyID: "r1", k.r2.KeyID: "r2",
	}
}

// trafficAt is the verifies of hour h: counts vary by hour, so that a series shifted by
// an hour or folded into another would not match.
func trafficAt(t *testing.T, h int, k *monitoringKeys, unknownKey string) []verifyCall {
	var calls []verifyCall
	rep := func(n int, c verifyCall) {
		for range n {
			calls = append(calls, c)
		}
	}
	o1 := func(c verifyCall) verifyCall { c.apiKey, c.keyID, c.role = k.o1.Key, k.o1.KeyID, "orders"; return c }
	o2 := func(c verifyCall) verifyCall { c.apiKey, c.keyID, c.role = k.o2.Key, k.o2.KeyID, "orders"; return c }
	r1 := func(c verifyCall) verifyCall { c.apiKey, c.keyID, c.role = k.r1.Key, k.r1.KeyID, "reports"; return c }
	r2 := func(c verifyCall) verifyCall { c.apiKey, c.keyID, c.role = k.r2.Key, k.r2.KeyID, "reports"; return c }
	ip := func(format string, args ...any) string { return fmt.Sprintf(format, args...) }

	rep(1+h%3, o1(verifyCall{scopes: []string{"read"}, ip: ip("198.51.100.%d", 10+h), tags: []string{"route=/orders", "region=eu"}, code: codeValid}))
	if h%4 == 0 {
		rep(2, o1(verifyCall{scopes: []string{"read", "write"}, ip: ip("2001:db8:aa:%x::7", h), tags: []string{"route=/orders/{id}", "region=us"}, code: codeValid}))
	}
	if h%5 == 1 {
		rep(1, o1(verifyCall{scopes: []string{"admin"}, ip: "198.51.100.200", tags: []string{"route=/admin", "region=eu"}, code: codeInsufficientScope}))
	}
	if h >= 20 {
		// Someone with o1's key_id guessing its secret: NOT_FOUND, counted for o1.
		wrong := o1(verifyCall{ip: "203.0.113.7", tags: []string{"route=/orders"}, code: codeNotFound})
		wrong.apiKey = forgeKey(t, "vk", k.o1.KeyID)
		rep(2, wrong)
	}
	if h >= 8 && h < 18 {
		rep(2, o2(verifyCall{scopes: []string{"read"}, ip: ip("192.0.2.%d", h), tags: []string{"route=/orders", "region=us"}, code: codeValid}))
	}
	if h == 12 {
		rep(3, o2(verifyCall{scopes: []string{"read", "delete"}, ip: "192.0.2.50", tags: []string{"route=/orders", "region=us"}, code: codeInsufficientScope}))
	}
	if h%2 == 1 {
		rep(1, r1(verifyCall{scopes: []string{"read"}, ip: ip("10.20.1.%d", 5+h), tags: []string{"route=/reports", "region=eu"}, code: codeValid}))
	}
	if h == 7 {
		rep(1, r1(verifyCall{ip: "2001:db8:20:1::5", tags: []string{"route=/reports/export"}, code: codeValid}))
	}
	if h%6 == 3 {
		rep(1, r1(verifyCall{ip: "198.51.100.9", tags: []string{"route=/reports"}, code: codeForbiddenIP}))
	}
	if h == 5 {
		// No client_ip for a key with bound_cidrs: FORBIDDEN_IP, and no network.
		rep(2, r2(verifyCall{tags: []string{"route=/reports"}, code: codeForbiddenIP}))
	}
	if h == 6 || h == 23 {
		rep(1, r2(verifyCall{ip: "10.20.2.9", tags: []string{"route=/reports", "region=us"}, code: codeValid}))
	}
	if h%7 == 0 {
		// Counted for the mount only; its tags for nobody.
		rep(1, verifyCall{apiKey: "vk_not-a-key", tags: []string{"route=/orders"}, code: codeMalformed})
	}
	if h == 15 {
		rep(1, verifyCall{apiKey: unknownKey, ip: "203.0.113.99", code: codeNotFound})
	}
	return calls
}

func TestMonitoringScriptedDay(t *testing.T) {
	t.Parallel()
	began := time.Now()
	s := SetupWithClock(t)
	root := s.RootToken

	for _, p := range []string{"operator", "auditor", "metrics"} {
		s.WritePolicy(t, p)
	}
	operatorToken := s.Token(t, "operator")
	operator := s.NewClient(t, operatorToken)
	auditorToken := s.Token(t, "auditor")
	auditor := s.NewClient(t, auditorToken)
	metricsToken := tokenWithout(t, s, "metrics")
	verifierToken := s.VerifierToken(t)
	verifier := s.NewClient(t, verifierToken)
	issuerToken := s.Token(t, s.WriteRolePolicy(t, "issuer", "orders"), s.WriteRolePolicy(t, "issuer", "reports"))
	issuer := s.NewClient(t, issuerToken)

	// Roles (operator) and keys (issuer).
	_, err := operator.Logical().Write("apikey/roles/orders", map[string]interface{}{"scopes": "read,write", "ttl": "168h", "max_ttl": "720h"})
	require.NoError(t, err)
	_, err = operator.Logical().Write("apikey/roles/reports", map[string]interface{}{"scopes": "read", "bound_cidrs": "10.20.0.0/16,2001:db8:20::/48", "ttl": "168h", "max_ttl": "720h"})
	require.NoError(t, err)
	issue := func(role, name, team string, extra map[string]interface{}) issued {
		data := map[string]interface{}{"name": name, "metadata": map[string]string{"team": team}}
		for k, v := range extra {
			data[k] = v
		}
		return issueAPI(t, issuer, "apikey", role, data)
	}
	k := &monitoringKeys{
		o1: issue("orders", "checkout-eu", "payments", nil),
		o2: issue("orders", "checkout-us", "payments", nil),
		o3: issue("orders", "ci-nightly", "platform", nil),
		o4: issue("orders", "batch", "platform", nil),
		r1: issue("reports", "dash", "analytics", nil),
		r2: issue("reports", "export", "analytics", map[string]interface{}{"ttl": "24h"}),
	}
	names := k.byID()
	require.Len(t, names, 6, "six distinct key_ids")
	unknownKey := forgeKey(t, "vk", "")

	// --- the scripted day -------------------------------------------------------------
	m := newUsageModel()
	for h := range 24 {
		at := hourAt(h).Add(10 * time.Minute)
		if h == 0 {
			// As an operator of a test build would: the CLI.
			sec := s.CLISecret(t, root, "write", "-format=json", "apikey/test/clock", "now="+rfc(at))
			got, err := time.Parse(time.RFC3339Nano, str(t, sec.Data, "now"))
			require.NoError(t, err)
			require.WithinDuration(t, at, got, 5*time.Second)
		} else {
			s.SetClock(t, root, at)
		}
		for _, c := range trafficAt(t, h, k, unknownKey) {
			data := map[string]interface{}{"api_key": c.apiKey}
			if len(c.scopes) > 0 {
				data["scopes"] = c.scopes
			}
			if c.ip != "" {
				data["client_ip"] = c.ip
			}
			if len(c.tags) > 0 {
				data["tags"] = c.tags
			}
			r := verifyData(t, verifier, "apikey", data)
			require.Equal(t, c.code, r.Code, "hour %d: verify %v", h, data)
			m.count(h, c)
		}
	}
	// The plan is what this test says it is (a self-check of trafficAt, not of the engine).
	require.Equal(t, 122, m.verifies)
	require.Equal(t, codeCounts{codeValid: 60, codeInsufficientScope: 5, codeNotFound: 8}, m.keys[k.o1.KeyID].sum())
	t.Logf("scripted day: %d verifies, %s since start", m.verifies, time.Since(began).Round(time.Millisecond))

	// --- read back, before any flush: counts held in memory are read too ---------------
	s.SetClock(t, root, readClock)
	before := readDay(t, s, auditor, auditorToken, k)
	t.Run("read before the flush", func(t *testing.T) {
		checkDay(t, m, k, before)

		// The default range (no start, end) is the retention up to now: the whole day too.
		def := readUsage(t, auditor, "apikey/keys/"+k.o1.KeyID+"/usage", nil)
		require.Equal(t, "hour", def.Granularity)
		require.Equal(t, m.keys[k.o1.KeyID].sum(), def.Totals)
		// Unix seconds work as RFC 3339 does.
		unix := readUsage(t, auditor, "apikey/keys/"+k.o1.KeyID+"/usage", map[string]string{
			"start": strconv.FormatInt(hourAt(20).Unix(), 10), "end": strconv.FormatInt(hourAt(22).Unix(), 10),
		})
		hours2021 := codeCounts{}
		hours2021.addAll(m.keys[k.o1.KeyID][20])
		hours2021.addAll(m.keys[k.o1.KeyID][21])
		require.Equal(t, hours2021, unix.Totals, "hours 20 and 21")
		require.Equal(t, codeCounts{codeValid: (1 + 20%3) + 2 + (1 + 21%3), codeInsufficientScope: 1, codeNotFound: 4}, hours2021, "self-check")
	})

	// --- flush (tidy), read again: the same ------------------------------------------
	tidy := s.CLISecret(t, operatorToken, "write", "-format=json", "-f", "apikey/tidy")
	require.Contains(t, tidy.Data, "usage_deleted")
	after := readDay(t, s, auditor, auditorToken, k)
	t.Run("read after the flush", func(t *testing.T) {
		checkDay(t, m, k, after)
		requireSameReads(t, before, after, "counts read from memory before the flush = counts read from storage after it")
	})

	t.Run("metrics after the day", func(t *testing.T) {
		body := scrapeMetrics(t, s, metricsToken)
		// Every verification series has the model's value (zeros for codes not seen:
		// the engine may list them), and every count of the model has its series.
		got := verificationSamples(t, body)
		for role, cc := range m.metrics {
			for code := range cc {
				require.Contains(t, got, role+"/"+code, "a series for role %q code %s:\n%s", role, code, body)
			}
		}
		for series, v := range got {
			role, code, _ := strings.Cut(series, "/")
			require.Equal(t, float64(m.metrics[role][code]), v, "apikey_verifications_total role=%q code=%s", role, code)
		}
		require.Equal(t, uint64(4), m.metrics[""][codeMalformed], "self-check: MALFORMED has no role")
		for _, want := range []string{
			`apikey_verifications_total{mount="apikey/",role="orders",code="VALID"} 80`,
			`apikey_verifications_total{mount="apikey/",role="",code="MALFORMED"} 4`,
			`apikey_keys_issued_total{mount="apikey/",role="orders"} 4`,
			`apikey_keys_issued_total{mount="apikey/",role="reports"} 2`,
			`apikey_keys{mount="apikey/",role="orders",status="active"} 4`,
			`apikey_keys{mount="apikey/",role="reports",status="active"} 2`,
			`apikey_keys{mount="apikey/",role="orders",status="disabled"} 0`,
		} {
			require.Contains(t, body, want+"\n")
		}
		// The flush just ran, on the engine's clock.
		flushedAt := metricValue(t, body, `apikey_usage_last_flush_timestamp_seconds{mount="apikey/"}`)
		require.GreaterOrEqual(t, flushedAt, float64(readClock.Unix()))
		require.Less(t, flushedAt, float64(readClock.Add(5*time.Minute).Unix()))
		// After a complete flush nothing waits in memory.
		require.Equal(t, 0.0, metricValue(t, body, `apikey_usage_unflushed{mount="apikey/"}`),
			"apikey_usage_unflushed right after tidy flushed everything")
	})

	t.Run("who may read it", func(t *testing.T) {
		for _, path := range []string{"apikey/usage", "apikey/keys/" + k.o1.KeyID + "/usage", "apikey/metrics"} {
			_, err := verifier.Logical().Read(path)
			requireForbidden(t, err)
		}
		resp, err := httpGet(s, verifierToken, "/v1/apikey/metrics")
		require.NoError(t, err)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "the verifier scrapes no metrics")
		metricsClient := s.NewClient(t, metricsToken)
		for _, path := range []string{"apikey/usage", "apikey/keys/" + k.o1.KeyID + "/usage", "apikey/keys/" + k.o1.KeyID} {
			_, err := metricsClient.Logical().Read(path)
			requireForbidden(t, err)
		}
		_, err = metricsClient.Logical().List("apikey/keys")
		requireForbidden(t, err)
	})

	t.Run("bad input", func(t *testing.T) { badMonitoringInput(t, s, verifier, auditor, auditorToken, k) })

	// --- a restart keeps what was flushed ----------------------------------------------
	s.MustCLI(t, root, "plugin", "reload", "-type=secret", "-plugin="+testclockPluginName)
	s.WaitPluginReady(t, "apikey")
	clock, err := s.Client.Logical().Read("apikey/test/clock")
	require.NoError(t, err)
	restartedAt, err := time.Parse(time.RFC3339Nano, str(t, clock.Data, "now"))
	require.NoError(t, err)
	require.WithinDuration(t, time.Now(), restartedAt, time.Minute, "a new plugin process starts on the wall clock")
	require.NotContains(t, scrapeMetrics(t, s, metricsToken), "\napikey_verifications_total{", "the reload started a new plugin process (counters from zero)")
	s.SetClock(t, root, readClock)
	restarted := readDay(t, s, auditor, auditorToken, k)
	t.Run("read after a restart", func(t *testing.T) {
		checkDay(t, m, k, restarted)
		requireSameReads(t, after, restarted, "flushed counts survive the plugin's restart")
	})

	t.Run("inventory", func(t *testing.T) { inventoryFilters(t, s, operator, issuer, auditor, metricsToken, k, m) })

	t.Logf("TestMonitoringScriptedDay took %s", time.Since(began).Round(time.Millisecond))
}

// tokenWithout creates a token with only the policy name (no default policy), as the
// policy files tell operators to.
func tokenWithout(t *testing.T, s *Server, name string) string {
	t.Helper()
	sec, err := s.Client.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{name}, NoDefaultPolicy: true, TTL: "1h"})
	require.NoError(t, err)
	require.Equal(t, []string{name}, sec.Auth.Policies)
	return sec.Auth.ClientToken
}

// dayReads is every read of the scripted day, by what it asks.
type dayReads map[string]usageRead

// readDay reads the scripted day per key, role, mount and tag: keys over HTTP and o1
// with the CLI too (the two must agree).
func readDay(t *testing.T, s *Server, auditor *api.Client, auditorToken string, k *monitoringKeys) dayReads {
	t.Helper()
	out := dayReads{}
	for id, name := range k.byID() {
		p := "apikey/keys/" + id + "/usage"
		out[name+" hour"] = readUsage(t, auditor, p, dayRange("hour"))
		out[name+" day"] = readUsage(t, auditor, p, dayRange("day"))
		out[name+" route"] = readUsage(t, auditor, p, dayRange("day", "tag", "route"))
	}
	cli := s.CLISecret(t, auditorToken, "read", "-format=json", "apikey/keys/"+k.o1.KeyID+"/usage",
		"granularity=hour", "start="+rfc(dayStart), "end="+rfc(dayEnd))
	require.Equal(t, out["o1 hour"], decodeUsage(t, cli.Data), "the CLI reads what the HTTP API reads")

	out["mount hour"] = readUsage(t, auditor, "apikey/usage", dayRange("hour"))
	out["mount day"] = readUsage(t, auditor, "apikey/usage", dayRange("day"))
	out["orders hour"] = readUsage(t, auditor, "apikey/usage", dayRange("hour", "role", "orders"))
	out["reports hour"] = readUsage(t, auditor, "apikey/usage", dayRange("hour", "role", "reports"))
	out["top refusals"] = readUsage(t, auditor, "apikey/usage", dayRange("hour", "group_by", "key", "top", "refusals", "limit", "3"))
	out["top reports"] = readUsage(t, auditor, "apikey/usage", dayRange("day", "group_by", "key", "role", "reports"))
	out["mount tags"] = readUsage(t, auditor, "apikey/usage", dayRange("day", "group_by", "tag"))
	out["mount route"] = readUsage(t, auditor, "apikey/usage", dayRange("day", "group_by", "tag", "tag", "route"))
	out["reports tags"] = readUsage(t, auditor, "apikey/usage", dayRange("hour", "group_by", "tag", "role", "reports"))
	return out
}

// requireSameReads checks two readings of the day are the same, read by read (a diff of
// the first that is not, with the names of all that are not).
func requireSameReads(t *testing.T, want, got dayReads, msg string) {
	t.Helper()
	names := slices.Sorted(maps.Keys(want))
	require.ElementsMatch(t, names, slices.Collect(maps.Keys(got)), msg)
	var differ []string
	for _, name := range names {
		if !reflect.DeepEqual(want[name], got[name]) {
			differ = append(differ, name)
		}
	}
	if len(differ) > 0 {
		require.Equal(t, want[differ[0]], got[differ[0]], "%s: read %q (reads that differ: %v)", msg, differ[0], differ)
	}
}

// checkDay checks every read of the day against the model, exactly; each part in a
// subtest of its own, so that one wrong part does not hide the others.
func checkDay(t *testing.T, m *usageModel, k *monitoringKeys, r dayReads) {
	roleOf := map[string]string{"o1": "orders", "o2": "orders", "o3": "orders", "o4": "orders", "r1": "reports", "r2": "reports"}
	for id, name := range k.byID() {
		t.Run("key "+name, func(t *testing.T) { checkKeyDay(t, m, id, name, roleOf[name], r) })
	}

	t.Run("roles and mount", func(t *testing.T) {
		requireRangeRead(t, "orders", m.roles["orders"], r["orders hour"], "hour")
		requireRangeRead(t, "reports", m.roles["reports"], r["reports hour"], "hour")
		require.Equal(t, "orders", r["orders hour"].Role)
		mountRead := r["mount hour"]
		requireRangeRead(t, "mount", m.mount, mountRead, "hour")
		requireRangeRead(t, "mount day", m.mount, r["mount day"], "day")
		require.Equal(t, "", mountRead.Role)
		require.Equal(t, "outcome", mountRead.GroupBy)
		require.NotContains(t, mountRead.Fields, "tags", "group_by=outcome ranks no tags")
		require.NotContains(t, mountRead.Fields, "top_keys")
		require.Equal(t, uint64(4), mountRead.Totals[codeMalformed], "the mount counts MALFORMED")
		require.Equal(t, uint64(8+1), mountRead.Totals[codeNotFound], "the mount counts NOT_FOUND of o1's key_id and of an unknown key")
		require.Zero(t, r["orders hour"].Totals[codeMalformed], "no role has MALFORMED")
		ordersPlusReports := codeCounts{}
		ordersPlusReports.addAll(r["orders hour"].Totals)
		ordersPlusReports.addAll(r["reports hour"].Totals)
		ordersPlusReports.add(codeMalformed, 4)
		ordersPlusReports.add(codeNotFound, 1)
		require.Equal(t, mountRead.Totals, ordersPlusReports, "mount = roles + keys not found")
	})

	t.Run("top keys", func(t *testing.T) {
		// By refusals, limit 3: o1 (13), r1 (4), o2 (3); r2 (2) is cut.
		top := r["top refusals"]
		require.Equal(t, "key", top.GroupBy)
		requireRangeRead(t, "top refusals", m.mount, top, "hour")
		want := []usageTopKey{}
		for _, key := range []issued{k.o1, k.r1, k.o2} {
			sum := m.keys[key.KeyID].sum()
			want = append(want, usageTopKey{KeyID: key.KeyID, Total: sum.total(), Refusals: sum.refusals(), Counts: sum})
		}
		require.Equal(t, want, top.TopKeys, "top=refusals limit=3 (o1, r1, o2)")
		require.Equal(t, []uint64{13, 4, 3}, []uint64{top.TopKeys[0].Refusals, top.TopKeys[1].Refusals, top.TopKeys[2].Refusals})

		// Of reports, by verifications: r1 (17), r2 (4).
		want = nil
		for _, key := range []issued{k.r1, k.r2} {
			sum := m.keys[key.KeyID].sum()
			want = append(want, usageTopKey{KeyID: key.KeyID, Total: sum.total(), Refusals: sum.refusals(), Counts: sum})
		}
		require.Equal(t, want, r["top reports"].TopKeys, "role=reports group_by=key (r1, r2)")
		require.Equal(t, uint64(17), r["top reports"].TopKeys[0].Total)
	})

	t.Run("tags", func(t *testing.T) {
		// The mount's tags are its roles' together.
		mountTags := map[string]codeCounts{}
		for _, tags := range m.roleTags {
			for nv, c := range tags {
				if mountTags[nv] == nil {
					mountTags[nv] = codeCounts{}
				}
				mountTags[nv].addAll(c)
			}
		}
		// route=/orders: o1's 48 VALID and 8 NOT_FOUND, o2's 20 VALID and 3
		// INSUFFICIENT_SCOPE; the MALFORMED verifies' tags count for nobody.
		require.Equal(t, codeCounts{codeValid: 68, codeNotFound: 8, codeInsufficientScope: 3}, mountTags["route=/orders"], "self-check")
		requireTags(t, "mount tags", mountTags, "", r["mount tags"].Tags)
		require.Equal(t, "tag", r["mount tags"].GroupBy)
		requireTags(t, "mount route tags", mountTags, "route", r["mount route"].Tags)
		requireTagSeries(t, "mount route", mountTags, "route", r["mount route"].TagSeries)
		requireTags(t, "reports tags", m.roleTags["reports"], "", r["reports tags"].Tags)
		require.Equal(t, "tag", r["reports tags"].GroupBy)
	})
}

// checkKeyDay checks the reads of one key of the day.
func checkKeyDay(t *testing.T, m *usageModel, id, name, role string, r dayReads) {
	want := m.keys[id]
	if want == nil {
		want = newHours() // never verified
	}
	hour, day, route := r[name+" hour"], r[name+" day"], r[name+" route"]
	requireRangeRead(t, name+" hour", want, hour, "hour")
	requireRangeRead(t, name+" day", want, day, "day")
	requireRangeRead(t, name+" route", want, route, "day")
	for _, u := range []usageRead{hour, day, route} {
		require.Equal(t, id, u.KeyID, name)
		require.Equal(t, role, u.Role, name)
		require.True(t, u.Exists, name)
	}
	requireTags(t, name+" tags", m.keyTags[id], "", hour.Tags)
	requireTags(t, name+" route tags", m.keyTags[id], "route", route.Tags)
	if want.sum().total() == 0 {
		require.Empty(t, hour.LastUsedAt, name)
		require.Empty(t, hour.Networks, name)
		require.Empty(t, route.TagSeries, name)
		return
	}
	requireTagSeries(t, name+" route", m.keyTags[id], "route", route.TagSeries)
	last, err := time.Parse(time.RFC3339, hour.LastUsedAt)
	require.NoError(t, err, "%s: last_used_at %q", name, hour.LastUsedAt)
	require.Equal(t, hourAt(m.keyLast[id]), last.Truncate(time.Hour), "%s: last_used_at in the hour of its last verify", name)

	nets := map[string]netSeen{}
	for i, n := range hour.Networks {
		first, err := time.Parse(time.RFC3339, n.FirstSeen)
		require.NoError(t, err)
		lastSeen, err := time.Parse(time.RFC3339, n.LastSeen)
		require.NoError(t, err)
		nets[n.Network] = netSeen{count: n.Count, refused: n.Refused, first: int(first.Sub(dayStart) / time.Hour), last: int(lastSeen.Sub(dayStart) / time.Hour)}
		if i > 0 {
			require.GreaterOrEqual(t, hour.Networks[i-1].LastSeen, n.LastSeen, "%s: networks most recently seen first", name)
		}
	}
	wantNets := map[string]netSeen{}
	for p, n := range m.keyNets[id] {
		wantNets[p] = *n
	}
	require.Equal(t, wantNets, nets, "%s: networks", name)
	if name == "o1" {
		// Spelled out once (the model is the test's own; this pins it).
		require.Equal(t, map[string]netSeen{
			"198.51.100.0/24":  {count: 48 + 5, refused: 5, first: 0, last: 23},
			"2001:db8:aa::/48": {count: 12, refused: 0, first: 0, last: 20},
			"203.0.113.0/24":   {count: 8, refused: 8, first: 20, last: 23},
		}, nets)
	}
}

// scrapeMetrics GETs apikey/metrics with token over plain HTTP, as Prometheus would, and
// checks the exposition: content type, no key material, promtool.
func scrapeMetrics(t *testing.T, s *Server, token string) string {
	t.Helper()
	resp, err := httpGet(s, token, "/v1/apikey/metrics")
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
	require.Equal(t, promtext.ContentType, resp.Header.Get("Content-Type"))
	body := string(b)
	require.True(t, strings.HasPrefix(body, "# HELP "), "a raw exposition, not JSON: %.200s", body)
	for _, word := range []string{"api_key", "key_id", "vk_"} {
		require.NotContains(t, body, word, "no key material and no per-key label")
	}
	promtool, err := vaulttest.Promtool("..")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, vaulttest.CheckMetrics(ctx, promtool, b), "promtool check metrics on:\n%s", body)
	return body
}

func httpGet(s *Server, token, path string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, s.Addr+path, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	// Read the body now, so callers need not close it.
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, err
}

// metricValue is the value of the sample series (name with labels) in body.
func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err, line)
			return f
		}
	}
	t.Fatalf("no sample %s in:\n%s", series, body)
	return 0
}

var verificationSampleRE = regexp.MustCompile(`^apikey_verifications_total\{mount="apikey/",role="([^"]*)",code="([A-Z_]+)"\} (\S+)$`)

// verificationSamples returns the apikey_verifications_total samples of body by
// "<role>/<code>".
func verificationSamples(t *testing.T, body string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, "apikey_verifications_total{") {
			continue
		}
		sm := verificationSampleRE.FindStringSubmatch(line)
		require.NotNil(t, sm, "sample %q has other labels than mount, role and code", line)
		v, err := strconv.ParseFloat(sm[3], 64)
		require.NoError(t, err, line)
		require.NotContains(t, out, sm[1]+"/"+sm[2], "sample %q twice", line)
		out[sm[1]+"/"+sm[2]] = v
	}
	return out
}

// requireBadRequest checks err is a 400 whose message names field (starts with it).
func requireBadRequest(t *testing.T, err error, field string) {
	t.Helper()
	requireStatus(t, err, http.StatusBadRequest)
	var re *api.ResponseError
	require.ErrorAs(t, err, &re)
	require.NotEmpty(t, re.Errors)
	msg := strings.Join(re.Errors, "; ")
	t.Logf("400: %s", msg)
	require.True(t, strings.HasPrefix(msg, field+":") || strings.Contains(msg, fmt.Sprintf("%q", field)) || strings.HasPrefix(msg, field+" "),
		"the 400 names the field %s: %q", field, msg)
}

func badMonitoringInput(t *testing.T, s *Server, verifier, auditor *api.Client, auditorToken string, k *monitoringKeys) {
	nine := []string{}
	for i := range 9 {
		nine = append(nine, fmt.Sprintf("t%d=x", i))
	}
	for name, tags := range map[string][]string{
		"nine tags":      nine,
		"no value":       {"route="},
		"no name":        {"=/orders"},
		"no equals sign": {"route"},
		"uppercase name": {"Route=/orders"},
		"space in value": {"route=/a b"},
		"name twice":     {"region=eu", "region=us"},
		"value too long": {"route=/" + strings.Repeat("a", 128)},
	} {
		t.Run("verify tags "+name, func(t *testing.T) {
			_, err := tryVerifyData(verifier, "apikey", map[string]interface{}{"api_key": k.o1.Key, "tags": tags})
			requireBadRequest(t, err, "tags")
		})
	}

	keyUsage := "apikey/keys/" + k.o1.KeyID + "/usage"
	for _, tc := range []struct {
		name, path, field string
		params            map[string]string
	}{
		{"granularity", keyUsage, "granularity", map[string]string{"granularity": "week"}},
		{"start garbage", keyUsage, "start", map[string]string{"start": "yesterday"}},
		{"end garbage", keyUsage, "end", map[string]string{"end": "2026-13-01T00:00:00Z"}},
		{"negative end", "apikey/usage", "end", map[string]string{"end": "-5"}},
		{"start after end", "apikey/usage", "start", map[string]string{"start": rfc(dayEnd), "end": rfc(dayStart)}},
		{"empty range", keyUsage, "start", map[string]string{"start": rfc(dayStart), "end": rfc(dayStart)}},
		{"tag name", keyUsage, "tag", map[string]string{"tag": "Route"}},
		{"group_by", "apikey/usage", "group_by", map[string]string{"group_by": "day"}},
		{"top", "apikey/usage", "top", map[string]string{"group_by": "key", "top": "latency"}},
		{"limit zero", "apikey/usage", "limit", map[string]string{"group_by": "key", "limit": "0"}},
		{"limit too big", "apikey/usage", "limit", map[string]string{"group_by": "key", "limit": "1001"}},
		{"limit not a number", "apikey/usage", "limit", map[string]string{"group_by": "key", "limit": "ten"}},
		{"role", "apikey/usage", "role", map[string]string{"role": "Orders"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := map[string][]string{}
			for k, v := range tc.params {
				q[k] = []string{v}
			}
			_, err := auditor.Logical().ReadWithData(tc.path, q)
			requireBadRequest(t, err, tc.field)
		})
	}

	for _, tc := range []struct{ name, field, value string }{
		{"status", "status", "gone"},
		{"expiring_within garbage", "expiring_within", "soon"},
		{"expiring_within negative", "expiring_within", "-1h"},
		{"unused_for", "unused_for", "a while"},
		{"never_used", "never_used", "maybe"},
		{"limit zero", "limit", "0"},
		{"limit too big", "limit", "1001"},
		{"after", "after", "not-a-key-id"},
		{"role", "role", "Orders"},
		{"name", "name", ""},
	} {
		t.Run("keys list "+tc.name, func(t *testing.T) {
			_, err := auditor.Logical().ReadWithData("apikey/keys", map[string][]string{"list": {"true"}, tc.field: {tc.value}})
			requireBadRequest(t, err, tc.field)
		})
	}

	// And through the CLI.
	ce := s.CLIFail(t, auditorToken, "read", "apikey/usage", "granularity=week")
	require.Contains(t, ce.Stderr, "Code: 400", "%v", ce)
	require.Contains(t, ce.Stderr, "granularity:", "%v", ce)
}

// listKeys lists apikey/keys over HTTP (GET ?list=true) with filters; it returns the
// key_ids, their key_info and next_after.
func listKeys(t *testing.T, c *api.Client, params map[string][]string) ([]string, map[string]map[string]interface{}, string) {
	t.Helper()
	q := map[string][]string{"list": {"true"}}
	for k, v := range params {
		q[k] = v
	}
	sec, err := c.Logical().ReadWithData("apikey/keys", q)
	require.NoError(t, err, "LIST apikey/keys %v", params)
	if sec == nil {
		return nil, nil, "" // Vault answers an empty LIST with 404
	}
	var keys []string
	if sec.Data["keys"] != nil {
		keys = strs(t, sec.Data, "keys")
	}
	info := map[string]map[string]interface{}{}
	if raw, ok := sec.Data["key_info"].(map[string]interface{}); ok {
		for id, v := range raw {
			m, ok := v.(map[string]interface{})
			require.True(t, ok, "key_info[%s] is %T", id, v)
			info[id] = m
		}
	}
	next := ""
	if v, ok := sec.Data["next_after"]; ok {
		next, _ = v.(string)
	}
	return keys, info, next
}

func inventoryFilters(t *testing.T, s *Server, operator, issuer, auditor *api.Client, metricsToken string, k *monitoringKeys, m *usageModel) {
	// The inventory is asked about at the real now: the day's verifies lie ~9 months back.
	s.SetClock(t, s.RootToken, time.Now())

	_, err := operator.Logical().Write("apikey/keys/"+k.o2.KeyID, map[string]interface{}{"disabled": true})
	require.NoError(t, err)
	rot, err := issuer.Logical().Write("apikey/creds/orders/rotate", map[string]interface{}{"api_key": k.o4.Key, "grace_period": "1h"})
	require.NoError(t, err)
	o5 := issuedFrom(t, rot) // o4's replacement: same name and metadata
	require.Equal(t, k.o4.KeyID, str(t, rot.Data, "old_key_id"))

	ids := func(keys ...issued) []string {
		out := []string{}
		for _, key := range keys {
			out = append(out, key.KeyID)
		}
		slices.Sort(out)
		return out
	}
	all := ids(k.o1, k.o2, k.o3, k.o4, o5, k.r1, k.r2)
	label := map[string]string{o5.KeyID: "o5"}
	for id, n := range k.byID() {
		label[id] = n
	}
	labels := func(keys []string) []string {
		out := []string{}
		for _, id := range keys {
			out = append(out, label[id])
		}
		return out
	}
	check := func(t *testing.T, params map[string][]string, want []string) {
		t.Helper()
		got, _, next := listKeys(t, auditor, params)
		if got == nil {
			got = []string{}
		}
		require.Equal(t, labels(want), labels(got), "LIST apikey/keys %v", params)
		require.Equal(t, want, got, "in key_id order")
		require.Empty(t, next, "one page")
	}
	q := func(kv ...string) map[string][]string {
		out := map[string][]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = append(out[kv[i]], kv[i+1])
		}
		return out
	}

	t.Run("now", func(t *testing.T) {
		check(t, nil, all)
		check(t, q("role", "orders"), ids(k.o1, k.o2, k.o3, k.o4, o5))
		check(t, q("role", "reports"), ids(k.r1, k.r2))
		check(t, q("role", "nosuchrole"), []string{})
		check(t, q("status", "disabled"), ids(k.o2))
		check(t, q("status", "rotated"), ids(k.o4))
		check(t, q("status", "active"), ids(k.o1, k.o3, o5, k.r1, k.r2))
		check(t, q("status", "active", "role", "orders"), ids(k.o1, k.o3, o5))
		check(t, q("status", "expired"), []string{})
		// r2 lives 24h, o4 1h more (its grace period); the rest a week.
		check(t, q("expiring_within", "48h"), ids(k.o4, k.r2))
		check(t, q("expiring_within", "2d"), ids(k.o4, k.r2))
		check(t, q("expiring_within", "172800"), ids(k.o4, k.r2))
		check(t, q("expiring_within", "2h"), ids(k.o4))
		check(t, q("expiring_within", "2h", "role", "reports"), []string{})
		// Used (VALID) on the scripted day, ~9 months ago; o3, o4 and o5 never.
		check(t, q("unused_for", "90d"), ids(k.o1, k.o2, k.r1, k.r2))
		check(t, q("unused_for", "2160h", "role", "reports"), ids(k.r1, k.r2))
		check(t, q("never_used", "true"), ids(k.o3, k.o4, o5))
		check(t, q("never_used", "false"), ids(k.o1, k.o2, k.r1, k.r2))
		check(t, q("name", "checkout-*"), ids(k.o1, k.o2))
		check(t, q("name", "*-eu"), ids(k.o1))
		check(t, q("name", "batch"), ids(k.o4, o5))
		check(t, q("name", "batc"), []string{})
		check(t, q("metadata", "team=payments"), ids(k.o1, k.o2))
		check(t, q("metadata", "team=platform"), ids(k.o3, k.o4, o5))
		check(t, q("metadata", "team=analytics", "role", "orders"), []string{})
		check(t, q("role", "orders", "never_used", "true", "name", "batch", "status", "active"), ids(o5))

		// key_info (vault list -detailed): status, use counts flushed by tidy and read
		// back after the reload.
		_, info, _ := listKeys(t, auditor, nil)
		require.Equal(t, "disabled", info[k.o2.KeyID]["status"])
		require.Equal(t, "rotated", info[k.o4.KeyID]["status"])
		require.Equal(t, "active", info[k.o1.KeyID]["status"])
		require.Equal(t, json.Number(strconv.FormatUint(m.validUses[k.o1.KeyID], 10)), info[k.o1.KeyID]["use_count"])
		require.Equal(t, json.Number("60"), info[k.o1.KeyID]["use_count"])
		require.Equal(t, json.Number("0"), info[k.o3.KeyID]["use_count"])
		require.Equal(t, "", info[k.o3.KeyID]["last_used_at"])
		lastUsed, err := time.Parse(time.RFC3339, fmt.Sprint(info[k.r2.KeyID]["last_used_at"]))
		require.NoError(t, err)
		require.Equal(t, hourAt(23), lastUsed.Truncate(time.Hour), "r2's last VALID use")
	})

	t.Run("pages", func(t *testing.T) {
		walk := func(params map[string][]string) []string {
			var seen []string
			after := ""
			for pages := 0; ; pages++ {
				require.Less(t, pages, 50, "pagination does not end")
				p := q("limit", "1")
				for k, v := range params {
					p[k] = v
				}
				if after != "" {
					p["after"] = []string{after}
				}
				keys, _, next := listKeys(t, auditor, p)
				require.LessOrEqual(t, len(keys), 1, "limit=1")
				seen = append(seen, keys...)
				if next == "" {
					return seen
				}
				require.Greater(t, next, after, "next_after moves forward")
				after = next
			}
		}
		require.Equal(t, all, walk(nil), "limit=1 walks every key_id exactly once, in order")
		require.Equal(t, ids(k.o1, k.o2, k.o3, k.o4, o5), walk(q("role", "orders")))
		require.Equal(t, ids(k.r1, k.r2), walk(q("metadata", "team=analytics")))
		// limit=3 pages: 3, 3, 1.
		first, _, next := listKeys(t, auditor, q("limit", "3"))
		require.Equal(t, all[:3], first)
		require.Equal(t, all[2], next)
		second, _, next := listKeys(t, auditor, q("limit", "3", "after", next))
		require.Equal(t, all[3:6], second)
		third, _, next := listKeys(t, auditor, q("limit", "3", "after", next))
		require.Equal(t, all[6:], third)
		require.Empty(t, next)
	})

	t.Run("a day later", func(t *testing.T) {
		// 25 hours on: r2 (24h) and o4 (grace 1h) have expired; o2 stays disabled.
		s.SetClock(t, s.RootToken, time.Now().Add(25*time.Hour))
		check(t, q("status", "expired"), ids(k.o4, k.r2))
		check(t, q("status", "disabled"), ids(k.o2))
		check(t, q("status", "active"), ids(k.o1, k.o3, o5, k.r1))
		check(t, q("expiring_within", "48h"), []string{})
		check(t, q("expiring_within", "7d"), ids(k.o1, k.o2, k.o3, o5, k.r1))
		// Never used and issued over a day ago: idle for an hour too.
		check(t, q("unused_for", "1h"), all)
		check(t, q("unused_for", "26h"), ids(k.o1, k.o2, k.r1, k.r2))

		body := scrapeMetrics(t, s, metricsToken)
		for _, want := range []string{
			`apikey_keys{mount="apikey/",role="orders",status="active"} 3`,
			`apikey_keys{mount="apikey/",role="orders",status="disabled"} 1`,
			`apikey_keys{mount="apikey/",role="orders",status="expired"} 1`,
			`apikey_keys{mount="apikey/",role="orders",status="rotated"} 0`,
			`apikey_keys{mount="apikey/",role="reports",status="active"} 1`,
			`apikey_keys{mount="apikey/",role="reports",status="expired"} 1`,
			`apikey_keys_rotated_total{mount="apikey/",role="orders"} 1`,
		} {
			require.Contains(t, body, want+"\n")
		}
	})
}
