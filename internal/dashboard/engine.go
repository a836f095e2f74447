package dashboard

import (
	"bufio"
	"bytes"
	"context"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The engine's answers, as docs/reference.md and docs/monitoring.md describe them. Only
// the fields the dashboard shows are decoded.

// keyInfo is one entry of the keys/ LIST's key_info.
type keyInfo struct {
	Role       string `json:"role"`
	Identity   string `json:"identity"`
	Name       string `json:"name"`
	Status     string `json:"status"`
	CreatedAt  string `json:"created_at"`
	ExpiresAt  string `json:"expires_at"`
	Disabled   bool   `json:"disabled"`
	UseCount   int64  `json:"use_count"`
	LastUsedAt string `json:"last_used_at"`
}

type keyList struct {
	Keys      []string           `json:"keys"`
	KeyInfo   map[string]keyInfo `json:"key_info"`
	NextAfter string             `json:"next_after"`
}

// keyRecord is keys/<key_id>.
type keyRecord struct {
	KeyID          string            `json:"key_id"`
	Role           string            `json:"role"`
	Name           string            `json:"name"`
	Scopes         []string          `json:"scopes"`
	Metadata       map[string]string `json:"metadata"`
	CreatedAt      string            `json:"created_at"`
	ExpiresAt      string            `json:"expires_at"`
	TTL            int64             `json:"ttl"`
	Disabled       bool              `json:"disabled"`
	BoundCIDRs     []string          `json:"bound_cidrs"`
	RateLimit      float64           `json:"rate_limit"`
	RateLimitBurst int64             `json:"rate_limit_burst"`
	MaxUses        int64             `json:"max_uses"`
	UseCount       int64             `json:"use_count"`
	LastUsedAt     string            `json:"last_used_at"`
	RemainingUses  *int64            `json:"remaining_uses"`
	ReplacedBy     string            `json:"replaced_by"`
	Identity       string            `json:"identity"`
	SharedLimits   bool              `json:"shared_limits"`
}

// issuedKey is the answer of creds/<role> and creds/<role>/rotate: the one time the key
// is ever shown.
type issuedKey struct {
	APIKey       string            `json:"api_key"`
	KeyID        string            `json:"key_id"`
	Role         string            `json:"role"`
	Name         string            `json:"name"`
	Scopes       []string          `json:"scopes"`
	Metadata     map[string]string `json:"metadata"`
	ExpiresAt    string            `json:"expires_at"`
	OldKeyID     string            `json:"old_key_id"`
	OldExpiresAt string            `json:"old_expires_at"`
	LeaseID      string            `json:"-"` // from the answer's lease_id
}

// roleData is roles/<name>.
type roleData struct {
	Scopes         []string          `json:"scopes"`
	TTL            int64             `json:"ttl"`
	MaxTTL         int64             `json:"max_ttl"`
	KeyPrefix      string            `json:"key_prefix"`
	BoundCIDRs     []string          `json:"bound_cidrs"`
	RateLimit      float64           `json:"rate_limit"`
	RateLimitBurst int64             `json:"rate_limit_burst"`
	MaxUses        int64             `json:"max_uses"`
	Metadata       map[string]string `json:"metadata"`
	AnomalyAction  string            `json:"anomaly_action"`
}

type nameList struct {
	Keys []string `json:"keys"`
}

// usageBucket is one bucket of a usage series.
type usageBucket struct {
	Start  string           `json:"start"`
	Total  int64            `json:"total"`
	Counts map[string]int64 `json:"counts"`
}

type tagCount struct {
	Name   string           `json:"name"`
	Value  string           `json:"value"`
	Total  int64            `json:"total"`
	Counts map[string]int64 `json:"counts"`
}

type networkSeen struct {
	Network   string `json:"network"`
	Count     int64  `json:"count"`
	Refused   int64  `json:"refused"`
	FirstSeen string `json:"first_seen"`
	LastSeen  string `json:"last_seen"`
}

type topKey struct {
	KeyID    string           `json:"key_id"`
	Total    int64            `json:"total"`
	Refusals int64            `json:"refusals"`
	Counts   map[string]int64 `json:"counts"`
}

// usageData is usage and keys/<key_id>/usage.
type usageData struct {
	Granularity string           `json:"granularity"`
	Start       string           `json:"start"`
	End         string           `json:"end"`
	Series      []usageBucket    `json:"series"`
	Totals      map[string]int64 `json:"totals"`
	Total       int64            `json:"total"`
	Refusals    int64            `json:"refusals"`
	AllTime     map[string]int64 `json:"all_time"`
	Tags        []tagCount       `json:"tags"`
	TopKeys     []topKey         `json:"top_keys"`
	// keys/<key_id>/usage only
	KeyID      string        `json:"key_id"`
	Role       string        `json:"role"`
	Exists     bool          `json:"exists"`
	LastUsedAt string        `json:"last_used_at"`
	Networks   []networkSeen `json:"networks"`
}

// anomalyInfo is one entry of the anomalies/ LIST's key_info.
type anomalyInfo struct {
	ID           string  `json:"id"`
	KeyID        string  `json:"key_id"`
	Role         string  `json:"role"`
	Kind         string  `json:"kind"`
	At           string  `json:"at"`
	Detail       string  `json:"detail"`
	Observed     float64 `json:"observed"`
	Baseline     float64 `json:"baseline"`
	Network      string  `json:"network"`
	Action       string  `json:"action"`
	Acknowledged bool    `json:"acknowledged"`
}

type anomalyList struct {
	Keys      []string               `json:"keys"`
	KeyInfo   map[string]anomalyInfo `json:"key_info"`
	NextAfter string                 `json:"next_after"`
}

// lookupSelf is auth/token/lookup-self.
type lookupSelf struct {
	DisplayName string   `json:"display_name"`
	Policies    []string `json:"policies"`
	TTL         int64    `json:"ttl"`
}

// engine is the apikey mount as one person sees it: every method calls Vault with
// their token.
type engine struct {
	v     *vaultClient
	mount string // without slashes
	token string
}

func (e engine) path(parts ...string) string {
	return e.mount + "/" + strings.Join(parts, "/")
}

func (e engine) listKeys(ctx context.Context, params url.Values) (keyList, error) {
	l, _, err := get[keyList](ctx, e.v, e.token, call{op: "list", path: e.path("keys/"), params: params})
	if isStatus(err, 404) { // an empty inventory is a 404 to LIST
		return keyList{}, nil
	}
	return l, err
}

func (e engine) readKey(ctx context.Context, id string) (keyRecord, error) {
	k, _, err := get[keyRecord](ctx, e.v, e.token, call{op: "read", path: e.path("keys", id)})
	return k, err
}

func (e engine) keyUsage(ctx context.Context, id string, params url.Values) (usageData, error) {
	u, _, err := get[usageData](ctx, e.v, e.token, call{op: "read", path: e.path("keys", id, "usage"), params: params})
	return u, err
}

func (e engine) usage(ctx context.Context, params url.Values) (usageData, error) {
	u, _, err := get[usageData](ctx, e.v, e.token, call{op: "read", path: e.path("usage"), params: params})
	return u, err
}

func (e engine) listAnomalies(ctx context.Context, params url.Values) (anomalyList, error) {
	l, _, err := get[anomalyList](ctx, e.v, e.token, call{op: "list", path: e.path("anomalies/"), params: params})
	if isStatus(err, 404) {
		return anomalyList{}, nil
	}
	return l, err
}

func (e engine) listRoles(ctx context.Context) ([]string, error) {
	l, _, err := get[nameList](ctx, e.v, e.token, call{op: "list", path: e.path("roles/")})
	if isStatus(err, 404) {
		return nil, nil
	}
	return l.Keys, err
}

func (e engine) readRole(ctx context.Context, name string) (roleData, error) {
	r, _, err := get[roleData](ctx, e.v, e.token, call{op: "read", path: e.path("roles", name)})
	return r, err
}

// writeRole creates (create=true) or updates a role; Vault picks create or update by
// whether the role exists, and the error page names what was meant.
func (e engine) writeRole(ctx context.Context, name string, body map[string]any, create bool) error {
	op := "update"
	if create {
		op = "create"
	}
	return e.v.do(ctx, e.token, call{op: op, path: e.path("roles", name), body: body}, nil)
}

func (e engine) issue(ctx context.Context, role string, body map[string]any) (issuedKey, []string, error) {
	return e.issueAt(ctx, e.path("creds", role), body)
}

func (e engine) rotate(ctx context.Context, role string, body map[string]any) (issuedKey, []string, error) {
	return e.issueAt(ctx, e.path("creds", role, "rotate"), body)
}

// issueAt writes a path that answers a new key as a lease.
func (e engine) issueAt(ctx context.Context, path string, body map[string]any) (issuedKey, []string, error) {
	var env envelope[issuedKey]
	err := e.v.do(ctx, e.token, call{op: "update", path: path, body: body}, &env)
	env.Data.LeaseID = env.LeaseID
	return env.Data, env.Warnings, err
}

func (e engine) updateKey(ctx context.Context, id string, body map[string]any) error {
	return e.v.do(ctx, e.token, call{op: "update", path: e.path("keys", id), body: body}, nil)
}

func (e engine) deleteKey(ctx context.Context, id string) error {
	return e.v.do(ctx, e.token, call{op: "delete", path: e.path("keys", id)}, nil)
}

// capabilities returns the token's capabilities on paths (sys/capabilities-self, which
// Vault's default policy grants); nil map on error.
func (e engine) capabilities(ctx context.Context, paths ...string) map[string][]string {
	var out map[string]any
	data, _, err := get[map[string]any](ctx, e.v, e.token, call{op: "update", path: "sys/capabilities-self", body: map[string]any{"paths": paths}})
	if err != nil {
		return nil
	}
	out = data
	caps := map[string][]string{}
	for _, p := range paths {
		list, _ := out[p].([]any)
		for _, c := range list {
			if s, ok := c.(string); ok {
				caps[p] = append(caps[p], s)
			}
		}
	}
	return caps
}

// keyStatusCount is keys by role and status from apikey_keys in the metrics path.
type keyStatusCount map[string]map[string]int64

// parseKeyGauges reads the apikey_keys series of a Prometheus text exposition, and the
// time they were computed (apikey_inventory_timestamp_seconds; zero if absent).
func parseKeyGauges(text []byte) (keyStatusCount, time.Time) {
	out := keyStatusCount{}
	var at time.Time
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "apikey_keys{"):
			labels, value, ok := parseSample(line[len("apikey_keys"):])
			if !ok {
				continue
			}
			n, err := strconv.ParseFloat(value, 64)
			if err != nil {
				continue
			}
			role, status := labels["role"], labels["status"]
			if out[role] == nil {
				out[role] = map[string]int64{}
			}
			out[role][status] += int64(n)
		case strings.HasPrefix(line, "apikey_inventory_timestamp_seconds"):
			_, value, ok := parseSample(line[len("apikey_inventory_timestamp_seconds"):])
			if f, err := strconv.ParseFloat(value, 64); ok && err == nil && f > 0 {
				at = time.Unix(int64(f), 0).UTC()
			}
		}
	}
	return out, at
}

// parseSample reads `{name="value",...} number` (labels optional).
func parseSample(s string) (map[string]string, string, bool) {
	labels := map[string]string{}
	if strings.HasPrefix(s, "{") {
		s = s[1:]
		for {
			s = strings.TrimLeft(s, ", ")
			if strings.HasPrefix(s, "}") {
				s = s[1:]
				break
			}
			eq := strings.Index(s, "=\"")
			if eq <= 0 {
				return nil, "", false
			}
			name := s[:eq]
			s = s[eq+2:]
			var val strings.Builder
			closed := false
			for i := 0; i < len(s); i++ {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					i++
					switch s[i] {
					case 'n':
						val.WriteByte('\n')
					default:
						val.WriteByte(s[i])
					}
					continue
				}
				if c == '"' {
					s = s[i+1:]
					closed = true
					break
				}
				val.WriteByte(c)
			}
			if !closed {
				return nil, "", false
			}
			labels[name] = val.String()
		}
	}
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return nil, "", false
	}
	return labels, fields[0], true
}
