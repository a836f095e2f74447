package usagestats

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// The stored form of a Record is a compact binary, not JSON: a week of hourly traffic is
// 55 buckets of nine counts per key, and 100k keys of it is what Vault's storage (and
// its Raft snapshots) would carry. In JSON a bucket is about 40 bytes; here it is a
// start delta and a bitmask of the non-zero codes followed by those counts, all
// varints: 3 to 6 bytes for a typical bucket. The format is versioned by its first byte.
//
//	version  byte (1)
//	lastUsed varint (Unix seconds)
//	total    counts
//	hours    uvarint n, then n × (uvarint start delta in hours, counts); the first
//	         delta is from hour 0 as a varint, later ones strictly positive uvarints
//	days     the same in days
//	tags     uvarint n, then n × (day delta as above, uvarint m, m × (name, value, counts))
//	         where name and value are uvarint length and bytes
//	networks uvarint n, then n × (byte 4 or 6, the 3 or 6 prefix bytes, uvarint count,
//	         uvarint refused, varint firstSeen, uvarint lastSeen-firstSeen)
//	counts   uvarint bitmask of non-zero codes (bit i for Counts[i]), then one uvarint
//	         per set bit
const codecVersion = 1

// MarshalBinary encodes r.
func (r *Record) MarshalBinary() ([]byte, error) {
	return r.AppendBinary(make([]byte, 0, 64+len(r.Hours)*6+len(r.Days)*6+len(r.Networks)*16))
}

// AppendBinary appends r's encoding to b.
func (r *Record) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, codecVersion)
	b = binary.AppendVarint(b, r.LastUsed)
	b = appendCounts(b, &r.Total)
	var err error
	if b, err = appendBuckets(b, r.Hours, 3600); err != nil {
		return nil, err
	}
	if b, err = appendBuckets(b, r.Days, 86400); err != nil {
		return nil, err
	}
	b = binary.AppendUvarint(b, uint64(len(r.Tags)))
	prev := int64(0)
	for i, d := range r.Tags {
		if b, err = appendStart(b, i, d.Start, prev, 86400); err != nil {
			return nil, err
		}
		prev = d.Start
		b = binary.AppendUvarint(b, uint64(len(d.Tags)))
		for _, t := range d.Tags {
			b = appendString(b, t.Name)
			b = appendString(b, t.Value)
			b = appendCounts(b, &t.Counts)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(r.Networks)))
	for _, n := range r.Networks {
		a := n.Prefix.Addr()
		switch {
		case a.Is4() && n.Prefix.Bits() == 24:
			v := a.As4()
			b = append(b, 4)
			b = append(b, v[:3]...)
		case a.Is6() && n.Prefix.Bits() == 48:
			v := a.As16()
			b = append(b, 6)
			b = append(b, v[:6]...)
		default:
			return nil, fmt.Errorf("network %s is not an IPv4 /24 or IPv6 /48", n.Prefix)
		}
		if n.LastSeen < n.FirstSeen {
			return nil, fmt.Errorf("network %s was last seen before it was first seen", n.Prefix)
		}
		b = binary.AppendUvarint(b, n.Count)
		b = binary.AppendUvarint(b, n.Refused)
		b = binary.AppendVarint(b, n.FirstSeen)
		b = binary.AppendUvarint(b, uint64(n.LastSeen-n.FirstSeen))
	}
	return b, nil
}

func appendCounts(b []byte, c *Counts) []byte {
	var mask uint64
	for i, v := range c {
		if v != 0 {
			mask |= 1 << i
		}
	}
	b = binary.AppendUvarint(b, mask)
	for _, v := range c {
		if v != 0 {
			b = binary.AppendUvarint(b, v)
		}
	}
	return b
}

func appendStart(b []byte, i int, start, prev, width int64) ([]byte, error) {
	if start%width != 0 {
		return nil, fmt.Errorf("bucket start %d is not aligned on %d seconds", start, width)
	}
	if i == 0 {
		return binary.AppendVarint(b, start/width), nil
	}
	if start <= prev {
		return nil, fmt.Errorf("bucket start %d is not after %d", start, prev)
	}
	return binary.AppendUvarint(b, uint64((start-prev)/width)), nil
}

func appendBuckets(b []byte, s []Bucket, width int64) ([]byte, error) {
	b = binary.AppendUvarint(b, uint64(len(s)))
	prev := int64(0)
	var err error
	for i, k := range s {
		if b, err = appendStart(b, i, k.Start, prev, width); err != nil {
			return nil, err
		}
		prev = k.Start
		b = appendCounts(b, &k.Counts)
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errShort = errors.New("usage record is truncated or corrupt")

// decoder reads the encoding; its first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errShort
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// length reads a count of items each at least min bytes long, refusing one the rest of
// the input cannot hold (so a corrupt length never allocates much).
func (d *decoder) length(minSize int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/minSize) {
		d.err = errShort
		return 0
	}
	return int(n)
}

func (d *decoder) counts(c *Counts) {
	mask := d.uvarint()
	if d.err == nil && mask >= 1<<NumCodes {
		d.err = errShort
		return
	}
	for i := range c {
		if mask&(1<<i) != 0 {
			c[i] = d.uvarint()
		}
	}
}

// start reads a bucket start written by appendStart.
func (d *decoder) start(i int, prev, width int64) int64 {
	if i == 0 {
		v := d.varint()
		if v > 1<<40 || v < -(1<<40) {
			d.err = errShort
		}
		return v * width
	}
	delta := d.uvarint()
	if d.err == nil && (delta == 0 || delta > 1<<40) {
		d.err = errShort
	}
	return prev + int64(delta)*width
}

func (d *decoder) buckets(width int64) []Bucket {
	n := d.length(2)
	if n == 0 {
		return nil
	}
	s := make([]Bucket, n)
	for i := range s {
		prev := int64(0)
		if i > 0 {
			prev = s[i-1].Start
		}
		s[i].Start = d.start(i, prev, width)
		d.counts(&s[i].Counts)
	}
	return s
}

// UnmarshalBinary decodes what MarshalBinary encoded, replacing r.
func (r *Record) UnmarshalBinary(b []byte) error {
	if len(b) == 0 || b[0] != codecVersion {
		return fmt.Errorf("usage record has an unknown format")
	}
	d := &decoder{b: b[1:]}
	var out Record
	out.LastUsed = d.varint()
	d.counts(&out.Total)
	out.Hours = d.buckets(3600)
	out.Days = d.buckets(86400)
	if n := d.length(3); n > 0 {
		out.Tags = make([]TagDay, n)
		for i := range out.Tags {
			prev := int64(0)
			if i > 0 {
				prev = out.Tags[i-1].Start
			}
			out.Tags[i].Start = d.start(i, prev, 86400)
			if m := d.length(5); m > 0 {
				out.Tags[i].Tags = make([]TagCount, m)
				for j := range out.Tags[i].Tags {
					t := &out.Tags[i].Tags[j]
					t.Name = string(d.bytes(d.uvarint()))
					t.Value = string(d.bytes(d.uvarint()))
					d.counts(&t.Counts)
				}
			}
		}
	}
	if n := d.length(8); n > 0 {
		out.Networks = make([]Network, n)
		for i := range out.Networks {
			nw := &out.Networks[i]
			var a netip.Addr
			var bits int
			switch fam := d.bytes(1); {
			case fam == nil:
			case fam[0] == 4:
				var v [4]byte
				copy(v[:], d.bytes(3))
				a, bits = netip.AddrFrom4(v), 24
			case fam[0] == 6:
				var v [16]byte
				copy(v[:], d.bytes(6))
				a, bits = netip.AddrFrom16(v), 48
			default:
				d.err = errShort
			}
			if d.err == nil {
				nw.Prefix = netip.PrefixFrom(a, bits)
			}
			nw.Count = d.uvarint()
			nw.Refused = d.uvarint()
			nw.FirstSeen = d.varint()
			span := d.uvarint()
			if d.err == nil && span > 1<<40 {
				d.err = errShort
			}
			nw.LastSeen = nw.FirstSeen + int64(span)
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = errors.New("usage record has trailing bytes")
	}
	if d.err != nil {
		return d.err
	}
	*r = out
	return nil
}
