// Package lru is a bounded, concurrency-safe least-recently-used cache that can be kept
// exact against a backing store.
//
// A reader that misses, loads from the store and then inserts can race with a writer that
// changes the store and removes the entry: the reader would put back the old value after
// the removal. Readers therefore take a Generation before loading and insert with
// AddIfUnchanged, which refuses the value if any Remove or Purge happened since.
package lru

import (
	"container/list"
	"sync"
)

// Cache maps keys to values, evicting the least recently used entry beyond its capacity.
type Cache[K comparable, V any] struct {
	mu         sync.Mutex
	capacity   int
	order      *list.List // front = most recently used
	items      map[K]*list.Element
	generation uint64
}

type entry[K comparable, V any] struct {
	key   K
	value V
}

// New returns a cache holding at most capacity entries (at least 1).
func New[K comparable, V any](capacity int) *Cache[K, V] {
	if capacity < 1 {
		capacity = 1
	}
	return &Cache[K, V]{capacity: capacity, order: list.New(), items: make(map[K]*list.Element)}
}

// Get returns the value for key and marks it recently used.
func (c *Cache[K, V]) Get(key K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.order.MoveToFront(el)
		return el.Value.(*entry[K, V]).value, true
	}
	var zero V
	return zero, false
}

// Peek returns the value for key without making it more recently used.
func (c *Cache[K, V]) Peek(key K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		return el.Value.(*entry[K, V]).value, true
	}
	var zero V
	return zero, false
}

// Generation returns a token to pass to AddIfUnchanged after loading from the store.
func (c *Cache[K, V]) Generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.generation
}

// Add inserts or replaces key. Use it for values written by the caller itself.
func (c *Cache[K, V]) Add(key K, value V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.add(key, value)
}

// AddIfUnchanged inserts key only if nothing was removed since generation was taken, so
// a value loaded before a concurrent removal is never resurrected. It reports whether the
// value was stored.
func (c *Cache[K, V]) AddIfUnchanged(key K, value V, generation uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.generation != generation {
		return false
	}
	c.add(key, value)
	return true
}

func (c *Cache[K, V]) add(key K, value V) {
	if el, ok := c.items[key]; ok {
		el.Value.(*entry[K, V]).value = value
		c.order.MoveToFront(el)
		return
	}
	c.items[key] = c.order.PushFront(&entry[K, V]{key: key, value: value})
	for c.order.Len() > c.capacity {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*entry[K, V]).key)
	}
}

// Remove drops key and invalidates loads in flight.
func (c *Cache[K, V]) Remove(key K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.generation++
	if el, ok := c.items[key]; ok {
		c.order.Remove(el)
		delete(c.items, key)
	}
}

// Purge drops everything and invalidates loads in flight.
func (c *Cache[K, V]) Purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.generation++
	c.order.Init()
	clear(c.items)
}

// Resize changes the capacity, evicting the least recently used entries if needed.
func (c *Cache[K, V]) Resize(capacity int) {
	if capacity < 1 {
		capacity = 1
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.capacity = capacity
	for c.order.Len() > c.capacity {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*entry[K, V]).key)
	}
}

// Len returns the number of entries.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
