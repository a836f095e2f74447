package usagestats

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

func newRecorder(t testing.TB, cfg Config) *Recorder {
	r, err := NewRecorder(cfg)
	require.NoError(t, err)
	return r
}

func TestRecordScopes(t *testing.T) {
	r := newRecorder(t, Config{})
	ip := netip.MustParseAddr("192.0.2.1")
	tags := []Tag{{"route", "/orders"}}
	require.NoError(t, r.Record("k1", "web", verifyapi.CodeValid, tags, ip, at(1, 0)))
	require.NoError(t, r.Record("k2", "web", verifyapi.CodeRateLimited, nil, netip.Addr{}, at(1, 5)))
	require.NoError(t, r.Record("", "", verifyapi.CodeNotFound, nil, ip, at(1, 6)))

	mount, ok := r.Peek(ScopeMount, "")
	require.True(t, ok)
	require.Equal(t, Counts{0, 1, 0, 0, 0, 0, 1, 0, 1}, mount.Total)
	require.Empty(t, mount.Tags, "the mount keeps no tags")
	require.Empty(t, mount.Networks, "the mount keeps no networks")

	role, ok := r.Peek(ScopeRole, "web")
	require.True(t, ok)
	require.Equal(t, Counts{0, 0, 0, 0, 0, 0, 1, 0, 1}, role.Total)
	require.Equal(t, []TagDay{{Start: t0.Unix(), Tags: []TagCount{{tags[0], valid(1)}}}}, role.Tags)
	require.Empty(t, role.Networks)

	k1, ok := r.Peek(ScopeKey, "k1")
	require.True(t, ok)
	require.Equal(t, valid(1), k1.Total)
	require.Equal(t, at(1, 0).Unix(), k1.LastUsed)
	require.Len(t, k1.Networks, 1)

	k2, _ := r.Peek(ScopeKey, "k2")
	require.Empty(t, k2.Networks, "no client address, no network")
	_, ok = r.Peek(ScopeKey, "nope")
	require.False(t, ok)
	keys, roles := r.Len()
	require.Equal(t, [2]int{2, 1}, [2]int{keys, roles})
}

func TestRecordRefusesBadInput(t *testing.T) {
	cases := []struct {
		name    string
		code    string
		tags    []Tag
		wantErr string
	}{
		{"unknown code", "OK", nil, `unknown verify code "OK"`},
		{"bad tag", verifyapi.CodeValid, []Tag{{"Route", "/a"}}, `invalid tag "Route=/a"`},
		{"too many tags", verifyapi.CodeValid, make([]Tag, 9), "at most 8 tags are allowed, not 9"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecorder(t, Config{})
			require.ErrorContains(t, r.Record("k", "role", tc.code, tc.tags, netip.Addr{}, at(0, 0)), tc.wantErr)
			require.Empty(t, r.Dirty(), "nothing is counted")
		})
	}
}

func TestDirtyFlushed(t *testing.T) {
	r := newRecorder(t, Config{})
	require.NoError(t, r.Record("k", "role", verifyapi.CodeValid, []Tag{{"a", "1"}}, netip.MustParseAddr("2001:db8::1"), at(1, 0)))
	require.NoError(t, r.Record("k", "role", verifyapi.CodeExpired, nil, netip.Addr{}, at(1, 1)))

	deltas := r.Dirty()
	require.Len(t, deltas, 3)
	require.Equal(t, ScopeMount, deltas[0].Scope)
	byScope := map[Scope]Delta{}
	for _, d := range deltas {
		byScope[d.Scope] = d
	}
	require.Equal(t, "k", byScope[ScopeKey].Name)
	require.Equal(t, uint64(2), byScope[ScopeKey].Record.Total.Total())

	// Counted while the flush is under way: stays for the next flush.
	require.NoError(t, r.Record("k", "role", verifyapi.CodeValid, []Tag{{"a", "1"}}, netip.MustParseAddr("2001:db8::2"), at(1, 2)))
	for _, d := range deltas {
		r.Flushed(d)
	}
	left, ok := r.Peek(ScopeKey, "k")
	require.True(t, ok)
	require.Equal(t, valid(1), left.Total)
	require.Equal(t, []Bucket{{Start: at(1, 0).Unix(), Counts: valid(1)}}, left.Hours)
	require.Equal(t, []TagCount{{Tag{"a", "1"}, valid(1)}}, left.Tags[0].Tags)
	require.Equal(t, uint64(1), left.Networks[0].Count)

	// A delta not flushed (storage failed) comes back whole with the next Dirty.
	deltas = r.Dirty()
	require.Len(t, deltas, 3)
	deltas = r.Dirty()
	require.Len(t, deltas, 3)
	for _, d := range deltas {
		r.Flushed(d)
	}
	_, ok = r.Peek(ScopeKey, "k")
	require.False(t, ok, "fully flushed")
	require.Empty(t, r.Dirty(), "nothing left to flush")
	keys, roles := r.Len()
	require.Equal(t, 0, keys+roles, "idle entries are dropped")

	// The key comes back when used again, and Forget drops it.
	require.NoError(t, r.Record("k", "role", verifyapi.CodeValid, nil, netip.Addr{}, at(2, 0)))
	r.Forget("k")
	_, ok = r.Peek(ScopeKey, "k")
	require.False(t, ok)
}

// TestRestartKeepsFlushed walks the plugin's cycle: a flush merges deltas into the stored
// record (through its encoding), a restart loses only what was not flushed.
func TestRestartKeepsFlushed(t *testing.T) {
	cfg := Config{}
	stored := map[string][]byte{}
	flush := func(r *Recorder, now time.Time) {
		for _, d := range r.Dirty() {
			var rec Record
			if b, ok := stored[d.Scope.String()+"/"+d.Name]; ok {
				require.NoError(t, rec.UnmarshalBinary(b))
			}
			Merge(&rec, &d.Record, cfg, now)
			b, err := rec.MarshalBinary()
			require.NoError(t, err)
			stored[d.Scope.String()+"/"+d.Name] = b
			r.Flushed(d)
		}
	}
	r := newRecorder(t, cfg)
	for m := range 10 {
		require.NoError(t, r.Record("k", "role", verifyapi.CodeValid, nil, netip.Addr{}, at(1, m)))
	}
	flush(r, at(1, 10))
	for m := range 5 {
		require.NoError(t, r.Record("k", "role", verifyapi.CodeValid, nil, netip.Addr{}, at(1, 10+m)))
	}
	flush(r, at(1, 15))
	require.NoError(t, r.Record("k", "role", verifyapi.CodeValid, nil, netip.Addr{}, at(1, 20)))

	// A read merges storage and the unflushed delta.
	var rec Record
	require.NoError(t, rec.UnmarshalBinary(stored["key/k"]))
	delta, ok := r.Peek(ScopeKey, "k")
	require.True(t, ok)
	Merge(&rec, &delta, cfg, at(1, 20))
	require.Equal(t, valid(16), rec.Total)

	// Restart: a new recorder, the unflushed verify is lost, the flushed ones are kept.
	r = newRecorder(t, cfg)
	_, ok = r.Peek(ScopeKey, "k")
	require.False(t, ok)
	require.NoError(t, rec.UnmarshalBinary(stored["key/k"]))
	require.Equal(t, valid(15), rec.Total)
	require.Equal(t, []Bucket{{Start: at(1, 0).Unix(), Counts: valid(15)}}, rec.Hours)
	var mount Record
	require.NoError(t, mount.UnmarshalBinary(stored["mount/"]))
	require.Equal(t, valid(15), mount.Total)
}

func TestConcurrentRecord(t *testing.T) {
	r := newRecorder(t, Config{})
	const workers, each = 8, 500
	var wg sync.WaitGroup
	var flushedMu sync.Mutex
	flushed := map[string]uint64{}
	done := make(chan struct{})
	go func() { // a periodic function flushing while verifies run
		defer close(done)
		for range 20 {
			for _, d := range r.Dirty() {
				flushedMu.Lock()
				flushed[d.Scope.String()+"/"+d.Name] += d.Record.Total.Total()
				flushedMu.Unlock()
				r.Flushed(d)
			}
		}
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ip := netip.AddrFrom4([4]byte{10, 0, byte(w), 1})
			for i := range each {
				key := fmt.Sprintf("k%d", i%10)
				tags := []Tag{{"w", fmt.Sprint(w)}}
				require.NoError(t, r.Record(key, "role", verifyapi.CodeValid, tags, ip, at(0, i%120)))
			}
		}()
	}
	wg.Wait()
	<-done
	for _, d := range r.Dirty() {
		flushed[d.Scope.String()+"/"+d.Name] += d.Record.Total.Total()
		r.Flushed(d)
	}
	require.Equal(t, uint64(workers*each), flushed["mount/"])
	require.Equal(t, uint64(workers*each), flushed["role/role"])
	var keys uint64
	for i := range 10 {
		keys += flushed[fmt.Sprintf("key/k%d", i)]
	}
	require.Equal(t, uint64(workers*each), keys, "no verify lost or counted twice")
}

// TestRecordNIsNRecords: a batch of n counts exactly what n single records count.
func TestRecordNIsNRecords(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	tags := []Tag{{"route", "/orders"}}
	one, batch := newRecorder(t, Config{}), newRecorder(t, Config{})
	for _, code := range []string{verifyapi.CodeValid, verifyapi.CodeRateLimited} {
		for range 5 {
			require.NoError(t, one.Record("k", "web", code, tags, ip, at(1, 0)))
		}
		require.NoError(t, batch.RecordN("k", "web", code, tags, ip, at(1, 0), 5))
	}
	require.NoError(t, batch.RecordN("k", "web", verifyapi.CodeValid, tags, ip, at(1, 0), 0), "0 counts nothing")
	for _, s := range []struct {
		scope Scope
		name  string
	}{{ScopeMount, ""}, {ScopeRole, "web"}, {ScopeKey, "k"}} {
		a, _ := one.Peek(s.scope, s.name)
		b, _ := batch.Peek(s.scope, s.name)
		require.Equal(t, a, b, "%s", s.scope)
	}
	k, _ := batch.Peek(ScopeKey, "k")
	require.Equal(t, uint64(10), k.Networks[0].Count)
	require.Equal(t, uint64(5), k.Networks[0].Refused)
	require.Error(t, batch.RecordN("k", "web", "BOGUS", nil, ip, at(1, 0), 3))
}
