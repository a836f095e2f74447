package lru

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEvictsLeastRecentlyUsed(t *testing.T) {
	c := New[string, int](2)
	c.Add("a", 1)
	c.Add("b", 2)
	_, ok := c.Get("a") // a is now more recent than b
	require.True(t, ok)
	c.Add("c", 3)

	_, ok = c.Get("b")
	require.False(t, ok, "b should have been evicted")
	v, ok := c.Get("a")
	require.True(t, ok)
	require.Equal(t, 1, v)
	require.Equal(t, 2, c.Len())
}

func TestAddReplaces(t *testing.T) {
	c := New[string, int](2)
	c.Add("a", 1)
	c.Add("a", 2)
	v, ok := c.Get("a")
	require.True(t, ok)
	require.Equal(t, 2, v)
	require.Equal(t, 1, c.Len())
}

func TestAddIfUnchangedRefusesAfterRemove(t *testing.T) {
	cases := []struct {
		name       string
		between    func(c *Cache[string, int])
		wantStored bool
	}{
		{"nothing happened", func(*Cache[string, int]) {}, true},
		{"remove of the same key", func(c *Cache[string, int]) { c.Remove("a") }, false},
		{"remove of another key", func(c *Cache[string, int]) { c.Remove("b") }, false},
		{"purge", func(c *Cache[string, int]) { c.Purge() }, false},
		{"plain add", func(c *Cache[string, int]) { c.Add("b", 9) }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := New[string, int](4)
			gen := c.Generation()
			tc.between(c)
			require.Equal(t, tc.wantStored, c.AddIfUnchanged("a", 1, gen))
			_, ok := c.Get("a")
			require.Equal(t, tc.wantStored, ok)
		})
	}
}

func TestResizeAndPurge(t *testing.T) {
	c := New[int, int](10)
	for i := 0; i < 10; i++ {
		c.Add(i, i)
	}
	c.Resize(3)
	require.Equal(t, 3, c.Len())
	_, ok := c.Get(9)
	require.True(t, ok, "most recent entries survive a shrink")
	c.Purge()
	require.Equal(t, 0, c.Len())
	require.Equal(t, 1, New[int, int](0).capacity)
}

func TestConcurrentUse(t *testing.T) {
	c := New[string, int](64)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				k := fmt.Sprint(i % 100)
				gen := c.Generation()
				c.AddIfUnchanged(k, i, gen)
				c.Get(k)
				if i%10 == g {
					c.Remove(k)
				}
			}
		}(g)
	}
	wg.Wait()
	require.LessOrEqual(t, c.Len(), 64)
}

func benchmarkGet(b *testing.B, size int) {
	c := New[string, int](size)
	keys := make([]string, size)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%016d", i)
		c.Add(keys[i], i)
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, ok := c.Get(keys[i%size]); !ok {
			b.Fatal("miss")
		}
		i++
	}
}

func BenchmarkGet1k(b *testing.B) { benchmarkGet(b, 1_000) }
func BenchmarkGet1M(b *testing.B) { benchmarkGet(b, 1_000_000) }
