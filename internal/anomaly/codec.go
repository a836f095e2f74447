package anomaly

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// The stored form of a key's state is a compact binary in the style of usagestats'
// records: varints, zero counters left out behind bitmasks, floats as 4 little-endian
// bytes. A quiet key encodes to a few hundred bytes, a busy one to about 1.1 KB
// (BenchmarkSnapshot reports it), any key to at most about 2.3 KB (TestStateBounded).
// The format is versioned by its first byte; a state that does not decode (another
// version, truncated, hostile) is an error, and the key starts over.
//
//	version   byte (1)
//	flags     byte (started, used, roaming decided, roaming)
//	first     varint (Unix minutes), then lastUse, min, hour and win (in minutes),
//	          lastNovelWide as varint deltas from first, maxGap uvarint
//	ring      uvarint bitmask of the non-zero counters (bit 6·minute+counter), then one
//	          uvarint per set bit
//	hourMax   the same over the counters; then hourSum the same way
//	slots     uvarint bitmask of the learned slots, then per set bit: byte samples,
//	          float32 baseline
//	rho       float32, uvarint samples
//	peaks     byte bitmask of the non-zero peaks, then float32 each; then 3 × float32
//	          refusal shares
//	nets      uvarint n ≤ 24, n × (uvarint id, varint last-first, uvarint
//	          hours<<1|suspect, float32 gap); wide the same with n ≤ 16
//	novel24   uvarint, then novelWide and activeHours uvarints
//	distinct  byte bitmask of the non-empty /24 sub-windows, then 16 bytes each; the
//	          same for the wider ones; then float32s hourNets (2), netPeak (2)
//	pending   byte 0, or 1 then uvarint id, varint t0-first, uvarint last-t0, varint
//	          knownLast-t0, uvarint hours, byte flags, uvarints mask, active, seen,
//	          float32s expected, seenMass
//	fired     byte bitmask of the kinds that fired, then varint minute-first each
const stateVersion = 1

// AppendBinary appends the state's encoding to b.
func (s *state) AppendBinary(b []byte) []byte {
	b = append(b, stateVersion, s.flags)
	b = binary.AppendVarint(b, s.first)
	for _, v := range []int64{s.lastUse, s.min, s.hour * 60, s.win * subWindowMinutes, s.lastNovelWide} {
		b = binary.AppendVarint(b, v-s.first)
	}
	b = binary.AppendUvarint(b, uint64(s.maxGap))

	var mask uint64
	for i := range s.ring {
		for c := range s.ring[i] {
			if s.ring[i][c] != 0 {
				mask |= 1 << (i*numCounters + c)
			}
		}
	}
	b = binary.AppendUvarint(b, mask)
	for i := range s.ring {
		for c := range s.ring[i] {
			if s.ring[i][c] != 0 {
				b = binary.AppendUvarint(b, uint64(s.ring[i][c]))
			}
		}
	}
	mask = 0
	for c, v := range s.hourMax {
		if v != 0 {
			mask |= 1 << c
		}
	}
	b = binary.AppendUvarint(b, mask)
	for _, v := range s.hourMax {
		if v != 0 {
			b = binary.AppendUvarint(b, uint64(v))
		}
	}

	mask = 0
	for c, v := range s.hourSum {
		if v != 0 {
			mask |= 1 << c
		}
	}
	b = binary.AppendUvarint(b, mask)
	for _, v := range s.hourSum {
		if v != 0 {
			b = binary.AppendUvarint(b, uint64(v))
		}
	}

	mask = 0
	for i, n := range s.slotN {
		if n != 0 {
			mask |= 1 << i
		}
	}
	b = binary.AppendUvarint(b, mask)
	for i, n := range s.slotN {
		if n != 0 {
			b = append(b, n)
			b = appendFloat(b, s.slot[i])
		}
	}
	b = appendFloat(b, s.rho)
	b = binary.AppendUvarint(b, uint64(s.rhoN))
	var pm byte
	for c, v := range s.peak {
		if v != 0 {
			pm |= 1 << c
		}
	}
	b = append(b, pm)
	for _, v := range s.peak {
		if v != 0 {
			b = appendFloat(b, v)
		}
	}
	for c := cScope; c <= cLimited; c++ {
		b = appendFloat(b, s.share[c])
	}

	b = s.appendNets(b, s.nets[:])
	b = s.appendNets(b, s.wide[:])
	b = binary.AppendUvarint(b, uint64(s.novel24))
	b = binary.AppendUvarint(b, uint64(s.novelWide))
	b = binary.AppendUvarint(b, uint64(s.activeHours))
	for _, set := range [2]*[subWindows]bitmap{&s.d24, &s.dWide} {
		var bm byte
		for i, w := range set {
			if w != (bitmap{}) {
				bm |= 1 << i
			}
		}
		b = append(b, bm)
		for _, w := range set {
			if w != (bitmap{}) {
				b = binary.LittleEndian.AppendUint64(b, w[0])
				b = binary.LittleEndian.AppendUint64(b, w[1])
			}
		}
	}
	for _, v := range [4]float32{s.hourNets[0], s.hourNets[1], s.netPeak[0], s.netPeak[1]} {
		b = appendFloat(b, v)
	}

	if p := &s.pend; p.id == 0 {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = binary.AppendUvarint(b, p.id)
		b = binary.AppendVarint(b, p.t0-s.first)
		b = binary.AppendUvarint(b, uint64(p.last-p.t0))
		b = binary.AppendVarint(b, p.knownLast-p.t0)
		b = binary.AppendUvarint(b, uint64(p.hours))
		b = append(b, p.flags)
		b = binary.AppendUvarint(b, uint64(p.mask))
		b = binary.AppendUvarint(b, uint64(p.active))
		b = binary.AppendUvarint(b, uint64(p.seen))
		b = appendFloat(b, p.expected)
		b = appendFloat(b, p.seenMass)
	}
	var fm byte
	for k, f := range s.fired {
		if f != 0 {
			fm |= 1 << k
		}
	}
	b = append(b, fm)
	for _, f := range s.fired {
		if f != 0 {
			b = binary.AppendVarint(b, f-1-s.first)
		}
	}
	return b
}

func (s *state) appendNets(b []byte, list []netEntry) []byte {
	n := 0
	for i := range list {
		if list[i].id != 0 {
			n++
		}
	}
	b = binary.AppendUvarint(b, uint64(n))
	for i := range list {
		if e := &list[i]; e.id != 0 {
			b = binary.AppendUvarint(b, e.id)
			b = binary.AppendVarint(b, e.last-s.first)
			h := uint64(e.hours) << 1
			if e.suspect {
				h |= 1
			}
			b = binary.AppendUvarint(b, h)
			b = appendFloat(b, e.gap)
		}
	}
	return b
}

func appendFloat(b []byte, f float32) []byte {
	return binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
}

// decoder reads the encoding; its first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() { d.err = errCorrupt }

func (d *decoder) uvarint(limit uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > limit {
		d.fail()
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
	if n <= 0 || v > 2*timeLimit || v < -2*timeLimit {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uint64() uint64 {
	if d.err != nil || len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

// float reads a float32 that must be finite and in [0, limit].
func (d *decoder) float(limit float32) float32 {
	if d.err != nil || len(d.b) < 4 {
		d.fail()
		return 0
	}
	v := math.Float32frombits(binary.LittleEndian.Uint32(d.b))
	d.b = d.b[4:]
	if !(v >= 0 && v <= limit) { // also refuses NaN
		d.fail()
		return 0
	}
	return v
}

// minute reads a varint delta from base that must give a time within timeLimit.
func (d *decoder) minute(base int64) int64 {
	v := base + d.varint()
	if v > timeLimit || v < -timeLimit {
		d.fail()
		return 0
	}
	return v
}

const (
	maxFloat = 1e12
	maxU32   = math.MaxUint32
)

// UnmarshalBinary decodes what AppendBinary encoded, replacing s; hostile bytes give an
// error, never a panic or a state that could make one.
func (s *state) UnmarshalBinary(b []byte) error {
	if len(b) == 0 || b[0] != stateVersion {
		return fmt.Errorf("anomaly state has an unknown format")
	}
	d := &decoder{b: b[1:]}
	var o state
	o.flags = d.byte()
	if o.flags&^stMask != 0 {
		d.fail()
	}
	o.first = d.minute(0)
	o.lastUse = d.minute(o.first)
	o.min = d.minute(o.first)
	hour := d.minute(o.first)
	win := d.minute(o.first)
	o.lastNovelWide = d.minute(o.first)
	o.maxGap = int64(d.uvarint(2 * timeLimit))
	if hour%60 != 0 || win%subWindowMinutes != 0 {
		d.fail()
	}
	o.hour, o.win = hour/60, win/subWindowMinutes

	mask := d.uvarint(1<<(ringMinutes*numCounters) - 1)
	for i := range o.ring {
		for c := range o.ring[i] {
			if mask&(1<<(i*numCounters+c)) != 0 {
				o.ring[i][c] = uint32(d.uvarint(maxU32 / ringMinutes))
			}
		}
	}
	mask = d.uvarint(1<<numCounters - 1)
	for c := range o.hourMax {
		if mask&(1<<c) != 0 {
			o.hourMax[c] = uint32(d.uvarint(maxU32))
		}
	}
	mask = d.uvarint(1<<numCounters - 1)
	for c := range o.hourSum {
		if mask&(1<<c) != 0 {
			o.hourSum[c] = uint32(d.uvarint(maxU32 - 1))
		}
	}
	mask = d.uvarint(1<<numSlots - 1)
	for i := range o.slotN {
		if mask&(1<<i) != 0 {
			if o.slotN[i] = d.byte(); o.slotN[i] == 0 {
				d.fail()
			}
			o.slot[i] = d.float(1e6)
		}
	}
	o.rho = d.float(1e3)
	o.rhoN = uint16(d.uvarint(math.MaxUint16))
	pm := d.byte()
	if pm&^(1<<numCounters-1) != 0 {
		d.fail()
	}
	for c := range o.peak {
		if pm&(1<<c) != 0 {
			o.peak[c] = d.float(maxFloat)
		}
	}
	for c := cScope; c <= cLimited; c++ {
		o.share[c] = d.float(1)
	}
	d.nets(&o, o.nets[:])
	d.nets(&o, o.wide[:])
	o.novel24 = uint16(d.uvarint(math.MaxUint16))
	o.novelWide = uint16(d.uvarint(math.MaxUint16))
	o.activeHours = uint16(d.uvarint(math.MaxUint16))
	for _, set := range [2]*[subWindows]bitmap{&o.d24, &o.dWide} {
		bm := d.byte()
		if bm&^(1<<subWindows-1) != 0 {
			d.fail()
		}
		for i := range set {
			if bm&(1<<i) != 0 {
				set[i] = bitmap{d.uint64(), d.uint64()}
				if set[i] == (bitmap{}) {
					d.fail()
				}
			}
		}
	}
	o.hourNets[0], o.hourNets[1] = d.float(1e4), d.float(1e4)
	o.netPeak[0], o.netPeak[1] = d.float(1e4), d.float(1e4)

	switch d.byte() {
	case 0:
	case 1:
		p := &o.pend
		p.id = d.uvarint(math.MaxUint64)
		if !validNetID(p.id) {
			d.fail()
		}
		p.t0 = d.minute(o.first)
		p.last = p.t0 + int64(d.uvarint(timeLimit))
		p.knownLast = d.minute(p.t0)
		p.hours = uint16(d.uvarint(math.MaxUint16))
		p.flags = d.byte()
		size := uint64(1)<<len(o.nets) - 1
		if o.flags&stRoaming != 0 {
			size = 1<<len(o.wide) - 1
		}
		p.mask = uint32(d.uvarint(size))
		p.active = uint32(d.uvarint(size))
		p.seen = uint32(d.uvarint(size))
		p.expected = d.float(1e5)
		p.seenMass = d.float(1e5)
		if p.flags&^pMask != 0 || p.last > timeLimit || p.knownLast > timeLimit {
			d.fail()
		}
	default:
		d.fail()
	}
	fm := d.byte()
	if fm&^(1<<numKinds-1) != 0 {
		d.fail()
	}
	for k := range o.fired {
		if fm&(1<<k) != 0 {
			o.fired[k] = d.minute(o.first) + 1
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = errors.New("anomaly state has trailing bytes")
	}
	if d.err != nil {
		return d.err
	}
	*s = o
	return nil
}

func (d *decoder) nets(o *state, list []netEntry) {
	n := d.uvarint(uint64(len(list)))
	for i := range n {
		e := &list[i]
		e.id = d.uvarint(math.MaxUint64)
		if d.err == nil && (!validNetID(e.id) || find(list[:i], e.id) >= 0) {
			d.fail()
		}
		e.last = d.minute(o.first)
		h := d.uvarint(1<<17 - 1)
		e.hours, e.suspect = uint16(h>>1), h&1 != 0
		e.gap = d.float(100)
	}
}
