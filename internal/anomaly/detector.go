package anomaly

import (
	"sync"
	"sync/atomic"
	"time"
)

// Detector holds the learned state of at most maxKeys keys (least recently used
// evicted; an evicted key's state is reloaded through Observe's load). Safe for
// concurrent use.
//
// Locking: one mutex guards the map and the recency list, held only to find, insert or
// evict an entry; each key's state has its own mutex, held while an event is learned.
// The map lock is never taken while a key's lock is held.
//
// The flush protocol: call Dirty at the start of each flush, then Snapshot each key it
// returns and write that to storage, all before the next Dirty. A key evicted with
// changes not yet snapshotted keeps its encoding (Dirty lists it, Snapshot takes it)
// and so does a key evicted after a Snapshot of this flush (its write may not be done):
// Observe reloads from those before it calls load, so eviction loses nothing. At most
// maxKeys encodings are kept; beyond that flushed ones are dropped first, then
// changes are dropped (counted in Stats.Dropped: the key goes back to what storage
// has, as after a restart).
type Detector struct {
	mu      sync.Mutex
	maxKeys int
	keys    map[string]*entry
	lru     entry // sentinel: lru.next is the most recently used
	// evicted states: dirty ones wait for Snapshot, flushed ones for the next Dirty
	// (when their write is done).
	dirtyOut, flushedOut map[string][]byte
	epoch                uint64 // Dirty calls

	decodeErrors atomic.Uint64
	dropped      atomic.Uint64
}

type entry struct {
	key        string
	prev, next *entry // guarded by Detector.mu

	mu        sync.Mutex
	gone      bool   // evicted or forgotten: reload (guarded by mu)
	snapEpoch uint64 // 1 + the epoch of its last Snapshot (guarded by mu)
	dirty     atomic.Bool
	s         state
}

// NewDetector returns a detector that holds at most maxKeys keys in memory (at least 1):
// about 1.9 KB each, plus at most maxKeys evicted encodings (a few hundred bytes to
// 2.3 KB each) waiting for a flush.
func NewDetector(maxKeys int) *Detector {
	d := &Detector{maxKeys: max(maxKeys, 1), keys: make(map[string]*entry),
		dirtyOut: make(map[string][]byte), flushedOut: make(map[string][]byte)}
	d.lru.next, d.lru.prev = &d.lru, &d.lru
	return d
}

// Stats describes a Detector.
type Stats struct {
	// Keys is how many keys' states are held; Evicted how many evicted states wait for
	// Snapshot (or for the write of one to be done).
	Keys, Evicted int
	// DecodeErrors counts states load returned that did not decode (the key started
	// over); Dropped counts evicted changes lost because too many waited.
	DecodeErrors, Dropped uint64
}

// Stats returns the detector's counts.
func (d *Detector) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Stats{Keys: len(d.keys), Evicted: len(d.dirtyOut) + len(d.flushedOut),
		DecodeErrors: d.decodeErrors.Load(), Dropped: d.dropped.Load()}
}

// Observe learns from one event and returns the anomalies it fires (usually none). load
// returns the key's state as Snapshot last encoded it (nil when there is none) and is
// called only when the detector holds no state for the key. O(1) per call, no I/O but
// load's.
//
// Events of unknown codes (and MALFORMED, which has no key) are ignored; the zero Time
// is the current time. Each key's events should come in time order; one that is late
// by less than the 5-minute window still counts in it.
func (d *Detector) Observe(ev Event, cfg Config, load func() []byte) []Anomaly {
	cl := classify(ev.Code)
	if !cl.ok || ev.Key == "" {
		return nil
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	cfg = cfg.WithDefaults()
	off := cfg.offMask()
	for {
		e := d.get(ev.Key, load)
		e.mu.Lock()
		if e.gone {
			e.mu.Unlock()
			continue
		}
		out := e.s.observe(ev, cl, cfg, off)
		e.dirty.Store(true)
		e.mu.Unlock()
		return out
	}
}

// get returns key's entry, loading it if needed, and makes it the most recently used.
func (d *Detector) get(key string, load func() []byte) *entry {
	d.mu.Lock()
	if e, ok := d.keys[key]; ok {
		d.toFront(e)
		d.mu.Unlock()
		return e
	}
	if b, ok := d.dirtyOut[key]; ok {
		delete(d.dirtyOut, key)
		e := d.newEntry(key, b)
		e.dirty.Store(true) // its changes were never snapshotted
		d.insert(e)
		d.mu.Unlock()
		return e
	}
	if b, ok := d.flushedOut[key]; ok {
		delete(d.flushedOut, key)
		e := d.newEntry(key, b)
		e.snapEpoch = d.epoch + 1 // its write may not be done
		d.insert(e)
		d.mu.Unlock()
		return e
	}
	d.mu.Unlock()
	var b []byte
	if load != nil {
		b = load()
	}
	e := d.newEntry(key, b)
	d.mu.Lock()
	defer d.mu.Unlock()
	if other, ok := d.keys[key]; ok { // loaded meanwhile by another call
		d.toFront(other)
		return other
	}
	d.insert(e)
	return e
}

func (d *Detector) newEntry(key string, b []byte) *entry {
	e := &entry{key: key}
	if len(b) > 0 {
		if err := e.s.UnmarshalBinary(b); err != nil {
			d.decodeErrors.Add(1)
			e.s = state{}
		}
	}
	return e
}

// insert adds e as the most recently used, evicting beyond maxKeys. d.mu is held.
func (d *Detector) insert(e *entry) {
	d.keys[e.key] = e
	e.prev, e.next = &d.lru, d.lru.next
	e.next.prev, d.lru.next = e, e
	for len(d.keys) > d.maxKeys {
		d.evict(d.lru.prev)
	}
}

func (d *Detector) toFront(e *entry) {
	if d.lru.next == e {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = &d.lru, d.lru.next
	e.next.prev, d.lru.next = e, e
}

func (d *Detector) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	delete(d.keys, e.key)
}

// evict drops e, keeping its encoding if it has changes not snapshotted or was
// snapshotted in this flush. d.mu is held.
func (d *Detector) evict(e *entry) {
	d.unlink(e)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.gone = true
	dirty := e.dirty.Load()
	if !dirty && e.snapEpoch != d.epoch+1 {
		return // storage has it
	}
	for len(d.dirtyOut)+len(d.flushedOut) >= d.maxKeys {
		if !d.dropOne(d.flushedOut) {
			d.dropOne(d.dirtyOut)
			d.dropped.Add(1)
		}
	}
	if dirty {
		d.dirtyOut[e.key] = e.s.AppendBinary(nil)
	} else {
		d.flushedOut[e.key] = e.s.AppendBinary(nil)
	}
}

// dropOne deletes one entry of m (map order: arbitrary); false when m is empty.
func (d *Detector) dropOne(m map[string][]byte) bool {
	for k := range m {
		delete(m, k)
		return true
	}
	return false
}

// Dirty returns the keys whose state changed since their last Snapshot. It starts a
// flush: the Snapshots of the previous one are taken to be written.
func (d *Detector) Dirty() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.epoch++
	clear(d.flushedOut)
	var out []string
	for k, e := range d.keys {
		if e.dirty.Load() {
			out = append(out, k)
		}
	}
	for k := range d.dirtyOut {
		out = append(out, k)
	}
	return out
}

// Snapshot encodes key's state for storage and marks it clean; false when it is not held.
func (d *Detector) Snapshot(key string) ([]byte, bool) {
	for {
		d.mu.Lock()
		e, ok := d.keys[key]
		if !ok {
			b, ok := d.dirtyOut[key]
			if ok {
				delete(d.dirtyOut, key)
				d.flushedOut[key] = b // until its write is done
			} else {
				b, ok = d.flushedOut[key]
			}
			d.mu.Unlock()
			return b, ok
		}
		epoch := d.epoch
		d.mu.Unlock()
		e.mu.Lock()
		if e.gone {
			e.mu.Unlock()
			continue
		}
		b := e.s.AppendBinary(make([]byte, 0, 1536))
		e.dirty.Store(false)
		e.snapEpoch = epoch + 1
		e.mu.Unlock()
		return b, true
	}
}

// Forget drops key's state (the key is gone).
func (d *Detector) Forget(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.dirtyOut, key)
	delete(d.flushedOut, key)
	if e, ok := d.keys[key]; ok {
		d.unlink(e)
		e.mu.Lock()
		e.gone = true
		e.mu.Unlock()
	}
}
