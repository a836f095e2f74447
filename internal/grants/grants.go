// Package grants keeps the engine's book of quota grants: which holder (a caller that
// serves many requests per verify call, such as one gateway process) may admit how
// much of which key without asking, and the pure arithmetic that sizes grants.
//
// A grant is for one (holder, key_id): asking again tops up the same grant. It has
//
//   - uses: debited from the key's credits by the caller when it grants them; the book
//     only remembers how many are outstanding (granted less returned), so that a
//     holder can never return more than it was given, and in which refill period
//     they were debited, so that only uses of the current period are refunded;
//   - a share f of the key's rate limits (its limiter account's): the shares of all
//     live holders of an account sum to at most 1 at every moment. f is the holder's
//     water-filling share of capacity 1 over the live holders' demands, but never
//     more than what the others leave free; holders renew at half their TTL, so
//     shares converge to the fair ones within about a TTL.
//
// A holder refused RATE_LIMITED is registered with its demand and no share, so that
// the next renewals of the others make room for it.
//
// A holder may keep spending a share it was given until that grant's expiry, unaware
// of anything the book did since: the answer that lowered its share may be lost, and
// a grant the engine released or cancelled is only learnt of through the feed. So a
// share that goes down (a renewal that gives less, a release by the engine, a
// cancellation) keeps counting, against the others' shares and the engine's own
// buckets, until the expiry of the grant that carried it. Only a holder's own release
// (ReleaseByHolder) frees its share at once.
//
// Entries live for a TTL after their last grant or registration, and for as long as a
// share they carried still counts (at most a TTL more). The book is bounded
// (Config) and in memory only: when it is lost (restart, failover) every grant is
// forgotten, and since their uses were debited they count as spent: a book that is lost
// under-admits, never over-admits.
//
// Vault-free; safe for concurrent use.
package grants

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Config.
const (
	DefaultMaxEntries    = 100_000
	DefaultMaxPerAccount = 256
	// DefaultWant is how many uses a holder gets when it asks for none in particular.
	DefaultWant = 16
)

// shareSlack keeps rounding from ever taking a sum of shares above 1.
const shareSlack = 1e-9

// maxPast bounds the earlier shares an entry remembers (renewals come about every half
// TTL, so two or three are usually live); beyond, the oldest two are merged into one
// that counts the larger share until the later expiry, which can only over-count.
const maxPast = 4

// Config bounds a Table. Zero fields take the defaults.
type Config struct {
	// MaxEntries bounds the grants and registrations held in all (about 300 bytes
	// each); MaxPerAccount those of one limiter account. Beyond them a holder gets
	// no grant (it asks verify for every request, as without grants).
	MaxEntries    int
	MaxPerAccount int
}

// Request asks for a grant, or registers a holder.
type Request struct {
	Holder string
	KeyID  string
	// Account is the limiter account the key's rate limits and credits belong to
	// (the key, or the identity it shares limits with).
	Account string
	// Demand is the fraction of the account's rate the holder asks for; 0, less, or
	// NaN means as much as it may get (an equal share when all ask so). Above 1 is 1.
	Demand float64
	// Rated says whether the key has rate limits: only then does the grant carry a
	// share.
	Rated bool
	TTL   time.Duration
}

// Ticket is a reserved grant: its id, its share, and how many live holders the
// account has. The caller debits the uses and then calls Commit.
type Ticket struct {
	ID      string
	Share   float64
	Holders int
	e       *entry
}

// Grant is what the book holds about a live grant.
type Grant struct {
	ID, Holder, KeyID, Account string
	Share                      float64
	Outstanding                int64
	Expires                    time.Time
}

type holderKey struct{ holder, keyID string }

// held is a share a holder may spend until a time.
type held struct {
	share float64
	until time.Time
}

type entry struct {
	holderKey
	account string
	// id is "" for a registration (RATE_LIMITED) without a grant, and once the grant
	// ended (released or cancelled by the engine, or expired) while a share of it may
	// still be in use.
	id     string
	demand float64
	// expires ends the grant or registration: its id answers and its demand counts
	// until then. The zero Time once ended.
	expires time.Time
	// share is the last share given, which the holder may use until shareUntil (the
	// expiry of the grant that carried it), even once the grant ended. past are the
	// earlier shares it may still be using (an answer that lowered its share may have
	// been lost), each until its grant's expiry: those not outdone by a later one (a
	// larger share until later), by expiry, at most maxPast.
	share      float64
	shareUntil time.Time
	past       []held
	// outstanding is uses granted less uses returned, over the grant's life;
	// periodOut the part of it debited in refill period period.
	outstanding, periodOut int64
	period                 int64
}

// Table is the book. The zero Table is not usable; call New.
type Table struct {
	cfg Config

	mu       sync.Mutex
	byID     map[string]*entry
	byHolder map[holderKey]*entry
	byKey    map[string]map[*entry]struct{}
	accounts map[string]map[*entry]struct{}
	// inserts since the last full sweep of expired entries: one sweep per as many
	// inserts as there are entries keeps their cost O(1) per insert.
	inserts int

	// size mirrors len(byHolder), so that an account without holders (all of them
	// while nobody holds a grant) costs verify no lock.
	size atomic.Int64
}

// New returns an empty book.
func New(cfg Config) *Table {
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.MaxPerAccount <= 0 {
		cfg.MaxPerAccount = DefaultMaxPerAccount
	}
	return &Table{
		cfg:      cfg,
		byID:     make(map[string]*entry),
		byHolder: make(map[holderKey]*entry),
		byKey:    make(map[string]map[*entry]struct{}),
		accounts: make(map[string]map[*entry]struct{}),
	}
}

// Reserve finds or makes the grant of (r.Holder, r.KeyID), computes its share anew and
// keeps it live for r.TTL. It returns false when the book is full.
func (t *Table) Reserve(r Request, now time.Time) (Ticket, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.entryFor(r, now)
	if !ok {
		return Ticket{}, false
	}
	if e.id == "" {
		e.id = newID()
		t.byID[e.id] = e
	}
	prev, prevUntil := e.share, e.shareUntil
	e.demand = demand(r.Demand)
	e.expires = now.Add(r.TTL)
	e.share, e.shareUntil = 0, e.expires
	if r.Rated {
		e.share = t.share(e, now)
	}
	// The holder may not get this answer and spend the previous share until that
	// grant's expiry: it keeps counting until then.
	e.keep(held{prev, prevUntil}, now)
	holders := 0
	for o := range t.accounts[e.account] {
		if now.Before(o.expires) {
			holders++
		}
	}
	return Ticket{ID: e.id, Share: e.share, Holders: holders, e: e}, true
}

// Register records a holder that was refused RATE_LIMITED, with its demand: it gets no
// share now, and the others' next renewals make room for it. A holder with a grant
// keeps it (and its share); only its demand changes.
func (t *Table) Register(r Request, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.entryFor(r, now)
	if !ok {
		return
	}
	e.demand = demand(r.Demand)
	if e.id == "" {
		e.expires = now.Add(r.TTL)
	}
}

// Commit records uses granted with the ticket, debited in refill period period. It
// returns false when the grant was cancelled since Reserve: the caller must not hand it
// out (the uses stay spent).
func (t *Table) Commit(tk Ticket, uses, period int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := tk.e
	if e == nil || t.byID[tk.ID] != e {
		return false
	}
	if period != e.period {
		e.period, e.periodOut = period, 0
	}
	e.outstanding += uses
	e.periodOut += uses
	return true
}

// ErrTooManyUnused is returned when a holder returns more uses than its grant has
// outstanding.
var ErrTooManyUnused = errors.New("more than the grant has outstanding")

// Return takes back unused uses of grant id held by holder: it answers how many of
// them to refund (those debited in period, the current refill period), or found=false
// when no such live grant exists (released, cancelled, expired, or forgotten in a
// restart). Returning more than the grant has outstanding is an error naming how many
// it has, and changes nothing.
func (t *Table) Return(id, holder string, unused, period int64, now time.Time) (refund int64, found bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.live(id, holder, now)
	if e == nil {
		return 0, false, nil
	}
	if unused < 0 || unused > e.outstanding {
		return 0, true, fmt.Errorf("%w (%d)", ErrTooManyUnused, e.outstanding)
	}
	e.outstanding -= unused
	if period == e.period {
		refund = min(unused, e.periodOut)
		e.periodOut -= refund
	}
	return refund, true, nil
}

// Lookup returns live grant id if holder holds it.
func (t *Table) Lookup(id, holder string, now time.Time) (Grant, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.live(id, holder, now)
	if e == nil {
		return Grant{}, false
	}
	return e.grant(), true
}

// Release ends grant id on the engine's initiative (the holder may not learn of it
// before the grant's expiry): its share keeps counting until then. It reports whether
// the grant was live and held by holder.
func (t *Table) Release(id, holder string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.live(id, holder, now)
	if e != nil {
		t.end(e)
	}
	return e != nil
}

// ReleaseByHolder ends grant id at its holder's request: the holder stopped spending
// it, so its share is free at once. It reports whether the grant was live and held by
// holder.
func (t *Table) ReleaseByHolder(id, holder string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.live(id, holder, now)
	if e != nil {
		t.remove(e)
	}
	return e != nil
}

// CancelKey ends every grant and registration of keyID (its uses stay spent; its
// shares count until the grants' expiry, as the holders learn of it late) and returns
// how many grants there were.
func (t *Table) CancelKey(keyID string) int {
	if t.size.Load() == 0 {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for e := range t.byKey[keyID] {
		if e.id != "" {
			n++
		}
		t.end(e)
	}
	return n
}

// CancelAccount ends every grant and registration of account, as CancelKey, and
// returns the key_ids that had grants, sorted.
func (t *Table) CancelAccount(account string) []string {
	if t.size.Load() == 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var keys []string
	for e := range t.accounts[account] {
		if e.id != "" && !slices.Contains(keys, e.keyID) {
			keys = append(keys, e.keyID)
		}
		t.end(e)
	}
	slices.Sort(keys)
	return keys
}

// Shares returns the sum of the shares of account that holders may be using (their
// live shares, and the lingering ones of lowered, released and cancelled grants), and
// when the first of them expires (the zero Time when there are none). With no holders
// anywhere it takes no lock.
func (t *Table) Shares(account string, now time.Time) (sum float64, until time.Time) {
	if t.size.Load() == 0 {
		return 0, time.Time{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	first := func(p held) {
		if p.share > 0 && now.Before(p.until) && (until.IsZero() || p.until.Before(until)) {
			until = p.until
		}
	}
	for e := range t.accounts[account] {
		first(held{e.share, e.shareUntil})
		for _, p := range e.past {
			first(p)
		}
		sum += e.held(now)
	}
	return sum, until
}

// Grants returns the live grants of account (for tests and diagnostics).
func (t *Table) Grants(account string, now time.Time) []Grant {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Grant
	for e := range t.accounts[account] {
		if e.id != "" && now.Before(e.expires) {
			out = append(out, e.grant())
		}
	}
	slices.SortFunc(out, func(a, b Grant) int {
		if a.Holder != b.Holder {
			return cmpString(a.Holder, b.Holder)
		}
		return cmpString(a.KeyID, b.KeyID)
	})
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Len returns how many grants and registrations are held, ended ones whose shares
// still count and expired ones not yet pruned included.
func (t *Table) Len() int { return int(t.size.Load()) }

// Prune drops every entry that is expired and whose shares expired.
func (t *Table) Prune(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweep(now)
}

func (t *Table) sweep(now time.Time) {
	for _, e := range t.byHolder {
		if e.gone(now) {
			t.remove(e)
		}
	}
	t.inserts = 0
}

// entryFor returns (r.Holder, r.KeyID)'s entry, making one if needed and the bounds
// allow it. The account's gone entries are pruned first. Callers hold t.mu.
func (t *Table) entryFor(r Request, now time.Time) (*entry, bool) {
	for e := range t.accounts[r.Account] {
		if e.gone(now) {
			t.remove(e)
		}
	}
	hk := holderKey{r.Holder, r.KeyID}
	if e, ok := t.byHolder[hk]; ok {
		if e.account == r.Account {
			if !now.Before(e.expires) {
				t.end(e) // its shares may still count: a new grant starts afresh
			}
			if t.byHolder[hk] == e {
				return e, true
			}
		} else {
			// The key's account changed: its grant was for the old one, whose share
			// the holder may still be spending. The entry holds it until then, and
			// the holder gets nothing on the new account meanwhile (one entry per
			// holder and key keeps the bookkeeping simple; it asks verify instead).
			t.end(e)
			if e.gone(now) {
				t.remove(e)
			}
			if t.byHolder[hk] == e {
				return nil, false
			}
		}
	}
	if t.inserts >= len(t.byHolder) || len(t.byHolder) >= t.cfg.MaxEntries {
		t.sweep(now)
	}
	if len(t.byHolder) >= t.cfg.MaxEntries || len(t.accounts[r.Account]) >= t.cfg.MaxPerAccount {
		return nil, false
	}
	e := &entry{holderKey: hk, account: r.Account, expires: now.Add(r.TTL)}
	t.byHolder[hk] = e
	add(t.byKey, r.KeyID, e)
	add(t.accounts, r.Account, e)
	t.inserts++
	t.size.Add(1)
	return e, true
}

func add(m map[string]map[*entry]struct{}, name string, e *entry) {
	set := m[name]
	if set == nil {
		set = make(map[*entry]struct{})
		m[name] = set
	}
	set[e] = struct{}{}
}

func del(m map[string]map[*entry]struct{}, name string, e *entry) {
	if set := m[name]; set != nil {
		delete(set, e)
		if len(set) == 0 {
			delete(m, name)
		}
	}
}

func (t *Table) remove(e *entry) {
	if t.byHolder[e.holderKey] != e {
		return
	}
	delete(t.byHolder, e.holderKey)
	if e.id != "" {
		delete(t.byID, e.id)
	}
	del(t.byKey, e.keyID, e)
	del(t.accounts, e.account, e)
	t.size.Add(-1)
}

// live returns grant id if it is live and held by holder. Callers hold t.mu.
func (t *Table) live(id, holder string, now time.Time) *entry {
	e := t.byID[id]
	if e == nil || e.holder != holder {
		return nil
	}
	if !now.Before(e.expires) {
		if e.gone(now) {
			t.remove(e)
		} else {
			t.end(e)
		}
		return nil
	}
	return e
}

// end ends e's grant or registration: its id no longer answers and its demand no
// longer counts, but its shares do until they expire (the holder may learn of the end
// late, or never, and spend them until their grants' expiry). An entry without any
// share goes at once. Callers hold t.mu.
func (t *Table) end(e *entry) {
	if e.share <= 0 && len(e.past) == 0 {
		t.remove(e)
		return
	}
	if e.id != "" {
		delete(t.byID, e.id)
		e.id = ""
	}
	e.expires = time.Time{}
	e.outstanding, e.periodOut = 0, 0
}

// keep remembers p, a share e's holder was given earlier, unless it expired or the
// current share or another earlier one outdoes it. Expired and outdone ones go.
func (e *entry) keep(p held, now time.Time) {
	cur := held{e.share, e.shareUntil}
	live := e.past[:0]
	for _, q := range e.past {
		if now.Before(q.until) && !q.outdoneBy(p) && !q.outdoneBy(cur) {
			live = append(live, q)
		}
	}
	e.past = live
	if p.share <= 0 || !now.Before(p.until) || p.outdoneBy(cur) || slices.ContainsFunc(e.past, p.outdoneBy) {
		return
	}
	e.past = append(e.past, p)
	slices.SortFunc(e.past, func(a, b held) int { return a.until.Compare(b.until) })
	if len(e.past) > maxPast {
		e.past[1] = held{max(e.past[0].share, e.past[1].share), e.past[1].until}
		e.past = slices.Delete(e.past, 0, 1)
	}
	if len(e.past) == 0 {
		e.past = nil
	}
}

// outdoneBy says whether q counts no more than o: no larger, for no longer.
func (q held) outdoneBy(o held) bool {
	return q.share <= o.share && !q.until.After(o.until)
}

// held is the share of the account that e's holder may be using at now.
func (e *entry) held(now time.Time) float64 {
	h := 0.0
	if now.Before(e.shareUntil) {
		h = e.share
	}
	for _, p := range e.past {
		if now.Before(p.until) {
			h = max(h, p.share)
		}
	}
	return h
}

// gone says whether e can be forgotten: its grant or registration ended and its
// shares expired.
func (e *entry) gone(now time.Time) bool {
	if now.Before(e.expires) || now.Before(e.shareUntil) {
		return false
	}
	for _, p := range e.past {
		if now.Before(p.until) {
			return false
		}
	}
	return true
}

// share is e's share now: its water-filling share of the account's live demands, plus
// an equal part of what the demands leave unclaimed, but no more than the others leave
// free (counting every share they may still be using, lingering ones included). The unclaimed rate is split n+1 ways among n holders: a share of exactly the
// demand a holder saw at its last renewal would refuse a burst locally although nobody
// else wants the rate, and giving away all of it would leave a newcomer (another
// process) nothing until the others renew. The part kept back also serves verify's
// own answers. Callers hold t.mu; e is live.
func (t *Table) share(e *entry, now time.Time) float64 {
	set := t.accounts[e.account]
	demands := make([]float64, 0, len(set))
	self, others := -1, 0.0
	for o := range set {
		if o == e {
			self = len(demands)
		} else {
			others += o.held(now)
			if !now.Before(o.expires) {
				continue // an ended grant's demand counts no more
			}
		}
		demands = append(demands, o.demand)
	}
	fills := Waterfill(demands, 1)
	claimed := 0.0
	for _, f := range fills {
		claimed += f
	}
	fair := fills[self] + max(0, 1-claimed)/float64(len(fills)+1)
	free := 1 - others - shareSlack
	return max(0, min(fair, free))
}

func (e *entry) grant() Grant {
	return Grant{ID: e.id, Holder: e.holder, KeyID: e.keyID, Account: e.account, Share: e.share, Outstanding: e.outstanding, Expires: e.expires}
}

func demand(d float64) float64 {
	if !(d > 0) || d > 1 { // NaN too
		return 1
	}
	return d
}

// newID returns a random 128-bit id in hex. crypto/rand.Read never fails (it crashes
// the program instead, Go 1.24 and later).
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ValidID reports whether id has the form of a grant id.
func ValidID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// Waterfill divides capacity among demands max-min fairly: each gets its demand or
// an equal share of what those with more demand leave, whichever is less. The result
// sums to at most capacity (to rounding), and to capacity when the demands do.
// Negative demands count as 0.
func Waterfill(demands []float64, capacity float64) []float64 {
	out := make([]float64, len(demands))
	order := make([]int, len(demands))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		switch {
		case demands[a] < demands[b]:
			return -1
		case demands[a] > demands[b]:
			return 1
		}
		return 0
	})
	left := capacity
	for n, i := range order {
		level := left / float64(len(order)-n)
		out[i] = max(0, min(demands[i], level))
		left -= out[i]
	}
	return out
}

// Uses sizes a top-up: what the holder wants (DefaultWant when want <= 0), but no more
// than its part of half of what remains (remaining / (2 × holders), rounded up), nor
// than limit; at least 1 while anything remains, and never more than remains.
func Uses(want, remaining int64, holders int, limit int64) int64 {
	if remaining <= 0 {
		return 0
	}
	if want <= 0 {
		want = DefaultWant
	}
	h := int64(max(holders, 1))
	part := remaining / (2 * h)
	if remaining%(2*h) != 0 {
		part++
	}
	return max(1, min(want, part, limit, remaining))
}

// Scale returns rate and burst times share, the burst at least 1 so that a bucket of
// it can ever admit a request.
func Scale(rate, burst, share float64) (float64, float64) {
	return rate * share, math.Max(1, burst*share)
}
