package usagestats

import (
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// Scope is what a Record counts for.
type Scope uint8

// Scopes.
const (
	ScopeKey Scope = iota + 1
	ScopeRole
	ScopeMount
)

// String returns "key", "role" or "mount".
func (s Scope) String() string {
	switch s {
	case ScopeKey:
		return "key"
	case ScopeRole:
		return "role"
	case ScopeMount:
		return "mount"
	}
	return fmt.Sprintf("Scope(%d)", int(s))
}

// Delta is what a Recorder counted for one key, role or the mount since it was last
// flushed. Name is the key ID or role name ("" for the mount); Role is the key's role
// (keys only), so that a key revoked before its first flush still has one.
type Delta struct {
	Scope  Scope
	Name   string
	Role   string
	Record Record
}

// Recorder accumulates verify outcomes in memory, safe for concurrent use. It holds
// deltas only: the plugin flushes them (Dirty, Merge into storage, Flushed) so memory
// follows the keys used since the last flush, and a key's delta never exceeds Config's
// bounds even if flushing stops.
type Recorder struct {
	cfg   Config
	mu    sync.RWMutex
	keys  map[string]*entry
	roles map[string]*entry
	mount entry
}

type entry struct {
	mu  sync.Mutex
	rec Record
	// used is set by Record and cleared by Dirty: an entry that was neither used nor
	// holds counts since the previous Dirty is dropped.
	used bool
	// retired is set when the recorder dropped the entry; a holder must fetch a new one.
	retired bool
	// role is a key's role, as the last Record gave it.
	role string
}

// NewRecorder returns an empty recorder bounded by cfg (zero fields take the defaults).
func NewRecorder(cfg Config) (*Recorder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Recorder{cfg: cfg.WithDefaults(), keys: make(map[string]*entry), roles: make(map[string]*entry)}, nil
}

// Config returns the recorder's bounds, defaults applied.
func (r *Recorder) Config() Config { return r.cfg }

// Record counts one verify: its outcome code for the mount, for role and for key (either
// may be empty, as for MALFORMED and NOT_FOUND), its tags for role and key, and the
// client's network for key (client may be the zero Addr). now is the verify's time.
// It refuses an unknown code or invalid tags and then counts nothing.
func (r *Recorder) Record(key, role, code string, tags []Tag, client netip.Addr, now time.Time) error {
	return r.RecordN(key, role, code, tags, client, now, 1)
}

// RecordN is Record for n verifications alike (n of 0 counts nothing): the answers a
// caller served itself and reported in one batch.
func (r *Recorder) RecordN(key, role, code string, tags []Tag, client netip.Addr, now time.Time, n uint64) error {
	idx, ok := CodeIndex(code)
	if !ok {
		return fmt.Errorf("unknown verify code %.40q", code)
	}
	if len(tags) > 0 {
		if err := ValidateTags(tags); err != nil {
			return err
		}
	}
	if n == 0 {
		return nil
	}
	sec := now.Unix()
	m := &r.mount
	m.mu.Lock()
	m.rec.count(idx, n, sec, &r.cfg)
	m.used = true
	m.mu.Unlock()
	if role != "" {
		r.update(r.roles, role, func(_ *entry, rec *Record) {
			rec.count(idx, n, sec, &r.cfg)
			if len(tags) > 0 {
				rec.countTags(tags, idx, n, sec, &r.cfg)
			}
		})
	}
	if key != "" {
		r.update(r.keys, key, func(e *entry, rec *Record) {
			if role != "" {
				e.role = role
			}
			rec.count(idx, n, sec, &r.cfg)
			if len(tags) > 0 {
				rec.countTags(tags, idx, n, sec, &r.cfg)
			}
			if p, ok := NetworkOf(client); ok {
				addNetwork(&rec.Networks, p, idx != codeValid, n, sec, r.cfg.MaxNetworks)
			}
		})
	}
	return nil
}

// update runs f on name's entry in m under the entry's lock, creating it if needed.
func (r *Recorder) update(m map[string]*entry, name string, f func(*entry, *Record)) {
	for {
		r.mu.RLock()
		e := m[name]
		r.mu.RUnlock()
		if e == nil {
			r.mu.Lock()
			if e = m[name]; e == nil {
				e = &entry{}
				m[name] = e
			}
			r.mu.Unlock()
		}
		e.mu.Lock()
		if e.retired {
			e.mu.Unlock()
			continue
		}
		f(e, &e.rec)
		e.used = true
		e.mu.Unlock()
		return
	}
}

// Dirty returns a copy of every non-empty delta, mount first. Entries neither used since
// the previous Dirty nor holding counts are dropped, so memory follows the keys in use.
// Pass each delta to Flushed once it is merged into storage; a delta that is not
// flushed is handed out again, with what was counted since, by the next Dirty. Record
// waits on Dirty only for the entry being copied and for the final removal of idle
// entries, never for the whole walk.
func (r *Recorder) Dirty() []Delta {
	var out []Delta
	r.mount.mu.Lock()
	if !r.mount.rec.IsZero() {
		out = append(out, Delta{Scope: ScopeMount, Record: r.mount.rec.Clone()})
	}
	r.mount.used = false
	r.mount.mu.Unlock()
	type named struct {
		scope Scope
		name  string
		e     *entry
	}
	r.mu.RLock()
	all := make([]named, 0, len(r.roles)+len(r.keys))
	for name, e := range r.roles {
		all = append(all, named{ScopeRole, name, e})
	}
	for name, e := range r.keys {
		all = append(all, named{ScopeKey, name, e})
	}
	r.mu.RUnlock()
	var idle []named
	for _, n := range all {
		n.e.mu.Lock()
		switch {
		case !n.e.rec.IsZero():
			out = append(out, Delta{Scope: n.scope, Name: n.name, Role: n.e.role, Record: n.e.rec.Clone()})
		case !n.e.used:
			idle = append(idle, n)
		}
		n.e.used = false
		n.e.mu.Unlock()
	}
	if len(idle) == 0 {
		return out
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range idle {
		m := r.keys
		if n.scope == ScopeRole {
			m = r.roles
		}
		if m[n.name] != n.e {
			continue
		}
		n.e.mu.Lock()
		// Record may have used it since it was found idle: then it stays.
		if !n.e.used && n.e.rec.IsZero() {
			n.e.retired = true
			delete(m, n.name)
		}
		n.e.mu.Unlock()
	}
	return out
}

// Flushed subtracts d, returned by Dirty and now merged into storage, from the deltas
// held: what was counted after Dirty stays for the next flush. Subtraction stops at
// zero, so the only counts it can drop are those of a network evicted from the bounded
// set and seen again between Dirty and Flushed.
func (r *Recorder) Flushed(d Delta) {
	e := r.lookup(d.Scope, d.Name)
	if e == nil {
		return
	}
	e.mu.Lock()
	e.rec.sub(&d.Record)
	if e.rec.IsZero() {
		e.rec.LastUsed = 0
	}
	e.mu.Unlock()
}

// Peek returns a copy of the delta held for a key, a role or the mount (name ""), to
// merge with the stored record when answering a read.
func (r *Recorder) Peek(scope Scope, name string) (Record, bool) {
	e := r.lookup(scope, name)
	if e == nil {
		return Record{}, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.rec.IsZero() {
		return Record{}, false
	}
	return e.rec.Clone(), true
}

// Forget drops what is held for key (the key is gone).
func (r *Recorder) Forget(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.keys[key]; ok {
		e.mu.Lock()
		e.retired = true
		e.mu.Unlock()
		delete(r.keys, key)
	}
}

// Len returns how many keys and roles have an entry.
func (r *Recorder) Len() (keys, roles int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.keys), len(r.roles)
}

func (r *Recorder) lookup(scope Scope, name string) *entry {
	switch scope {
	case ScopeMount:
		return &r.mount
	case ScopeRole, ScopeKey:
		m := r.keys
		if scope == ScopeRole {
			m = r.roles
		}
		r.mu.RLock()
		defer r.mu.RUnlock()
		return m[name]
	}
	return nil
}

// Names returns the names of the keys or roles that have an entry, in no order.
func (r *Recorder) Names(scope Scope) []string {
	m := r.keys
	if scope == ScopeRole {
		m = r.roles
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(m))
	for name := range m {
		out = append(out, name)
	}
	return out
}

// KeyRole returns the role the last Record gave for key; "" when key has no entry.
func (r *Recorder) KeyRole(key string) string {
	e := r.lookup(ScopeKey, key)
	if e == nil {
		return ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.role
}

// Pending returns how many keys and roles (and the mount) hold counts not yet flushed.
// Entries a flush emptied are not counted, although they stay until the next Dirty.
func (r *Recorder) Pending() int {
	n := 0
	r.mount.mu.Lock()
	if !r.mount.rec.IsZero() {
		n++
	}
	r.mount.mu.Unlock()
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, m := range []map[string]*entry{r.keys, r.roles} {
		for _, e := range m {
			e.mu.Lock()
			if !e.rec.IsZero() {
				n++
			}
			e.mu.Unlock()
		}
	}
	return n
}
