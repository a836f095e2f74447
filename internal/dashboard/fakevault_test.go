package dashboard

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeVault answers the parts of Vault's HTTP API the dashboard calls, from memory: a
// userpass login, token lookups and revocation, and the apikey engine's paths. Tokens
// are allowed everything (admin) or only reads and lists (reader); anything else is a
// 403 "permission denied", as Vault answers it.
type fakeVault struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	tokens   map[string]*fakeToken
	users    map[string]string // userpass user -> password
	keys     map[string]keyRecord
	roles    map[string]roleData
	requests []fakeRequest
	revoked  []string
	issued   []string // keys issued
	metrics  string
	next     int
}

type fakeToken struct {
	name   string
	ttl    int64
	reader bool // reads and lists only
	dead   bool // revoked: every call is a 403
}

type fakeRequest struct {
	Method, Path, Query, Token string
	Body                       map[string]any
}

const fakeKeyPrefix = "vk_"

func newFakeVault(t testing.TB) *fakeVault {
	f := &fakeVault{
		t:      t,
		tokens: map[string]*fakeToken{},
		users:  map[string]string{},
		keys:   map[string]keyRecord{},
		roles:  map[string]roleData{},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeVault) addToken(token, name string, ttl int64, reader bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens[token] = &fakeToken{name: name, ttl: ttl, reader: reader}
}

func (f *fakeVault) addKey(k keyRecord) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys[k.KeyID] = k
}

func (f *fakeVault) calls() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

// writes are the calls that would change something in Vault.
func (f *fakeVault) writes() []fakeRequest {
	var out []fakeRequest
	for _, r := range f.calls() {
		if r.Method != http.MethodGet && r.Path != "/v1/sys/capabilities-self" && r.Path != "/v1/auth/token/lookup-self" {
			out = append(out, r)
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func vaultErr(w http.ResponseWriter, status int, msgs ...string) {
	writeJSON(w, status, map[string]any{"errors": msgs})
}

func (f *fakeVault) serve(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if r.Body != nil && (r.Method == http.MethodPut || r.Method == http.MethodPost) {
		_ = json.NewDecoder(r.Body).Decode(&body)
	}
	token := r.Header.Get("X-Vault-Token")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, fakeRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Token: token, Body: body})
	p := strings.TrimPrefix(r.URL.Path, "/v1/")
	list := r.URL.Query().Get("list") == "true"

	if user, ok := strings.CutPrefix(p, "auth/userpass/login/"); ok && r.Method == http.MethodPut {
		if pw, ok := f.users[user]; !ok || body["password"] != pw {
			vaultErr(w, http.StatusBadRequest, "invalid username or password")
			return
		}
		f.next++
		tok := fmt.Sprintf("hvs.userpass-%s-%d", user, f.next)
		f.tokens[tok] = &fakeToken{name: "userpass-" + user, ttl: 3600}
		writeJSON(w, http.StatusOK, map[string]any{"auth": map[string]any{"client_token": tok, "policies": []string{"default"}, "lease_duration": 3600}})
		return
	}
	t := f.tokens[token]
	if t == nil || t.dead {
		vaultErr(w, http.StatusForbidden, "permission denied")
		return
	}
	switch {
	case p == "auth/token/lookup-self":
		writeJSON(w, http.StatusOK, map[string]any{"data": lookupSelf{DisplayName: t.name, Policies: []string{"default", "p"}, TTL: t.ttl}})
		return
	case p == "auth/token/revoke-self":
		t.dead = true
		f.revoked = append(f.revoked, token)
		w.WriteHeader(http.StatusNoContent)
		return
	case p == "sys/capabilities-self":
		caps := []string{"create", "read", "update", "delete", "list"}
		if t.reader {
			caps = []string{"read", "list"}
		}
		data := map[string]any{}
		for _, path := range body["paths"].([]any) {
			data[path.(string)] = caps
		}
		writeJSON(w, http.StatusOK, map[string]any{"data": data})
		return
	}
	if t.reader && !(r.Method == http.MethodGet) {
		vaultErr(w, http.StatusForbidden, "permission denied")
		return
	}
	p, ok := strings.CutPrefix(p, "apikey/")
	if !ok {
		vaultErr(w, http.StatusNotFound)
		return
	}
	parts := strings.Split(strings.TrimSuffix(p, "/"), "/")
	switch {
	case parts[0] == "keys" && len(parts) == 1 && list:
		f.listKeys(w, r)
	case parts[0] == "keys" && len(parts) == 2:
		k, ok := f.keys[parts[1]]
		switch {
		case !ok:
			vaultErr(w, http.StatusNotFound)
		case r.Method == http.MethodGet:
			writeJSON(w, http.StatusOK, map[string]any{"data": k})
		case r.Method == http.MethodDelete:
			delete(f.keys, parts[1])
			w.WriteHeader(http.StatusNoContent)
		default:
			if d, ok := body["disabled"].(bool); ok {
				k.Disabled = d
			}
			f.keys[k.KeyID] = k
			writeJSON(w, http.StatusOK, map[string]any{"data": k})
		}
	case parts[0] == "keys" && len(parts) == 3 && parts[2] == "usage":
		k, ok := f.keys[parts[1]]
		if !ok {
			vaultErr(w, http.StatusNotFound)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"data": usageData{Granularity: "hour", Start: "2026-11-27T00:00:00Z",
			End: "2026-11-29T00:00:00Z", KeyID: k.KeyID, Role: k.Role, Exists: true, Total: 3, Refusals: 1,
			Series: []usageBucket{{Start: "2026-11-28T10:00:00Z", Total: 3, Counts: map[string]int64{"VALID": 2, "EXPIRED": 1}}},
			Tags:   []tagCount{{Name: "route", Value: `<b>x</b>`, Total: 3, Counts: map[string]int64{"VALID": 3}}}}})
	case parts[0] == "usage":
		writeJSON(w, http.StatusOK, map[string]any{"data": usageData{Granularity: r.URL.Query().Get("granularity"),
			Start: "2026-11-27T00:00:00Z", End: "2026-11-29T00:00:00Z", Total: 5,
			Series:  []usageBucket{{Start: "2026-11-28T10:00:00Z", Total: 5, Counts: map[string]int64{"VALID": 5}}},
			TopKeys: []topKey{{KeyID: "AAAAAAAAAAAAAAAA", Total: 5, Refusals: 1, Counts: map[string]int64{"VALID": 4, "DISABLED": 1}}}}})
	case parts[0] == "metrics":
		if f.metrics == "" {
			vaultErr(w, http.StatusForbidden, "permission denied")
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(f.metrics))
	case parts[0] == "anomalies" && list:
		writeJSON(w, http.StatusOK, map[string]any{"data": anomalyList{Keys: []string{"a1"}, KeyInfo: map[string]anomalyInfo{
			"a1": {KeyID: "AAAAAAAAAAAAAAAA", Role: "demo", Kind: "new_network", At: "2026-11-28T10:00:00Z", Detail: `<script>alert("a")</script>`},
		}}})
	case parts[0] == "roles" && len(parts) == 1 && list:
		names := make([]string, 0, len(f.roles))
		for n := range f.roles {
			names = append(names, n)
		}
		slices.Sort(names)
		writeJSON(w, http.StatusOK, map[string]any{"data": nameList{Keys: names}})
	case parts[0] == "roles" && len(parts) == 2:
		role, ok := f.roles[parts[1]]
		switch {
		case r.Method == http.MethodGet && !ok:
			vaultErr(w, http.StatusNotFound)
		case r.Method == http.MethodGet:
			writeJSON(w, http.StatusOK, map[string]any{"data": role})
		default:
			if ttl, _ := body["ttl"].(string); ttl == "bad" {
				vaultErr(w, http.StatusBadRequest, `ttl: "bad" is not a duration <script>`)
				return
			}
			f.roles[parts[1]] = roleData{KeyPrefix: "vk"}
			w.WriteHeader(http.StatusNoContent)
		}
	case parts[0] == "creds" && len(parts) >= 2:
		if _, ok := f.roles[parts[1]]; !ok {
			vaultErr(w, http.StatusBadRequest, fmt.Sprintf("role %q does not exist", parts[1]))
			return
		}
		f.next++
		id := fmt.Sprintf("K%015d", f.next)
		key := fakeKeyPrefix + id + strings.Repeat("s", 49)
		f.issued = append(f.issued, key)
		name, _ := body["name"].(string)
		md := map[string]string{}
		if m, ok := body["metadata"].(map[string]any); ok {
			for k, v := range m {
				md[k] = fmt.Sprint(v)
			}
		}
		f.keys[id] = keyRecord{KeyID: id, Role: parts[1], Name: name, Metadata: md, CreatedAt: "2026-11-28T10:00:00Z", ExpiresAt: "2026-11-28T11:00:00Z"}
		data := issuedKey{APIKey: key, KeyID: id, Role: parts[1], Name: name, Metadata: md, ExpiresAt: "2026-11-28T11:00:00Z"}
		if len(parts) == 3 {
			data.OldKeyID, _ = body["key_id"].(string)
		}
		writeJSON(w, http.StatusOK, map[string]any{"lease_id": "apikey/creds/" + parts[1] + "/lease" + strconv.Itoa(f.next), "data": data})
	default:
		vaultErr(w, http.StatusNotFound)
	}
}

func (f *fakeVault) listKeys(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("unused_for") == "soon" {
		vaultErr(w, http.StatusBadRequest, `unused_for: "soon" is not a duration`)
		return
	}
	ids := make([]string, 0, len(f.keys))
	for id, k := range f.keys {
		if role := q.Get("role"); role != "" && k.Role != role {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	start, _ := slices.BinarySearch(ids, q.Get("after"))
	if start < len(ids) && ids[start] == q.Get("after") {
		start++
	}
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil {
		limit = len(ids)
	}
	end := min(start+limit, len(ids))
	out := keyList{Keys: ids[start:end], KeyInfo: map[string]keyInfo{}}
	for _, id := range out.Keys {
		k := f.keys[id]
		status := "active"
		if k.Disabled {
			status = "disabled"
		}
		out.KeyInfo[id] = keyInfo{Role: k.Role, Identity: k.Identity, Name: k.Name, Status: status, CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt, UseCount: k.UseCount}
	}
	if end < len(ids) {
		out.NextAfter = ids[end-1]
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": out})
}
