package anomaly

import (
	"math"
	"math/bits"
	"net/netip"
)

// A network id packs a client network into a uint64: the family (4 or 6) in the top
// byte, the level in the next (0 for the network usagestats counts, a /24 or /48; 1 for
// the wider network a roaming key is judged by, a /16 or /32) and the prefix's bits at
// the bottom. The zero id is no network.
const (
	level24   = 0
	levelWide = 1
)

// netIDs returns the ids of a's network (/24 or /48) and wider network (/16 or /32);
// zeros for the zero Addr. An IPv4-mapped IPv6 address counts as IPv4, as in
// usagestats.NetworkOf.
func netIDs(a netip.Addr) (n, wide uint64) {
	if !a.IsValid() {
		return 0, 0
	}
	a = a.Unmap()
	if a.Is4() {
		v := a.As4()
		n = 4<<56 | uint64(v[0])<<16 | uint64(v[1])<<8 | uint64(v[2])
		wide = 4<<56 | levelWide<<48 | uint64(v[0])<<8 | uint64(v[1])
		return n, wide
	}
	v := a.As16()
	n = 6<<56 | uint64(v[0])<<40 | uint64(v[1])<<32 | uint64(v[2])<<24 | uint64(v[3])<<16 |
		uint64(v[4])<<8 | uint64(v[5])
	wide = 6<<56 | levelWide<<48 | uint64(v[0])<<24 | uint64(v[1])<<16 | uint64(v[2])<<8 | uint64(v[3])
	return n, wide
}

// validNetID reports whether id is one netIDs can return.
func validNetID(id uint64) bool {
	fam, lvl, rest := id>>56, (id>>48)&0xff, id&(1<<48-1)
	switch {
	case fam == 4 && lvl == level24:
		return rest < 1<<24
	case fam == 4 && lvl == levelWide:
		return rest < 1<<16
	case fam == 6 && lvl == level24:
		return true
	case fam == 6 && lvl == levelWide:
		return rest < 1<<32
	}
	return false
}

// netPrefix returns the prefix an id stands for.
func netPrefix(id uint64) netip.Prefix {
	fam, lvl, rest := id>>56, (id>>48)&0xff, id&(1<<48-1)
	if fam == 4 {
		v := [4]byte{}
		bitsLen := 24
		if lvl == levelWide {
			v[0], v[1] = byte(rest>>8), byte(rest)
			bitsLen = 16
		} else {
			v[0], v[1], v[2] = byte(rest>>16), byte(rest>>8), byte(rest)
		}
		return netip.PrefixFrom(netip.AddrFrom4(v), bitsLen)
	}
	v := [16]byte{}
	bitsLen := 48
	if lvl == levelWide {
		v[0], v[1], v[2], v[3] = byte(rest>>24), byte(rest>>16), byte(rest>>8), byte(rest)
		bitsLen = 32
	} else {
		for i := range 6 {
			v[i] = byte(rest >> (40 - 8*i))
		}
	}
	return netip.PrefixFrom(netip.AddrFrom16(v), bitsLen)
}

// netEntry is a network a key is known to use.
type netEntry struct {
	id uint64
	// last is the minute it was last used (Unix minutes), hours how many distinct
	// hours it was used in (saturating).
	last  int64
	hours uint16
	// suspect marks a network adopted when it fired new_network: known (it does not
	// fire again) but not one of the key's usual networks, and evicted first.
	suspect bool
	// gap is a recent geometric mean of the minutes between its uses (an EWMA of
	// ln(1+gap)), which tells when a network that stopped is overdue.
	gap float32
}

// typicalGap returns the minutes between the network's uses that the EWMA says are
// usual.
func (e *netEntry) typicalGap() float64 { return math.Expm1(float64(e.gap)) }

// find returns the index of id in list, -1 when absent.
func find(list []netEntry, id uint64) int {
	for i := range list {
		if list[i].id == id {
			return i
		}
	}
	return -1
}

// touch records a use of list[i] at minute m.
func touch(e *netEntry, m int64) {
	if m <= e.last {
		return
	}
	gap := float32(math.Log1p(float64(m - e.last)))
	if e.hours < 2 {
		e.gap = gap
	} else {
		e.gap += 0.3 * (gap - e.gap)
	}
	if m/60 != e.last/60 && e.hours < math.MaxUint16 {
		e.hours++
	}
	e.last = m
}

// insert adds id to list and returns its index. When the list is full it evicts the
// least recently used entry, where each hour a network was used in keeps it an hour
// longer (up to a week): a network used every day outlives a burst of one-off networks
// (a leak, a trip) even if it was last used before them.
func insert(list []netEntry, id uint64, m int64) int {
	slot := 0
	for i := range list {
		if list[i].id == 0 {
			slot = i
			break
		}
		if retention(&list[i]) < retention(&list[slot]) {
			slot = i
		}
	}
	list[slot] = netEntry{id: id, last: m, hours: 1}
	return slot
}

func retention(e *netEntry) int64 {
	if e.suspect {
		return e.last - 7*24*60
	}
	return e.last + 60*int64(min(e.hours, 7*24))
}

// bitmap is a linear-counting sketch of distinct networks.
type bitmap [2]uint64

const bitmapBits = 128

// mix is the splitmix64 finalizer.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// addDistinct sets id's bit in sub-window w of set; it reports whether the bit was
// clear there, and whether it was clear in every sub-window (a network new to the
// sliding hour).
func addDistinct(set *[subWindows]bitmap, w int, id uint64) (newHere, newInHour bool) {
	h := mix(id) & (bitmapBits - 1)
	word, bit := h>>6, uint64(1)<<(h&63)
	if set[w][word]&bit != 0 {
		return false, false
	}
	newInHour = true
	for i := range set {
		if set[i][word]&bit != 0 {
			newInHour = false
		}
	}
	set[w][word] |= bit
	return true, newInHour
}

// unionOnes returns how many bits are set in the union of bs.
func unionOnes(bs []bitmap) int {
	var u bitmap
	for i := range bs {
		u[0] |= bs[i][0]
		u[1] |= bs[i][1]
	}
	return bits.OnesCount64(u[0]) + bits.OnesCount64(u[1])
}

// linearCount estimates the distinct ids that set ones bits.
func linearCount(ones int) float64 {
	ones = min(ones, bitmapBits-1)
	return -bitmapBits * math.Log(1-float64(ones)/bitmapBits)
}
