package usagestats

import (
	"container/heap"
	"fmt"
	"iter"
	"strings"
	"time"
)

// buckets returns r's buckets of granularity g.
func (r *Record) buckets(g Granularity) []Bucket {
	if g == Hour {
		return r.Hours
	}
	return r.Days
}

// overlaps reports whether the bucket starting at start, width seconds wide, overlaps
// [from, to).
func overlaps(start, width int64, from, to time.Time) bool {
	return start+width > from.Unix() && start < to.Unix()
}

// CheckRange refuses an empty or inverted range, naming the fields as the API does.
func CheckRange(from, to time.Time) error {
	if !from.Before(to) {
		return fmt.Errorf("start must be before end (%s, %s)", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	}
	return nil
}

// Series returns r's non-empty buckets of granularity g that overlap [from, to),
// ascending; hours and days without traffic are left out.
func (r *Record) Series(g Granularity, from, to time.Time) []Bucket {
	var out []Bucket
	for _, b := range r.buckets(g) {
		if overlaps(b.Start, g.Seconds(), from, to) {
			out = append(out, b)
		}
	}
	return out
}

// Sum returns the counts of r's buckets of granularity g that overlap [from, to).
func (r *Record) Sum(g Granularity, from, to time.Time) Counts {
	var c Counts
	bs := r.buckets(g)
	for i := range bs {
		b := &bs[i]
		if overlaps(b.Start, g.Seconds(), from, to) {
			c.Add(&b.Counts)
		}
	}
	return c
}

// TagSeries returns r's tag days overlapping [from, to), keeping only the tags named name
// when it is not empty.
func (r *Record) TagSeries(from, to time.Time, name string) []TagDay {
	var out []TagDay
	for _, d := range r.Tags {
		if !overlaps(d.Start, 86400, from, to) {
			continue
		}
		day := TagDay{Start: d.Start}
		for _, t := range d.Tags {
			if name == "" || t.Name == name {
				day.Tags = append(day.Tags, t)
			}
		}
		if len(day.Tags) > 0 {
			out = append(out, day)
		}
	}
	return out
}

// TagTotals sums r's tags over the days overlapping [from, to), keeping only the tags
// named name when it is not empty; most verifications first, then by name and value.
func (r *Record) TagTotals(from, to time.Time, name string) []TagCount {
	var out []TagCount
	for _, d := range r.TagSeries(from, to, name) {
		for _, t := range d.Tags {
			found := false
			for i := range out {
				if out[i].Tag == t.Tag {
					out[i].Counts.Add(&t.Counts)
					found = true
					break
				}
			}
			if !found {
				out = append(out, t)
			}
		}
	}
	sortTagCounts(out)
	return out
}

func sortTagCounts(s []TagCount) {
	// Insertion sort: s holds at most a day's bounded tag set per distinct tag.
	less := func(a, b *TagCount) bool {
		ta, tb := a.Counts.Total(), b.Counts.Total()
		if ta != tb {
			return ta > tb
		}
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c < 0
		}
		return a.Value < b.Value
	}
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && less(&s[j], &s[j-1]); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// Metric is what TopKeys ranks by.
type Metric int

// Metrics.
const (
	// Verifications counts every outcome.
	Verifications Metric = iota + 1
	// Refusals counts every outcome but VALID.
	Refusals
)

// ParseMetric reads "verifications" or "refusals".
func ParseMetric(s string) (Metric, error) {
	switch s {
	case "verifications":
		return Verifications, nil
	case "refusals":
		return Refusals, nil
	}
	return 0, fmt.Errorf("top must be verifications or refusals, not %.20q", s)
}

func (m Metric) of(c *Counts) uint64 {
	if m == Refusals {
		return c.Refusals()
	}
	return c.Total()
}

// KeyCount is one key's counts over a range.
type KeyCount struct {
	Key    string
	Counts Counts
	// Value is what the key was ranked by.
	Value uint64
}

// TopKeys returns the n keys with the most verifications (or refusals) in the buckets
// of granularity g that overlap [from, to), highest first, ties by key; keys with none
// are left out. records yields key IDs and their records one at a time (maps.All of a
// map, or a storage walk), and TopKeys holds only n of them: O(k log n) for k keys.
func TopKeys(records iter.Seq2[string, *Record], g Granularity, from, to time.Time, by Metric, n int) []KeyCount {
	if n <= 0 {
		return nil
	}
	h := &keyHeap{}
	for key, r := range records {
		c := r.Sum(g, from, to)
		v := by.of(&c)
		if v == 0 {
			continue
		}
		kc := KeyCount{Key: key, Counts: c, Value: v}
		switch {
		case h.Len() < n:
			heap.Push(h, kc)
		case h.less(&(*h)[0], &kc):
			(*h)[0] = kc
			heap.Fix(h, 0)
		}
	}
	out := make([]KeyCount, h.Len())
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = heap.Pop(h).(KeyCount)
	}
	return out
}

// keyHeap is a min-heap: its root is the weakest of the top keys held.
type keyHeap []KeyCount

// less reports whether a ranks below b: a smaller value, or on a tie a greater key.
func (h keyHeap) less(a, b *KeyCount) bool {
	if a.Value != b.Value {
		return a.Value < b.Value
	}
	return a.Key > b.Key
}

func (h keyHeap) Len() int           { return len(h) }
func (h keyHeap) Less(i, j int) bool { return h.less(&h[i], &h[j]) }
func (h keyHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *keyHeap) Push(x any)        { *h = append(*h, x.(KeyCount)) }
func (h *keyHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
