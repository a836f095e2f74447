package apikeyauth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// fakeEngine is a small model of the engine's fleet side behind the fake Vault: keys
// with max_uses and a rate limit, one grant per (holder, key) topped up by verify and
// grants/renew, the change feed and usage reports. It counts and checks nothing the
// middleware does not rely on: the real engine is tested end to end in
// fleetengine_test.go.
type fakeEngine struct {
	t  testing.TB
	fv *fakeVault

	mu       sync.Mutex
	keys     map[string]*fakeKey // by the key itself
	grants   map[string]*fakeGrant
	grantOf  map[string]string // holder + "/" + key_id -> grant id
	grantTTL time.Duration
	noGrants bool
	nextID   int

	epoch      string
	events     []verifyapi.FeedEvent
	changed    chan struct{} // closed (and replaced) when an event is added
	feedStatus int           // non-zero: the feed answers this status
	feedStall  chan struct{} // non-nil: the feed answers only once it is closed
	feedCalls  int
	lastCursor string

	reportStatus int // non-zero: usage/report answers this status

	renews  []map[string]any
	reports []verifyapi.Report
	// bodies are the bodies of every call but verify (which carries the key).
	bodies []string
}

type fakeKey struct {
	key, keyID, token string
	code              string // what verify answers when nothing else refuses
	remaining         *int64 // max_uses left; nil: no max_uses
	rate, burst       float64
	rateLimited       bool  // verify answers RATE_LIMITED (the direct share is spent)
	grantUses         int64 // > 0: every top-up grants this many, whatever was asked
	admitted          int64
}

type fakeGrant struct {
	id, holder, keyID string
	outstanding       int64
	// handedOver: the first top-up handed the holder the key's full bucket (the
	// engine's, at a share of 1); later ones hand over nothing (the engine's bucket
	// stays empty while the holder owns the whole rate).
	handedOver bool
}

func newFakeEngine(t testing.TB, fv *fakeVault, mount string) *fakeEngine {
	e := &fakeEngine{
		t: t, fv: fv, keys: map[string]*fakeKey{}, grants: map[string]*fakeGrant{}, grantOf: map[string]string{},
		grantTTL: 10 * time.Second, epoch: "e1", changed: make(chan struct{}),
	}
	fv.set(func(fv *fakeVault) { fv.respond = e.verify })
	fv.mux.HandleFunc("/v1/"+mount+"/grants/renew", e.renew)
	fv.mux.HandleFunc("/v1/"+mount+"/feed", e.feed)
	fv.mux.HandleFunc("/v1/"+mount+"/usage/report", e.report)
	return e
}

func (e *fakeEngine) addKey(k *fakeKey) *fakeKey {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.nextID++
	if k.keyID == "" {
		k.keyID = fmt.Sprintf("key%02d", e.nextID)
	}
	k.token = "tok-" + k.keyID
	if k.code == "" {
		k.code = CodeValid
	}
	e.keys[k.key] = k
	return k
}

func (e *fakeEngine) with(f func(e *fakeEngine)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f(e)
}

// event appends a feed event and wakes long polls.
func (e *fakeEngine) event(kind, keyID string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, verifyapi.FeedEvent{Kind: kind, KeyID: keyID})
	close(e.changed)
	e.changed = make(chan struct{})
}

func (e *fakeEngine) verify(req verifyRequest) map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.fv.clockNow()
	k := e.keys[req.APIKey]
	if k == nil {
		return answer(CodeNotFound, now, 0)
	}
	cost := int64(1)
	if req.Cost != nil {
		cost = int64(*req.Cost)
	}
	code := k.code
	if code == CodeValid && k.rateLimited {
		code = CodeRateLimited
	}
	if code == CodeValid && k.remaining != nil {
		if *k.remaining < cost {
			code = CodeUsageExceeded
		} else {
			*k.remaining -= cost
		}
	}
	d := answer(code, now, time.Hour)
	d["key_id"] = k.keyID
	if k.remaining != nil {
		d["remaining_uses"] = *k.remaining
	}
	if k.rate > 0 {
		d["rate_limit"] = k.rate
	}
	if code == CodeRateLimited {
		d["retry_after"] = 1
	}
	if code == CodeValid {
		k.admitted++
	}
	if req.GrantHolder == "" {
		return d
	}
	d["report_token"] = k.token
	metered := k.remaining != nil || k.rate > 0
	if code != CodeValid || !metered || e.noGrants {
		return d
	}
	want := int64(16)
	if req.GrantUses != nil {
		want = *req.GrantUses
	}
	g := e.grantFor(req.GrantHolder, k)
	for f, v := range e.topUp(g, k, want) {
		d[f] = v
	}
	return d
}

func (e *fakeEngine) grantFor(holder string, k *fakeKey) *fakeGrant {
	if id, ok := e.grantOf[holder+"/"+k.keyID]; ok {
		return e.grants[id]
	}
	e.nextID++
	g := &fakeGrant{id: fmt.Sprintf("grant%02d", e.nextID), holder: holder, keyID: k.keyID}
	e.grants[g.id] = g
	e.grantOf[holder+"/"+k.keyID] = g.id
	return g
}

// topUp debits up to want uses for g and returns the grant's response fields.
func (e *fakeEngine) topUp(g *fakeGrant, k *fakeKey, want int64) map[string]any {
	d := map[string]any{"grant_id": g.id, "grant_ttl_ms": e.grantTTL.Milliseconds()}
	if k.grantUses > 0 {
		want = k.grantUses
	}
	if k.remaining != nil {
		n := min(want, *k.remaining)
		*k.remaining -= n
		g.outstanding += n
		d["granted_uses"] = n
	}
	if k.rate > 0 {
		tokens := 0.0
		if !g.handedOver {
			tokens, g.handedOver = k.burst, true
		}
		d["granted_limits"] = []map[string]any{{"name": "default", "rate": k.rate, "burst": k.burst, "tokens": tokens}}
	}
	return d
}

func (e *fakeEngine) body(r *http.Request) map[string]any {
	b, _ := io.ReadAll(r.Body)
	e.bodies = append(e.bodies, r.URL.String()+" "+string(b))
	var d map[string]any
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	_ = dec.Decode(&d)
	return d
}

func writeData(w http.ResponseWriter, d map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"data": d})
}

func (e *fakeEngine) renew(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	d := e.body(r)
	e.renews = append(e.renews, d)
	id, _ := d["grant_id"].(string)
	holder, _ := d["grant_holder"].(string)
	g := e.grants[id]
	if g == nil || g.holder != holder {
		writeData(w, map[string]any{"renewed": false})
		return
	}
	var k *fakeKey
	for _, c := range e.keys {
		if c.keyID == g.keyID {
			k = c
		}
	}
	unused, _ := verifyapi.Number(d["unused"])
	if int64(unused) > g.outstanding && k.remaining != nil {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]any{"errors": []string{"unused: more than the grant has outstanding"}})
		return
	}
	if k.remaining != nil {
		*k.remaining += int64(unused)
		g.outstanding -= int64(unused)
	}
	if release, _ := d["release"].(bool); release {
		delete(e.grants, id)
		delete(e.grantOf, g.holder+"/"+g.keyID)
		writeData(w, map[string]any{"renewed": false})
		return
	}
	want := int64(16)
	if n, ok := verifyapi.Number(d["grant_uses"]); ok {
		want = int64(n)
	}
	resp := e.topUp(g, k, want)
	resp["renewed"] = true
	writeData(w, resp)
}

func (e *fakeEngine) cursor() string { return e.epoch + "." + strconv.Itoa(len(e.events)) }

func (e *fakeEngine) feed(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	e.body(r)
	e.feedCalls++
	status, stall := e.feedStatus, e.feedStall
	cursor := r.URL.Query().Get("cursor")
	e.lastCursor = cursor
	wait, _ := strconv.Atoi(r.URL.Query().Get("wait"))
	e.mu.Unlock()
	if stall != nil {
		select {
		case <-stall:
		case <-r.Context().Done():
			return
		}
	}
	if status != 0 {
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"errors": []string{"feed broken"}})
		return
	}
	deadline := time.After(time.Duration(wait) * time.Second)
	for {
		e.mu.Lock()
		epoch, seqText, _ := strings.Cut(cursor, ".")
		seq, err := strconv.Atoi(seqText)
		if epoch != e.epoch || err != nil || seq > len(e.events) {
			resp := verifyapi.FeedResponse{Cursor: e.cursor(), Reset: true}
			e.mu.Unlock()
			writeData(w, resp.Data())
			return
		}
		if seq < len(e.events) || wait == 0 {
			resp := verifyapi.FeedResponse{Cursor: e.cursor(), Events: e.events[seq:]}
			e.mu.Unlock()
			writeData(w, resp.Data())
			return
		}
		changed := e.changed
		e.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			wait = 0
		case <-r.Context().Done():
			return
		}
	}
}

func (e *fakeEngine) report(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	d := e.body(r)
	if e.reportStatus != 0 {
		w.WriteHeader(e.reportStatus)
		_ = json.NewEncoder(w).Encode(map[string]any{"errors": []string{"entries[0].code: refused"}})
		return
	}
	raw, _ := d["entries"].([]any)
	entries, err := verifyapi.DecodeReportEntries(raw)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]any{"errors": []string{err.Error()}})
		return
	}
	holder, _ := d["grant_holder"].(string)
	e.reports = append(e.reports, verifyapi.Report{Holder: holder, Entries: entries})
	var accepted, rejected int64
	for _, en := range entries {
		ok := false
		for _, k := range e.keys {
			if k.keyID == en.KeyID && k.token == en.ReportToken {
				ok = true
			}
		}
		if ok {
			accepted++
		} else {
			rejected++
		}
	}
	writeData(w, map[string]any{"accepted": accepted, "rejected": rejected})
}

// fleetHarness is a harness with Fleet on against the fake engine. Background work is
// off: tests poll the feed, renew grants and send reports by hand, with the fake clock.
type fleetHarness struct {
	*harness
	engine *fakeEngine
}

func newFleetHarness(t testing.TB, cfg Config) *fleetHarness {
	t.Helper()
	cfg.Fleet = true
	// A feed wait under a second: polls answer at once (the fake clock drives time).
	h := newHarnessWith(t, cfg, hooks{noLoops: true, feedWait: time.Millisecond})
	h.vault.set(func(fv *fakeVault) { fv.clock = h.clock })
	return &fleetHarness{harness: h, engine: newFakeEngine(t, h.vault, DefaultMount)}
}

// poll makes one feed call (as the feed loop does) and fails the test on an error.
func (h *fleetHarness) poll(cursor string) string {
	h.t.Helper()
	next, err := h.mw.fleet.pollFeed(context.Background(), cursor)
	require.NoError(h.t, err)
	return next
}

func (h *fleetHarness) verifyCalls() int64 { return h.vault.calls.Load() }

// doFrom sends one request with key from remoteAddr through RequireCost(cost).
func (h *fleetHarness) doFrom(key, remoteAddr string, cost int) *http.Response {
	h.t.Helper()
	r, _ := http.NewRequest(http.MethodGet, "/orders", nil)
	r.RemoteAddr = remoteAddr
	r.Header.Set("X-API-Key", key)
	rec := httptest.NewRecorder()
	h.mw.RequireCost(cost)(identityHandler()).ServeHTTP(rec, r)
	return rec.Result()
}
