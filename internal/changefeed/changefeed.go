// Package changefeed is an in-memory, bounded, ordered log of change events that
// readers follow with a cursor and long-poll for the next one. It is the engine's
// change feed (<mount>/feed): every event that makes a cached verify answer wrong is
// appended here, and callers that cache answers read them in order.
//
// A feed has a random epoch, drawn when it is made: a cursor names the epoch and the
// sequence number of the next event to read ("<epoch>.<seq>"). A cursor of another
// epoch (the engine restarted, or another node answers), or one older than what the
// ring still holds, cannot be followed: Read answers Reset with the current cursor, and
// the reader must drop everything it learned from answers before it (its whole cache).
// So the feed never needs storage: losing it is a reset, which fails safe.
//
// Vault-free; safe for concurrent use.
package changefeed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Event is one change.
type Event struct {
	Kind  string
	KeyID string
}

// Result is one Read's answer: the events after the cursor asked with (at most max,
// in order) and the cursor to ask with next. Reset says the cursor could not be
// followed; Events is then empty and Cursor is the feed's current cursor.
type Result struct {
	Cursor string
	Reset  bool
	Events []Event
}

// Feed is a ring of the last events.
type Feed struct {
	epoch string

	mu sync.Mutex
	// ring holds the events with sequence numbers [next-len, next): the event with
	// number s is at ring[s % cap].
	ring []Event
	n    int // events held (<= len(ring))
	next uint64
	// wake is closed, and replaced, when an event is appended: readers waiting for one
	// select on it.
	wake    chan struct{}
	waiters int
}

// New returns an empty feed holding the last capacity events (at least 1), with a new
// random 64-bit epoch (crypto/rand.Read never fails: it crashes the program instead,
// Go 1.24 and later).
func New(capacity int) *Feed {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Feed{epoch: hex.EncodeToString(b[:]), ring: make([]Event, max(capacity, 1)), wake: make(chan struct{})}
}

// Epoch returns the feed's epoch.
func (f *Feed) Epoch() string { return f.epoch }

// Append adds an event and wakes the readers waiting for one.
func (f *Feed) Append(kind, keyID string) {
	f.mu.Lock()
	f.ring[f.next%uint64(len(f.ring))] = Event{Kind: kind, KeyID: keyID}
	f.next++
	f.n = min(f.n+1, len(f.ring))
	close(f.wake)
	f.wake = make(chan struct{})
	f.mu.Unlock()
}

// Cursor returns the cursor that reads the events appended from now on.
func (f *Feed) Cursor() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cursor(f.next)
}

func (f *Feed) cursor(seq uint64) string { return f.epoch + "." + strconv.FormatUint(seq, 10) }

// Waiters returns how many Reads are waiting for an event (for tests and metrics).
func (f *Feed) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.waiters
}

// parse returns the sequence number cursor names in this feed, or false when it is
// empty, malformed or of another epoch.
func (f *Feed) parse(cursor string) (uint64, bool) {
	epoch, seq, ok := strings.Cut(cursor, ".")
	if !ok || epoch != f.epoch {
		return 0, false
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// Read returns the events after cursor, at most max of them (at least 1). When there
// are none yet it waits up to wait for one, returning early (with none) when ctx is
// done. A cursor that is empty, of another epoch, older than the oldest event held or
// ahead of the newest answers Reset at once.
func (f *Feed) Read(ctx context.Context, cursor string, maxEvents int, wait time.Duration) Result {
	maxEvents = max(maxEvents, 1)
	seq, ok := f.parse(cursor)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		f.mu.Lock()
		oldest := f.next - uint64(f.n)
		if !ok || seq < oldest || seq > f.next {
			r := Result{Cursor: f.cursor(f.next), Reset: true}
			f.mu.Unlock()
			return r
		}
		if seq < f.next {
			end := min(f.next, seq+uint64(maxEvents))
			events := make([]Event, 0, end-seq)
			for s := seq; s < end; s++ {
				events = append(events, f.ring[s%uint64(len(f.ring))])
			}
			f.mu.Unlock()
			return Result{Cursor: f.cursor(end), Events: events}
		}
		if wait <= 0 {
			f.mu.Unlock()
			return Result{Cursor: f.cursor(seq)}
		}
		wake := f.wake
		f.waiters++
		f.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(wait)
		}
		done := false
		select {
		case <-wake:
		case <-timer.C:
			done = true
		case <-ctx.Done():
			done = true
		}
		f.mu.Lock()
		f.waiters--
		f.mu.Unlock()
		if done {
			// One last look: an event may have come with the deadline.
			wait = 0
		}
	}
}
