package main

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/anomaly"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// Profiles: who uses a key from where.
type profile int

const (
	profOffice  profile = iota // one office (one /24, or two in the same /16)
	profOffices                // two to four offices in different /16s
	profServer                 // cloud egress: one to three /24s in one /16, around the clock
	profMobile                 // mobile app: clients all over one to three carriers' ranges
	profMixed                  // an office and the homes of the people who work from there
)

var profileName = [...]string{"office", "offices", "server", "mobile", "mixed"}

// Daily shapes (local time).
type shape int

const (
	shapeBusiness shape = iota
	shapeAlways
	shapeEvening
)

// network is a /24 (IPv4, b[0:3]) or a /48 (IPv6, b[0:6]).
type network struct {
	v6 bool
	b  [6]byte
}

func (n network) addr(r *rand.Rand) netip.Addr {
	if !n.v6 {
		return netip.AddrFrom4([4]byte{n.b[0], n.b[1], n.b[2], byte(1 + r.IntN(254))})
	}
	var a [16]byte
	copy(a[:6], n.b[:])
	a[7] = byte(r.IntN(256))
	a[15] = byte(1 + r.IntN(255))
	return netip.AddrFrom16(a)
}

// block is a carrier's wider range: a /16 (IPv4) or a /32 (IPv6).
type block struct {
	v6 bool
	b  [4]byte
}

func (k block) random(r *rand.Rand) network {
	n := network{v6: k.v6}
	copy(n.b[:], k.b[:])
	if k.v6 {
		n.b[4], n.b[5] = byte(r.IntN(256)), byte(r.IntN(256))
	} else {
		n.b[2] = byte(r.IntN(256))
	}
	return n
}

// randomNetwork returns a network anywhere (a thief's, a hotel's, a new office's).
func randomNetwork(r *rand.Rand, v6 bool) network {
	n := network{v6: v6}
	if v6 {
		n.b = [6]byte{0x20, byte(1 + r.IntN(14)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))}
		return n
	}
	first := 11 + r.IntN(212)
	if first == 127 {
		first = 128
	}
	n.b = [6]byte{byte(first), byte(r.IntN(256)), byte(r.IntN(256))}
	return n
}

// sameWider returns a network in n's /16 (or /32).
func sameWider(r *rand.Rand, n network) network {
	m := n
	if n.v6 {
		m.b[4], m.b[5] = byte(r.IntN(256)), byte(r.IntN(256))
	} else {
		m.b[2] = byte(r.IntN(256))
	}
	return m
}

// interval is a span of simulated minutes [from, to).
type interval struct{ from, to int64 }

func (iv interval) has(t int64) bool { return t >= iv.from && t < iv.to }

// Legitimate episodes (never labelled).
type surge struct {
	interval
	mult float64
}

type move struct {
	at, overlap int64 // the switch starts at at and is complete overlap minutes later
	idx         int   // the network that moves
	to          network
	gradual     bool
}

type trip struct {
	interval
	idx   int // the home network replaced
	hotel network
}

type stale struct {
	interval
	share float64 // of the key's calls that carry the rotated secret
}

type devBurst struct {
	at    int64
	count int
	net   network // the developer's machine
}

// Injected anomaly kinds (the generator's names).
type injection int

const (
	injNone injection = iota
	injStolen
	injLeak
	injSpike
	injProbe
	injGuess
	injWake
)

var injectionName = [...]string{"", "stolen key (concurrent use from a new network)", "leak to many networks",
	"rate spike", "probe (refusal burst)", "secret guessing", "dormant key woken"}

// incident is an injected anomaly: the label the detector never sees.
type incident struct {
	key    int
	inj    injection
	kind   anomaly.Kind
	accept []anomaly.Kind
	interval
	note string

	first    int64   // simulated second of its first event (0: none yet)
	rate     float64 // calls per minute (stolen, probe, guess, wake) or extra floor (spike)
	mult     float64 // spike multiplier
	net      network // source network (stolen, probe, guess, wake from a new network)
	fromOwn  bool    // probe/guess/wake from the key's own networks
	code     string
	leakNets []network
	leakJoin []int64
	leakRate []float64
}

type key struct {
	idx     int
	id      string
	role    string
	prof    profile
	shape   shape
	tz      int64 // minutes
	daily   float64
	weekend float64
	trend   float64 // log growth over the run
	batch   int     // bursts per hour; 0: Poisson
	batchAt [4]int64
	refuse  float64 // background refusal probability per call
	limit   float64 // rate limit per minute; 0: none
	v6      bool

	nets    []network // fixed networks (office, offices, server, mixed: office first)
	weights []float64 // cumulative
	blocks  []block   // mobile: carriers' wider ranges
	bw      []float64 // cumulative

	active  []interval // when the owner uses it
	surges  []surge
	moves   []move
	trips   []trip
	stales  []stale
	bursts  []devBurst
	inc     *incident
	cohort  string // "dormant", "periodic", "gap" or ""
	envFrom int64  // first minute with any traffic
	envTo   int64
}

// noise returns a deterministic standard normal for (seed, a, b).
func noise(seed uint64, a, b int64) float64 {
	h := splitmix(seed ^ splitmix(uint64(a)*0x9e3779b97f4a7c15^splitmix(uint64(b))))
	u1 := (float64(h>>11) + 0.5) / (1 << 53)
	u2 := float64(splitmix(h)>>11) / (1 << 53)
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// shapeAt returns the daily shape at local minute-of-day m; shapes average 1.
var shapeTable [3][1440]float64

func init() {
	for s := range shapeTable {
		sum := 0.0
		for m := range 1440 {
			h := float64(m) / 60
			var v float64
			switch shape(s) {
			case shapeBusiness:
				switch {
				case h < 6.5 || h >= 21:
					v = 0.04
				case h < 9:
					v = 0.04 + (h-6.5)/2.5
				case h < 17:
					v = 1.04 - 0.15*math.Exp(-(h-12.5)*(h-12.5)) // lunch dip
				default:
					v = 1.04 - (h-17)/4
				}
			case shapeAlways:
				v = 1 + 0.35*math.Sin(2*math.Pi*(h-9)/24)
			case shapeEvening:
				v = 0.25 + 2*math.Exp(-(h-20.5)*(h-20.5)/6) + 0.5*math.Exp(-(h-12.5)*(h-12.5)/4)
			}
			shapeTable[s][m] = v
			sum += v
		}
		for m := range shapeTable[s] {
			shapeTable[s][m] *= 1440 / sum
		}
	}
}

// lambda is the owner's expected calls in minute t (simulated minutes from the start).
func (g *gen) lambda(k *key, t int64) float64 {
	local := t + k.tz
	day := floorDiv(local, 1440)
	wd := mod(day+g.startWeekday, 7)
	v := k.daily / 1440 * shapeTable[k.shape][mod(local, 1440)]
	if wd == 0 || wd == 6 {
		v *= k.weekend
	}
	v *= math.Exp(0.15*noise(g.seed, int64(k.idx), day) + 0.1*noise(g.seed+1, int64(k.idx), floorDiv(t, 60)))
	v *= math.Exp(k.trend * float64(min(max(t, 0), g.days*1440)) / float64(g.days*1440))
	for _, s := range k.surges {
		if s.has(t) {
			v *= s.mult
		}
	}
	return v
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func mod(a, b int64) int64 { return a - floorDiv(a, b)*b }

func (k *key) activeAt(t int64) bool {
	for _, iv := range k.active {
		if iv.has(t) {
			return true
		}
	}
	return false
}

// pick returns the network one of the owner's calls at t comes from.
func (k *key) pick(r *rand.Rand, t int64) network {
	if k.prof == profMobile {
		i, _ := slices.BinarySearch(k.bw, r.Float64()*k.bw[len(k.bw)-1])
		return k.blocks[min(i, len(k.blocks)-1)].random(r)
	}
	i, _ := slices.BinarySearch(k.weights, r.Float64()*k.weights[len(k.weights)-1])
	i = min(i, len(k.nets)-1)
	n := k.nets[i]
	for _, mv := range k.moves {
		if mv.idx == i && t >= mv.at {
			if t >= mv.at+mv.overlap || r.Float64() < float64(t-mv.at)/float64(mv.overlap) {
				n = mv.to
			}
		}
	}
	for _, tr := range k.trips {
		if tr.idx == i && tr.has(t) {
			n = tr.hotel
		}
	}
	return n
}

// poisson samples a Poisson count of mean mu.
func poisson(r *rand.Rand, mu float64) int {
	switch {
	case mu <= 0:
		return 0
	case mu < 30:
		l, k, p := math.Exp(-mu), 0, 1.0
		for {
			p *= r.Float64()
			if p <= l {
				return k
			}
			k++
		}
	default:
		return max(0, int(math.Round(mu+math.Sqrt(mu)*r.NormFloat64())))
	}
}

// ev is one generated call before it becomes an anomaly.Event.
type ev struct {
	ms   int64 // milliseconds within the minute
	code string
	addr netip.Addr
}

// minute appends key k's calls in minute t to buf, in time order.
func (g *gen) minute(k *key, r *rand.Rand, t int64, buf []ev) []ev {
	buf = buf[:0]
	n := 0
	active := k.activeAt(t)
	if active {
		lam := g.lambda(k, t)
		if k.batch > 0 {
			n = 0
			mh := mod(t, 60)
			for _, at := range k.batchAt[:k.batch] {
				if mh == at {
					n += poisson(r, lam*60/float64(k.batch))
				}
			}
		} else {
			n = poisson(r, lam)
		}
	}
	for _, b := range k.bursts {
		if active && t >= b.at && t < b.at+3 {
			for range b.count / 3 {
				buf = append(buf, ev{ms: r.Int64N(60000), code: verifyapi.CodeValid, addr: b.net.addr(r)})
			}
		}
	}
	inc := k.inc
	if inc != nil && inc.inj == injSpike && inc.has(t) {
		extra := poisson(r, max((inc.mult-1)*g.lambda(k, t), inc.rate))
		n += extra
		if extra > 0 && inc.first == 0 {
			inc.first = t*60 + 1 // within the minute
		}
	}
	staleShare := 0.0
	for _, s := range k.stales {
		if s.has(t) {
			staleShare = s.share
		}
	}
	valid := 0
	for range n {
		e := ev{ms: r.Int64N(60000), code: verifyapi.CodeValid, addr: k.pick(r, t).addr(r)}
		switch x := r.Float64(); {
		case x < staleShare:
			e.code = verifyapi.CodeNotFound
		case x < staleShare+k.refuse:
			e.code = verifyapi.CodeInsufficientScope
			if r.IntN(7) == 0 {
				e.code = verifyapi.CodeForbiddenIP
			}
		case x < staleShare+k.refuse+2e-4:
			e.code = verifyapi.CodeNotFound // a typo
		default:
			valid++
			if k.limit > 0 && float64(valid) > k.limit {
				e.code = verifyapi.CodeRateLimited
			}
		}
		buf = append(buf, e)
	}
	if inc != nil && inc.has(t) {
		before := len(buf)
		buf = g.injected(k, inc, r, t, buf, &valid)
		if inc.first == 0 && (len(buf) > before || inc.inj == injWake && inc.rate == 0 && len(buf) > 0) {
			first := int64(60000)
			for _, e := range buf[before:] {
				first = min(first, e.ms)
			}
			if inc.rate == 0 { // a periodic key's day: its first call
				for _, e := range buf {
					first = min(first, e.ms)
				}
			}
			inc.first = t*60 + first/1000
		}
	}
	slices.SortFunc(buf, func(a, b ev) int { return int(a.ms - b.ms) })
	return buf
}

// injected appends the anomaly's own calls.
func (g *gen) injected(k *key, inc *incident, r *rand.Rand, t int64, buf []ev, valid *int) []ev {
	emit := func(count int, code string, src func() network) {
		for range count {
			c := code
			if c == verifyapi.CodeValid {
				*valid++
				if k.limit > 0 && float64(*valid) > k.limit {
					c = verifyapi.CodeRateLimited
				}
			}
			buf = append(buf, ev{ms: r.Int64N(60000), code: c, addr: src().addr(r)})
		}
	}
	own := func() network { return k.pick(r, t) }
	fixed := func() network { return inc.net }
	switch inc.inj {
	case injStolen:
		emit(poisson(r, inc.rate), verifyapi.CodeValid, fixed)
	case injLeak:
		for j, n := range inc.leakNets {
			if t >= inc.leakJoin[j] {
				emit(poisson(r, inc.leakRate[j]), verifyapi.CodeValid, func() network { return n })
			}
		}
	case injProbe, injGuess, injWake:
		src := fixed
		if inc.fromOwn {
			src = own
		}
		emit(poisson(r, inc.rate), inc.code, src)
	}
	return buf
}
