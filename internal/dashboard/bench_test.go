package dashboard

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The dashboard's own cost per page: a fake Vault in the same process answers every call
// from bytes built before the timer starts, so what is measured is the dashboard (the
// Vault client's HTTP round trips over loopback, decoding, the templates), not the engine.
// The engine's own cost of a page of keys/ is in the plugin's benchmarks
// (keys_list_bench_test.go).

// benchVault serves pre-built answers for an inventory of n keys.
type benchVault struct {
	srv     *httptest.Server
	ids     []string
	answers map[string][]byte // path?query -> body
}

func newBenchVault(b *testing.B, n int) *benchVault {
	bv := &benchVault{answers: map[string][]byte{}}
	bv.ids = make([]string, n)
	for i := range n {
		bv.ids[i] = fmt.Sprintf("K%015d", i)
	}
	env := func(data any) []byte {
		out, err := json.Marshal(map[string]any{"data": data})
		if err != nil {
			b.Fatal(err)
		}
		return out
	}
	bv.answers["/v1/apikey/roles"] = env(nameList{Keys: []string{"bulk", "demo", "payments", "reports"}})
	// Usage: 48 hourly and 90 daily buckets, every one with traffic.
	series := func(g string, count int, step time.Duration) []byte {
		end := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
		start := end.Add(-time.Duration(count) * step)
		u := usageData{Granularity: g, Start: start.Format(time.RFC3339), End: end.Format(time.RFC3339), AllTime: map[string]int64{"VALID": 1e6}}
		for i := range count {
			u.Series = append(u.Series, usageBucket{Start: start.Add(time.Duration(i) * step).Format(time.RFC3339), Total: 1000,
				Counts: map[string]int64{"VALID": 900, "NOT_FOUND": 50, "RATE_LIMITED": 30, "INSUFFICIENT_SCOPE": 20}})
		}
		for i := range 10 {
			u.TopKeys = append(u.TopKeys, topKey{KeyID: bv.ids[i%n], Total: int64(1000 - i), Refusals: int64(10 * i),
				Counts: map[string]int64{"VALID": int64(1000 - 11*i), "RATE_LIMITED": int64(10 * i)}})
		}
		return env(u)
	}
	bv.answers["/v1/apikey/usage?granularity=hour"] = series("hour", 48, time.Hour)
	bv.answers["/v1/apikey/usage?granularity=day"] = series("day", 90, 24*time.Hour)
	top := series("day", 90, 24*time.Hour)
	for _, by := range []string{"verifications", "refusals"} {
		q := url.Values{"granularity": {"day"}, "group_by": {"key"}, "limit": {"10"}, "top": {by}}
		bv.answers["/v1/apikey/usage?"+q.Encode()] = top
	}
	an := anomalyList{KeyInfo: map[string]anomalyInfo{}}
	for i := range 20 {
		id := fmt.Sprintf("20261128T%02d0000.000Z-%08x", i, i)
		an.Keys = append(an.Keys, id)
		an.KeyInfo[id] = anomalyInfo{KeyID: bv.ids[i%n], Role: "demo", Kind: "new_network", At: "2026-11-28T10:00:00Z", Detail: "a network never seen", Network: "203.0.113.0/24", Action: "logged"}
	}
	bv.answers["/v1/apikey/anomalies"] = env(an)
	var metrics strings.Builder
	for _, role := range []string{"bulk", "demo", "payments", "reports"} {
		for _, st := range keyStatuses {
			fmt.Fprintf(&metrics, "apikey_keys{mount=\"apikey/\",role=%q,status=%q} %d\n", role, st, n/16)
		}
	}
	metrics.WriteString("apikey_inventory_timestamp_seconds{mount=\"apikey/\"} 1.7e+09\n")
	bv.answers["/v1/apikey/metrics"] = []byte(metrics.String())
	bv.srv = httptest.NewServer(http.HandlerFunc(bv.serve))
	b.Cleanup(bv.srv.Close)
	return bv
}

// keyPage builds the keys/ LIST answer for a page of limit keys after after.
func (bv *benchVault) keyPage(b *testing.B, after string, limit int) {
	start, found := slices.BinarySearch(bv.ids, after)
	if found {
		start++
	}
	end := min(start+limit, len(bv.ids))
	l := keyList{Keys: bv.ids[start:end], KeyInfo: map[string]keyInfo{}}
	for _, id := range l.Keys {
		l.KeyInfo[id] = keyInfo{Role: "bulk", Name: "batch worker " + id[10:], Status: "active", CreatedAt: "2026-11-28T10:00:00Z",
			ExpiresAt: "2026-12-28T10:00:00Z", UseCount: 12345, LastUsedAt: "2026-11-29T11:00:00Z"}
	}
	if end < len(bv.ids) {
		l.NextAfter = bv.ids[end-1]
	}
	body, err := json.Marshal(map[string]any{"data": l})
	if err != nil {
		b.Fatal(err)
	}
	q := url.Values{"after": {after}, "limit": {strconv.Itoa(limit)}, "list": {"true"}}
	bv.answers["/v1/apikey/keys?"+q.Encode()] = body
}

func (bv *benchVault) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	q.Del("list")
	key := r.URL.Path
	if r.URL.Path == "/v1/apikey/keys" {
		key += "?" + r.URL.RawQuery
	} else if len(q) > 0 && r.URL.Path != "/v1/apikey/anomalies" {
		key += "?" + q.Encode()
	}
	body, ok := bv.answers[key]
	if !ok {
		http.Error(w, `{"errors":["no answer for `+key+`"]}`, http.StatusNotFound)
		return
	}
	if strings.HasSuffix(r.URL.Path, "/metrics") {
		w.Header().Set("Content-Type", "text/plain")
	} else {
		w.Header().Set("Content-Type", "application/json")
	}
	_, _ = w.Write(body)
}

// benchServer is a dashboard in front of bv with one signed-in session.
func benchServer(b *testing.B, bv *benchVault) (*Server, *http.Cookie) {
	srv, err := New(Config{VaultAddr: bv.srv.URL, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	id := srv.sessions.create(&session{token: "hvs.bench", csrf: "c", who: "bench", expires: time.Now().Add(time.Hour)})
	return srv, &http.Cookie{Name: sessionCookie, Value: id}
}

func benchPage(b *testing.B, srv *Server, cookie *http.Cookie, path string) {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.AddCookie(cookie)
	// Once outside the timer: the page must render whole.
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		b.Fatalf("%s: %d\n%s", path, rec.Code, rec.Body.String())
	}
	b.ReportAllocs()
	b.ResetTimer()
	var bytes int
	for b.Loop() {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		bytes = rec.Body.Len()
	}
	b.ReportMetric(float64(bytes), "B/page")
}

// BenchmarkKeysPage is one page of the inventory in the middle of it: the dashboard asks
// the engine for that page only, so the inventory's size does not change its cost.
func BenchmarkKeysPage(b *testing.B) {
	for _, tc := range []struct{ keys, limit int }{{1_000, 50}, {100_000, 50}, {100_000, 1000}} {
		b.Run(fmt.Sprintf("keys=%d/limit=%d", tc.keys, tc.limit), func(b *testing.B) {
			bv := newBenchVault(b, tc.keys)
			after := bv.ids[tc.keys/2]
			bv.keyPage(b, after, tc.limit)
			srv, cookie := benchServer(b, bv)
			benchPage(b, srv, cookie, "/keys?"+url.Values{"after": {after}, "limit": {strconv.Itoa(tc.limit)}}.Encode())
		})
	}
}

// BenchmarkOverview is the landing page: keys by status from the metrics, the 48-hour
// and 90-day charts with traffic in every bucket, the top keys and 20 anomalies (six
// Vault calls, made concurrently).
func BenchmarkOverview(b *testing.B) {
	bv := newBenchVault(b, 100_000)
	srv, cookie := benchServer(b, bv)
	benchPage(b, srv, cookie, "/")
}
