package apikey

import (
	"maps"
	"sync"
	"sync/atomic"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usagestats"
)

// maxCountedRoles bounds the per-role event counters; events of roles past it are
// counted under otherRoleLabel, so a churn of role names cannot grow memory or the
// metrics output without bound.
const (
	maxCountedRoles = 10_000
	otherRoleLabel  = "_other"
)

// engineCounters are this process's event counts, exported by the metrics path as
// Prometheus counters (which start again from zero when the plugin restarts).
type engineCounters struct {
	mu     sync.Mutex
	byRole map[string]*roleEvents

	// verifications are verify outcomes by role ("" for keys not found) and code index
	// (usagestats.CodeIndex), counted on verify's hot path: a read lock and an atomic add.
	verifyMu      sync.RWMutex
	verifications map[string]*[usagestats.NumCodes]atomic.Uint64

	// anomalies counts anomalies raised by role and kind.
	anomalies map[[2]string]uint64

	cacheHits   atomic.Uint64
	cacheMisses atomic.Uint64
	flushErrors atomic.Uint64
	// lastFlush is the Unix time of the last flush of usage counts that fully succeeded.
	lastFlush atomic.Int64
}

// roleEvents counts lifecycle events of one role's keys.
type roleEvents struct {
	Issued, Revoked, Rotated uint64
	// LeakRevoked and LeakDisabled count keys killed by leak reports.
	LeakRevoked, LeakDisabled uint64
}

func newEngineCounters() *engineCounters {
	return &engineCounters{byRole: make(map[string]*roleEvents), verifications: make(map[string]*[usagestats.NumCodes]atomic.Uint64), anomalies: make(map[[2]string]uint64)}
}

// anomaly counts one anomaly of kind for role.
func (c *engineCounters) anomaly(role, kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.anomalies[[2]string{role, kind}]; !ok && len(c.anomalies) >= maxCountedRoles {
		role = otherRoleLabel
	}
	c.anomalies[[2]string{role, kind}]++
}

// anomalyCounts returns a copy of the anomaly counts by role and kind.
func (c *engineCounters) anomalyCounts() map[[2]string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.anomalies)
}

// verified counts one verify outcome; code is a usagestats.CodeIndex.
func (c *engineCounters) verified(role string, code int) { c.verifiedN(role, code, 1) }

// verifiedN counts n verify outcomes alike (answers a caller served itself and
// reported, path_usage_report.go).
func (c *engineCounters) verifiedN(role string, code int, n uint64) {
	c.verifyMu.RLock()
	counts := c.verifications[role]
	c.verifyMu.RUnlock()
	if counts == nil {
		c.verifyMu.Lock()
		if counts = c.verifications[role]; counts == nil {
			if len(c.verifications) >= maxCountedRoles {
				role = otherRoleLabel
				counts = c.verifications[role]
			}
			if counts == nil {
				counts = new([usagestats.NumCodes]atomic.Uint64)
				c.verifications[role] = counts
			}
		}
		c.verifyMu.Unlock()
	}
	counts[code].Add(n)
}

// verificationCounts returns a copy of the verify outcome counts by role.
func (c *engineCounters) verificationCounts() map[string]usagestats.Counts {
	c.verifyMu.RLock()
	defer c.verifyMu.RUnlock()
	out := make(map[string]usagestats.Counts, len(c.verifications))
	for role, counts := range c.verifications {
		var cs usagestats.Counts
		for i := range counts {
			cs[i] = counts[i].Load()
		}
		out[role] = cs
	}
	return out
}

// event adds one to the counter f picks for role.
func (c *engineCounters) event(role string, f func(*roleEvents) *uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.byRole[role]
	if e == nil {
		if len(c.byRole) >= maxCountedRoles {
			role = otherRoleLabel
			e = c.byRole[role]
		}
		if e == nil {
			e = &roleEvents{}
			c.byRole[role] = e
		}
	}
	*f(e)++
}

func (c *engineCounters) issued(role string) {
	c.event(role, func(e *roleEvents) *uint64 { return &e.Issued })
}

func (c *engineCounters) revoked(role string) {
	c.event(role, func(e *roleEvents) *uint64 { return &e.Revoked })
}

func (c *engineCounters) leaked(role, action string) {
	c.event(role, func(e *roleEvents) *uint64 {
		if action == leakedActionDisable {
			return &e.LeakDisabled
		}
		return &e.LeakRevoked
	})
}

func (c *engineCounters) rotated(role string) {
	c.event(role, func(e *roleEvents) *uint64 { return &e.Rotated })
}

// roleEvents returns a copy of the per-role counts.
func (c *engineCounters) roleEvents() map[string]roleEvents {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]roleEvents, len(c.byRole))
	for role, e := range maps.All(c.byRole) {
		out[role] = *e
	}
	return out
}
