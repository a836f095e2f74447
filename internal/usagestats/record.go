package usagestats

import (
	"slices"
	"time"
)

// Bucket is the outcomes counted in one hour or day.
type Bucket struct {
	Start  int64 // Unix seconds of the bucket's start (UTC-aligned)
	Counts Counts
}

// Record is the usage of one key, one role or the mount: what the plugin stores, and
// also the in-memory delta the Recorder hands out. Buckets are sparse and ascending.
type Record struct {
	// LastUsed is the last verification's time in Unix seconds; 0 if never.
	LastUsed int64
	// Total is every verification counted, over the record's whole life.
	Total Counts
	Hours []Bucket
	Days  []Bucket
	// Tags are counted per day (keys and roles only).
	Tags []TagDay
	// Networks are most recently seen first after Merge (keys only).
	Networks []Network
}

// IsZero reports whether r counts nothing.
func (r *Record) IsZero() bool {
	return r.Total.IsZero() && len(r.Hours) == 0 && len(r.Days) == 0 && len(r.Tags) == 0 && len(r.Networks) == 0
}

// Clone returns a deep copy of r.
func (r *Record) Clone() Record {
	c := *r
	c.Hours = slices.Clone(r.Hours)
	c.Days = slices.Clone(r.Days)
	c.Networks = slices.Clone(r.Networks)
	c.Tags = slices.Clone(r.Tags)
	for i := range c.Tags {
		c.Tags[i].Tags = slices.Clone(c.Tags[i].Tags)
	}
	return c
}

// bucket returns the bucket starting at start in s (ascending), inserting it if missing;
// nil if it is older than floor. Appending a new latest bucket drops those before floor.
func bucket(s *[]Bucket, start, floor int64) *Bucket {
	b := *s
	if n := len(b); n > 0 && b[n-1].Start == start {
		return &b[n-1]
	}
	if start < floor {
		return nil
	}
	i := len(b)
	for i > 0 && b[i-1].Start >= start {
		if b[i-1].Start == start {
			return &b[i-1]
		}
		i--
	}
	if i == len(b) {
		// A new latest bucket: drop expired ones first, reusing the array.
		drop := 0
		for drop < len(b) && b[drop].Start < floor {
			drop++
		}
		if drop > 0 {
			n := copy(b, b[drop:])
			clear(b[n:])
			b = b[:n]
		}
		b = append(b, Bucket{Start: start})
		*s = b
		return &b[len(b)-1]
	}
	b = append(b, Bucket{})
	copy(b[i+1:], b[i:])
	b[i] = Bucket{Start: start}
	*s = b
	return &b[i]
}

// count adds n verifications with code index code at now (Unix seconds). Retention
// is measured from the latest verification, so a late one older than it counts only in
// Total.
func (r *Record) count(code int, n uint64, now int64, cfg *Config) {
	r.Total[code] += n
	r.LastUsed = max(r.LastUsed, now)
	// The common case, the latest hour and day again, needs no floor computed.
	if last := len(r.Hours); last > 0 && r.Hours[last-1].Start <= now && now-r.Hours[last-1].Start < 3600 {
		r.Hours[last-1].Counts[code] += n
	} else if b := bucket(&r.Hours, floor(now, 3600), cfg.hourFloor(r.LastUsed)); b != nil {
		b.Counts[code] += n
	}
	if last := len(r.Days); last > 0 && r.Days[last-1].Start <= now && now-r.Days[last-1].Start < 86400 {
		r.Days[last-1].Counts[code] += n
	} else if b := bucket(&r.Days, floor(now, 86400), cfg.dayFloor(r.LastUsed)); b != nil {
		b.Counts[code] += n
	}
}

// countTags adds n verifications with code index code under each tag at now; count
// has run first.
func (r *Record) countTags(tags []Tag, code int, n uint64, now int64, cfg *Config) {
	start := floor(now, 86400)
	f := cfg.dayFloor(r.LastUsed)
	if start < f {
		return
	}
	d := tagDay(&r.Tags, start)
	var c Counts
	c[code] = n
	for _, t := range tags {
		d.add(t, &c, cfg)
	}
	// A new day may leave expired days at the front.
	if r.Tags[0].Start < f {
		r.Tags = deleteZero(r.Tags, func(d *TagDay) bool { return d.Start < f })
	}
}

// Merge adds src into dst (a stored record and a delta, or two deltas) and drops what is
// older than cfg's retention at now. Tags beyond cfg's bounds fold into "other" as they
// do when counted.
func Merge(dst, src *Record, cfg Config, now time.Time) {
	cfg = cfg.WithDefaults()
	dst.LastUsed = max(dst.LastUsed, src.LastUsed)
	dst.Total.Add(&src.Total)
	dst.Hours = mergeBuckets(dst.Hours, src.Hours)
	dst.Days = mergeBuckets(dst.Days, src.Days)
	for i := range src.Tags {
		d := tagDay(&dst.Tags, src.Tags[i].Start)
		for j := range src.Tags[i].Tags {
			d.add(src.Tags[i].Tags[j].Tag, &src.Tags[i].Tags[j].Counts, &cfg)
		}
	}
	mergeNetworks(&dst.Networks, src.Networks, cfg.dayFloor(now.Unix()), cfg.MaxNetworks)
	dst.Prune(cfg, now)
}

// Prune drops the buckets, tag days and networks older than cfg's retention at now.
func (r *Record) Prune(cfg Config, now time.Time) {
	cfg = cfg.WithDefaults()
	h, d := cfg.hourFloor(now.Unix()), cfg.dayFloor(now.Unix())
	r.Hours = deleteZero(r.Hours, func(b *Bucket) bool { return b.Start < h })
	r.Days = deleteZero(r.Days, func(b *Bucket) bool { return b.Start < d })
	r.Tags = deleteZero(r.Tags, func(t *TagDay) bool { return t.Start < d })
	r.Networks = deleteZero(r.Networks, func(n *Network) bool { return n.LastSeen < d })
}

func mergeBuckets(dst, src []Bucket) []Bucket {
	if len(src) == 0 {
		return dst
	}
	out := make([]Bucket, 0, len(dst)+len(src))
	i, j := 0, 0
	for i < len(dst) || j < len(src) {
		switch {
		case j == len(src) || i < len(dst) && dst[i].Start < src[j].Start:
			out = append(out, dst[i])
			i++
		case i == len(dst) || src[j].Start < dst[i].Start:
			out = append(out, src[j])
			j++
		default:
			b := dst[i]
			b.Counts.Add(&src[j].Counts)
			out = append(out, b)
			i++
			j++
		}
	}
	return out
}

// sub subtracts o (a delta handed out earlier) from r, dropping what reaches zero.
func (r *Record) sub(o *Record) {
	r.Total.sub(&o.Total)
	r.Hours = subBuckets(r.Hours, o.Hours)
	r.Days = subBuckets(r.Days, o.Days)
	for i := range o.Tags {
		for j := range r.Tags {
			if r.Tags[j].Start == o.Tags[i].Start {
				r.Tags[j].sub(&o.Tags[i])
				break
			}
		}
	}
	r.Tags = deleteZero(r.Tags, func(d *TagDay) bool { return len(d.Tags) == 0 })
	subNetworks(&r.Networks, o.Networks)
}

func subBuckets(dst, src []Bucket) []Bucket {
	for _, b := range src {
		for i := range dst {
			if dst[i].Start == b.Start {
				dst[i].Counts.sub(&b.Counts)
				break
			}
		}
	}
	return deleteZero(dst, func(b *Bucket) bool { return b.Counts.IsZero() })
}
