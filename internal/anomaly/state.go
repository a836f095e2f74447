package anomaly

import (
	"fmt"
	"math"
	"time"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// Cooldown is how long a kind stays quiet for a key after it fired: a storm, a leak or a
// spike that lasts gives one anomaly an hour, not one per verification.
const Cooldown = time.Hour

// Fixed parameters of the detector (not per role); each is explained where it is used.
const (
	ringMinutes      = 5  // the sliding window of rates, refusals and wrong secrets
	numSlots         = 48 // 24 hours of the day × weekday or weekend (UTC)
	maxNets          = 24 // known networks (/24, /48) per key
	maxWide          = 16 // known wider networks (/16, /32) per key
	subWindows       = 6  // the sliding hour of distinct networks, in 10-minute parts
	subWindowMinutes = 10

	cooldownMinutes = int64(Cooldown / time.Minute)
	// roamNets distinct /24s (or /48s) in the learning period, at least two in each
	// wider network on average, make a key roaming: it is then judged by the wider
	// networks it roams in (an office and the homes of its people, each in its own
	// wider network, are not roaming).
	roamNets = 8
	// gapFactor: a key wakes up when its silence is Dormancy or more and gapFactor
	// times the longest silence it had before (a quarterly job is not dormant).
	gapFactor = 2
	// A new network is used concurrently with the known ones when both are used within
	// concurrentMinutes of each other.
	concurrentMinutes = 5
	// The known networks a new one is compared with are those used in the week before
	// (in two hours or more); theft is when those carrying theftShare of that use, and
	// all those in use when it came, are used again while the new one is.
	expectedMinutes = 7 * 24 * 60
	theftShare      = 0.8
	// A known network that was in use when the new one appeared (used within
	// max(moveMinutes, 8 recent gaps) before) and has not been used for
	// max(overdueMinutes, 8 recent gaps) since has moved: the new network is adopted,
	// the old one demoted (no longer expected).
	moveMinutes    = 30
	overdueMinutes = 120
	// A pending network is decided within pendingMinutes; one used in adoptHours
	// distinct hours without theft evidence is adopted, else dropped.
	pendingMinutes = 24 * 60
	adoptHours     = 3
	// minActiveHours: a key used in fewer distinct hours has no network baseline yet,
	// however long ago it was first seen (a key used one day every two months); a
	// learning period shorter than the default's asks proportionally less (one hour
	// of use per 14 hours of learning, at least one).
	minActiveHours = 12
	// Hours without any event are learned as zero-traffic hours up to a week; a longer
	// silence keeps the baselines as they were.
	maxCatchUpHours = 7 * 24
	slotAlphaMin    = 0.2    // seasonal slot EWMA: about the last five same hours
	rhoAlphaMin     = 0.01   // pooled dispersion: about the last hundred hours
	rhoFloor        = 0.05   // least relative dispersion assumed (√ scale)
	peakDecayHour   = 0.995  // refusal peaks: half-life about six days
	shareAlpha      = 0.05   // refusal shares: about the last twenty busy hours
	netPeakDecay    = 0.9956 // distinct-network peaks: ×0.9 a day
)

// counters kept per minute in the sliding window.
const (
	cRate       = iota // VALID, RATE_LIMITED, USAGE_EXCEEDED: demand on the key
	cScope             // INSUFFICIENT_SCOPE
	cIP                // FORBIDDEN_IP
	cLimited           // RATE_LIMITED
	cGuessKnown        // NOT_FOUND from a network the key uses
	cGuessOther        // NOT_FOUND from elsewhere
	numCounters
)

var counterName = [numCounters]string{"", verifyapi.CodeInsufficientScope, verifyapi.CodeForbiddenIP,
	verifyapi.CodeRateLimited, "wrong secret", "wrong secret"}

// class is what an outcome code counts for.
type class struct {
	ok bool
	// possession: the caller presented the key's secret (every code but NOT_FOUND).
	possession bool
	rate       bool
	storm      int // counter index, 0 for none
	guess      bool
}

func classify(code string) class {
	switch code {
	case verifyapi.CodeValid, verifyapi.CodeUsageExceeded:
		return class{ok: true, possession: true, rate: true}
	case verifyapi.CodeRateLimited:
		return class{ok: true, possession: true, rate: true, storm: cLimited}
	case verifyapi.CodeInsufficientScope:
		return class{ok: true, possession: true, storm: cScope}
	case verifyapi.CodeForbiddenIP:
		return class{ok: true, possession: true, storm: cIP}
	case verifyapi.CodeDisabled, verifyapi.CodeExpired:
		return class{ok: true, possession: true}
	case verifyapi.CodeNotFound:
		return class{ok: true, guess: true}
	}
	return class{}
}

// state flags.
const (
	stStarted = 1 << iota
	stUsed
	stDecided
	stRoaming
	stMask = stStarted | stUsed | stDecided | stRoaming
)

// pending flags.
const (
	pKnownSince = 1 << iota
	pMask       = pKnownSince
)

// pending is a network first used after learning, not yet decided.
type pending struct {
	id        uint64 // 0: none
	t0, last  int64  // minutes of its first and last use
	knownLast int64  // last use of a known network since t0 (with pKnownSince)
	hours     uint16 // distinct hours it was used in
	flags     uint8
	// bits over the mode's list: expected (used in the week before), active (in use at
	// t0), seen (used since t0).
	mask, active, seen uint32
	// expected is the weight of the networks in mask, seenMass of those seen since.
	expected, seenMass float32
}

// state is what the detector learned of one key; Snapshot encodes all of it.
type state struct {
	flags   uint8
	first   int64 // minute of the first event
	lastUse int64 // minute of the last use with the secret (stUsed)
	maxGap  int64 // longest silence between uses, minutes

	min     int64 // newest minute in ring
	ring    [ringMinutes][numCounters]uint32
	hour    int64 // current hour
	hourMax [numCounters]uint32

	// rate baseline: per slot an EWMA of √(the hour's busiest 5 minutes), and the
	// key's pooled relative deviation from it.
	slot  [numSlots]float32
	slotN [numSlots]uint8
	rho   float32
	rhoN  uint16
	// decayed peaks of the busiest 5 minutes of refusals and wrong secrets per hour.
	peak [numCounters]float32
	// hourSum counts the current hour's events per counter; share is an EWMA of each
	// refusal counter's share of the rate counter over the hours.
	hourSum [numCounters]uint32
	share   [numCounters]float32

	nets          [maxNets]netEntry
	wide          [maxWide]netEntry
	novel24       uint16 // distinct /24s admitted while learning (saturating)
	novelWide     uint16 // distinct wider networks admitted while learning (saturating)
	activeHours   uint16 // distinct hours with a use (saturating)
	lastNovelWide int64  // minute a wider network was last admitted while learning

	win      int64 // current 10-minute sub-window
	d24      [subWindows]bitmap
	dWide    [subWindows]bitmap
	hourNets [2]float32 // most distinct networks (/24, wider) in a sliding hour this hour
	netPeak  [2]float32 // their decayed peak over the hours

	pend  pending
	fired [numKinds]int64 // 1 + minute a kind last fired; 0 never
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func mod(a, b int64) int64 { return a - floorDiv(a, b)*b }

const timeLimit = 1 << 40 // minutes; far beyond any real clock

func unixMinute(t time.Time) int64 {
	m := floorDiv(t.Unix(), 60)
	return min(max(m, -timeLimit), timeLimit)
}

// slotOf returns the seasonal slot of an hour (Unix hours, UTC).
func slotOf(hour int64) int {
	wd := mod(floorDiv(hour, 24)+4, 7) // 1970-01-01 was a Thursday; 0 is Sunday
	i := int(mod(hour, 24))
	if wd == 0 || wd == 6 {
		i += 24
	}
	return i
}

func (s *state) start(m int64) {
	s.flags |= stStarted
	s.first, s.min, s.hour, s.win = m, m, floorDiv(m, 60), floorDiv(m, subWindowMinutes)
}

func (s *state) roaming() bool { return s.flags&stRoaming != 0 }

// modeList is the list new networks are judged against: wider networks for a roaming
// key, networks otherwise.
func (s *state) modeList() []netEntry {
	if s.roaming() {
		return s.wide[:]
	}
	return s.nets[:]
}

// run is one Observe on a key's state.
type run struct {
	s        *state
	ev       Event
	cfg      Config
	off      uint8
	m        int64
	learnMin int64
	out      []Anomaly
}

func (s *state) observe(ev Event, cl class, cfg Config, off uint8) []Anomaly {
	w := ev.weight()
	m := unixMinute(ev.Time)
	if s.flags&stStarted == 0 {
		s.start(m)
	}
	r := run{s: s, ev: ev, cfg: cfg, off: off, m: m, learnMin: int64(cfg.Learning / time.Minute)}
	if m > s.min {
		s.advance(m, &r.cfg)
	}
	learned := m-s.first >= r.learnMin
	n24, nw := netIDs(ev.Client)

	if cl.possession {
		if s.flags&stUsed != 0 && m > s.lastUse {
			gap := m - s.lastUse
			if gap >= int64(cfg.Dormancy/time.Minute) && gap >= gapFactor*s.maxGap {
				r.dormant(gap)
			}
			s.maxGap = max(s.maxGap, gap)
		}
		if s.flags&stUsed == 0 || floorDiv(m, 60) > floorDiv(s.lastUse, 60) {
			s.activeHours = min(s.activeHours+1, math.MaxUint16)
		}
		if s.flags&stUsed == 0 || m > s.lastUse {
			s.lastUse = m
			s.flags |= stUsed
		}
		if n24 != 0 {
			r.network(n24, nw, learned)
		}
	}

	if s.min-m >= ringMinutes {
		return r.out // too late for the windows
	}
	b := &s.ring[mod(m, ringMinutes)]
	current := floorDiv(m, 60) == s.hour
	if current {
		if cl.rate {
			s.hourSum[cRate] = addSat(s.hourSum[cRate], w, math.MaxUint32-1)
		}
		if cl.storm != 0 {
			s.hourSum[cl.storm] = addSat(s.hourSum[cl.storm], w, math.MaxUint32-1)
		}
	}
	if cl.rate {
		b[cRate] = addSat(b[cRate], w, maxBucket)
		c := s.sum(cRate)
		if current {
			s.hourMax[cRate] = max(s.hourMax[cRate], c)
		}
		if learned && c >= cfg.RateFloor {
			r.rate(c)
		}
	}
	if cl.storm != 0 {
		b[cl.storm] = addSat(b[cl.storm], w, maxBucket)
		c := s.sum(cl.storm)
		if current {
			s.hourMax[cl.storm] = max(s.hourMax[cl.storm], c)
		}
		if learned {
			t := max(stormLimit(s.peak[cl.storm], &r.cfg), s.shareLimit(cl.storm))
			if cl.storm == cLimited {
				// RATE_LIMITED is the limiter at work on a client that calls too
				// fast: a storm of it also needs the rate floor's volume.
				t = max(t, cfg.RateFloor)
			}
			if c >= t {
				r.storm(cl.storm, c, t)
			}
		}
	}
	if cl.guess {
		ctr := cGuessOther
		if id := nw; n24 != 0 {
			if !s.roaming() {
				id = n24
			}
			if find(s.modeList(), id) >= 0 {
				ctr = cGuessKnown
			}
		}
		b[ctr] = addSat(b[ctr], w, maxBucket)
		c := s.sum(ctr)
		if current {
			s.hourMax[ctr] = max(s.hourMax[ctr], c)
		}
		t := stormLimit(s.peak[ctr], &r.cfg)
		if ctr == cGuessKnown {
			// A client still using a rotated secret from the key's own network sends
			// wrong secrets at most at the key's usual rate: only more than the rate
			// baseline allows is guessing.
			t = max(t, cfg.RateFloor)
			if _, lim, ok := s.rateLimit(floorDiv(m, 60), &r.cfg); ok {
				t = max(t, uint32(min(math.Ceil(lim), maxCount)))
			}
		}
		if c >= t {
			r.guess(ctr, c, t, n24)
		}
	}
	return r.out
}

// maxBucket bounds a window bucket so that the window's sum cannot overflow.
const maxBucket = (math.MaxUint32 - 1) / ringMinutes

// addSat returns a+w, at most limit.
func addSat(a, w, limit uint32) uint32 {
	if w >= limit || a >= limit-w {
		return limit
	}
	return a + w
}

// sum returns counter c over the sliding window.
func (s *state) sum(c int) uint32 {
	var n uint32
	for i := range s.ring {
		n += s.ring[i][c]
	}
	return n
}

// stormLimit is the count of refusals (or wrong secrets) in 5 minutes that is a storm:
// at least RefusalBurst, and more than twice the key's usual peak.
func stormLimit(peak float32, cfg *Config) uint32 {
	return max(cfg.RefusalBurst, uint32(min(math.Ceil(2*float64(peak)+5), maxCount)))
}

// advance moves the windows to minute m (after the newest).
func (s *state) advance(m int64, cfg *Config) {
	if h := floorDiv(m, 60); h > s.hour {
		s.closeHours(h, cfg)
	}
	if d := m - s.min; d >= ringMinutes {
		s.ring = [ringMinutes][numCounters]uint32{}
	} else {
		for i := int64(1); i <= d; i++ {
			s.ring[mod(s.min+i, ringMinutes)] = [numCounters]uint32{}
		}
	}
	s.min = m
	if w := floorDiv(m, subWindowMinutes); w > s.win {
		s.closeWindows(w)
	}
}

// closeHours learns the hour that ended and the empty hours up to h.
func (s *state) closeHours(h int64, cfg *Config) {
	s.learnNets(h-s.hour, (s.hour+1)*60-s.first >= int64(cfg.Learning/time.Minute))
	s.learnHour(s.hour, &s.hourMax, &s.hourSum, cfg)
	if missing := h - s.hour - 1; missing > 0 && missing <= maxCatchUpHours {
		var zero [numCounters]uint32
		for hh := s.hour + 1; hh < h; hh++ {
			s.learnHour(hh, &zero, nil, cfg)
		}
	}
	s.hour = h
	s.hourMax = [numCounters]uint32{}
	s.hourSum = [numCounters]uint32{}
}

// learnHour updates the baselines with an hour's busiest 5 minutes.
func (s *state) learnHour(h int64, mx, sum *[numCounters]uint32, cfg *Config) {
	i := slotOf(h)
	y := math.Sqrt(float64(mx[cRate]))
	n := s.slotN[i]
	mu := float64(s.slot[i])
	if n >= 1 && mu >= 3 {
		// The deviation is relative: a key's level varies from day to day by a share
		// of it, so one dispersion serves its busy and its quiet hours.
		r := math.Abs(y-mu) / mu
		if s.rhoN >= 24 {
			r = min(r, 4*max(float64(s.rho), rhoFloor))
		}
		a := max(1/float64(s.rhoN+1), rhoAlphaMin)
		s.rho += float32(a * (r - float64(s.rho)))
		if s.rhoN < math.MaxUint16 {
			s.rhoN++
		}
	}
	if n >= 3 {
		y = min(y, mu+3*s.sigma(mu)) // an hour far above the baseline is not learned in full
	}
	a := max(1/float64(n+1), slotAlphaMin)
	s.slot[i] += float32(a * (y - mu))
	if n < math.MaxUint8 {
		s.slotN[i]++
	}
	for c := cScope; c < numCounters; c++ {
		p := float64(s.peak[c])
		x := min(float64(mx[c]), float64(stormLimit(s.peak[c], cfg)))
		s.peak[c] = float32(max(p*peakDecayHour, x))
	}
	if sum != nil && sum[cRate] >= 20 {
		for c := cScope; c <= cLimited; c++ {
			x := min(float64(sum[c])/float64(sum[cRate]), 1)
			if float64(sum[c]) >= float64(stormLimit(s.peak[c], cfg)) {
				x = min(x, float64(s.share[c])) // a storm's hour does not teach its share
			}
			s.share[c] += float32(shareAlpha * (x - float64(s.share[c])))
		}
	}
}

// shareLimit is the refusals in the sliding window that are the key's usual share of
// its current traffic (three times it, plus five): a busy hour or a spike brings its
// share of refusals, which is not a storm.
func (s *state) shareLimit(c int) uint32 {
	return uint32(min(math.Ceil(3*float64(s.share[c])*float64(s.sum(cRate))+5), maxCount))
}

// sigma is the robust deviation of √(busiest 5 minutes) around a baseline of mu:
// counting noise (about 0.5 on the √ scale) and the key's relative dispersion.
func (s *state) sigma(mu float64) float64 {
	rel := 1.25 * max(float64(s.rho), rhoFloor) * mu
	return math.Sqrt(0.36 + rel*rel)
}

// slotValue returns slot i's baseline; while it has fewer than two samples, the
// larger of it and the same hour of the other kind of day.
func (s *state) slotValue(i int) (float64, bool) {
	if s.slotN[i] >= 2 {
		return float64(s.slot[i]), true
	}
	o := (i + 24) % numSlots
	v, ok := 0.0, false
	if s.slotN[i] >= 1 {
		v, ok = float64(s.slot[i]), true
	}
	if s.slotN[o] >= 1 {
		v, ok = max(v, float64(s.slot[o])), true
	}
	return v, ok
}

// rateLimit returns, for hour h, the usual busiest 5 minutes (the largest baseline of
// h and its neighbouring hours, so that a job that runs a little early or late is
// not a spike) and the count RateZ deviations above it.
func (s *state) rateLimit(h int64, cfg *Config) (base, limit float64, ok bool) {
	best := -1.0
	for d := int64(-1); d <= 1; d++ {
		if v, ok := s.slotValue(slotOf(h + d)); ok && v > best {
			best = v
		}
	}
	if best < 0 {
		return 0, 0, false
	}
	lim := best + cfg.RateZ*s.sigma(best)
	return best * best, lim * lim, true
}

// closeWindows moves the distinct-network windows to sub-window w.
func (s *state) closeWindows(w int64) {
	steps := w - s.win
	for _, set := range [2]*[subWindows]bitmap{&s.d24, &s.dWide} {
		for j := int64(1); j <= min(steps, subWindows); j++ {
			set[mod(s.win+j, subWindows)] = bitmap{}
		}
	}
	s.win = w
}

// learnNets learns an hour's most distinct networks; hours is how many hours passed
// (a silence of more than a day decays the peaks like one day: a key that comes back
// after weeks comes back with the peaks it had).
func (s *state) learnNets(hours int64, learned bool) {
	decay := math.Pow(netPeakDecay, float64(min(hours, 24)))
	fired := s.fired[kindIndex(ManyNetworks)]
	for i := range s.netPeak {
		x, p := float64(s.hourNets[i]), float64(s.netPeak[i])
		switch {
		case learned && fired != 0 && fired-1 >= s.hour*60:
			x = min(x, p) // an hour that fired teaches nothing
		case learned:
			x = min(x, 1.25*p+1) // a lasting rise is learned slowly
		}
		s.netPeak[i] = float32(max(p*decay, x))
	}
	s.hourNets = [2]float32{}
}

// networkLimit is the distinct networks in an hour that are many.
func (s *state) networkLimit(cfg *Config) float64 {
	p := s.netPeak[0]
	if s.roaming() {
		p = s.netPeak[1]
	}
	return max(float64(cfg.NetworkFloor), math.Ceil(2*float64(p)+2))
}

// network learns a use from network n24 (wider nw) and checks the network signals.
func (r *run) network(n24, nw uint64, learned bool) {
	s, m := r.s, r.m
	if learned && s.flags&stDecided == 0 {
		s.flags |= stDecided
		if s.novel24 >= roamNets && s.novel24 >= 2*s.novelWide {
			s.flags |= stRoaming
		}
	}
	if floorDiv(m, subWindowMinutes) == s.win {
		w := int(mod(s.win, subWindows))
		for i, set := range [2]*[subWindows]bitmap{&s.d24, &s.dWide} {
			id := n24
			if i == 1 {
				id = nw
			}
			if _, grew := addDistinct(set, w, id); !grew {
				continue // only a network new to the sliding hour adds to its count
			}
			ones := unionOnes(set[:])
			x, before := linearCount(ones), linearCount(ones-1)
			if floorDiv(m, 60) == s.hour {
				s.hourNets[i] = max(s.hourNets[i], float32(x))
			}
			if learned && s.activeHours >= r.minActive() && (i == 1) == s.roaming() {
				// It fires when the count crosses the limit, not again while the hour
				// still holds the networks that made it cross.
				if lim := s.networkLimit(&r.cfg); x >= lim && before < lim {
					r.many(x, lim, n24)
				}
			}
		}
	}
	if !learned || s.activeHours < r.minActive() ||
		s.roaming() && m-s.lastNovelWide < r.learnMin/2 && m-s.first < 2*r.learnMin {
		// Learning; until the key was used in minActiveHours hours; and a roaming
		// key learns on until a half learning period passes without a new wider
		// network, at most for a second learning period.
		s.learnNetwork(n24, nw, m)
		return
	}
	list, id := s.modeList(), n24
	if s.roaming() {
		id = nw
	}
	p := &s.pend
	if i := find(list, id); i >= 0 {
		if bit := uint32(1) << i; p.id != 0 && m >= p.t0 && p.seen&bit == 0 && p.mask&bit != 0 {
			p.seenMass += weight(&list[i], p.t0)
		}
		touch(&list[i], m)
		if p.id != 0 && m >= p.t0 {
			p.seen |= 1 << i
			p.knownLast = max(p.knownLast, m)
			p.flags |= pKnownSince
		}
	} else {
		switch {
		case p.id == 0:
			s.newPending(id, m)
		case p.id == id:
			if floorDiv(m, 60) != floorDiv(p.last, 60) && p.hours < math.MaxUint16 {
				p.hours++
			}
			p.last = max(p.last, m)
		}
	}
	if p.id != 0 {
		r.resolve()
	}
}

// minActive is the distinct hours of use a network baseline needs.
func (r *run) minActive() uint16 {
	return uint16(min(max(r.learnMin/(14*60), 1), minActiveHours))
}

func (s *state) learnNetwork(n24, nw uint64, m int64) {
	if i := find(s.nets[:], n24); i >= 0 {
		touch(&s.nets[i], m)
	} else {
		insert(s.nets[:], n24, m)
		if s.novel24 < math.MaxUint16 {
			s.novel24++
		}
	}
	if i := find(s.wide[:], nw); i >= 0 {
		touch(&s.wide[i], m)
	} else {
		insert(s.wide[:], nw, m)
		s.lastNovelWide = m
		s.novelWide = min(s.novelWide+1, math.MaxUint16)
	}
}

// activeFor is how long after its last use a known network counts as in use: eight of
// its recent gaps, at least moveMinutes.
func activeFor(e *netEntry) int64 {
	return max(moveMinutes, int64(math.Min(8*e.typicalGap(), pendingMinutes)))
}

// overdueAfter is how long after its last use a network that was in use has stopped:
// eight of its recent gaps, at least overdueMinutes (waiting costs a move nothing, and
// gives a quiet owner time to show that nothing moved).
func overdueAfter(e *netEntry) int64 {
	return max(overdueMinutes, int64(math.Min(8*e.typicalGap(), pendingMinutes)))
}

func (s *state) newPending(id uint64, m int64) {
	p := pending{id: id, t0: m, last: m, hours: 1}
	for i, e := range s.modeList() {
		if e.id == 0 {
			continue
		}
		if e.suspect {
			continue
		}
		if m-e.last <= expectedMinutes && e.hours >= 2 {
			p.mask |= 1 << i
			p.expected += weight(&e, m)
		}
		if m-e.last <= activeFor(&e) {
			p.active |= 1 << i
		}
	}
	s.pend = p
}

// weight is how much a known network is expected to be used at t0: the hours it was
// used in (up to two days' worth), halved for each 6 hours since its last use, so that
// a network an office moved away from yesterday weighs little (all of a key's networks
// age alike over a night or a weekend).
func weight(e *netEntry, t0 int64) float32 {
	age := float64(max(t0-e.last, 0)) / (6 * 60)
	return float32(float64(min(e.hours, 48)) * math.Exp2(-age))
}

// resolve decides the pending network when the evidence is in: theft when the known
// networks keep being used while it is (an alarm), a move when a network that was in
// use stopped when it appeared, or after a day.
func (r *run) resolve() {
	s, m, p := r.s, r.m, &r.s.pend
	if p.flags&pKnownSince != 0 && abs(p.knownLast-p.last) <= concurrentMinutes {
		// A roaming key's wider networks are interchangeable (its users are spread
		// over them): any of them used at the same time is evidence. A fixed key's
		// networks are not: an office that moved leaves one unused.
		if s.roaming() || p.active&^p.seen == 0 && (p.expected == 0 || p.seenMass >= theftShare*p.expected) {
			r.newNetwork()
			s.adopt(true)
			return
		}
	}
	if s.alarmedRecently(m) {
		// Under attack (a leak, a theft): new networks are the attacker's, not moves.
		if m-p.t0 >= pendingMinutes || p.hours >= adoptHours {
			s.adopt(true)
		}
		return
	}
	if m-p.last <= 60 {
		list := s.modeList()
		for i := range list {
			if bit := uint32(1) << i; p.active&bit != 0 && p.seen&bit == 0 && m-list[i].last >= overdueAfter(&list[i]) {
				// Moved: a network in use went quiet when this one came.
				list[i].hours = min(list[i].hours, 1)
				s.adopt(false)
				return
			}
		}
		if p.flags&pKnownSince == 0 && p.hours >= adoptHours {
			// Switched: only the new network has been used since it came.
			for i := range list {
				if p.mask&(1<<i) != 0 {
					list[i].hours = min(list[i].hours, 1)
				}
			}
			s.adopt(false)
			return
		}
	}
	if m-p.t0 >= pendingMinutes {
		if p.hours >= adoptHours {
			s.adopt(false)
		} else {
			s.pend = pending{}
		}
	}
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// alarmedRecently reports whether a network kind fired for the key within a day: a
// network adopted then is suspect, and moves are not believed.
func (s *state) alarmedRecently(m int64) bool {
	for _, k := range [2]Kind{NewNetwork, ManyNetworks} {
		if f := s.fired[kindIndex(k)]; f != 0 && m-(f-1) < 24*60 {
			return true
		}
	}
	return false
}

// adopt makes the pending network known.
func (s *state) adopt(suspect bool) {
	p := s.pend
	list := s.modeList()
	i := insert(list, p.id, p.last)
	list[i].hours = max(p.hours, 1)
	list[i].suspect = suspect
	s.pend = pending{}
}

// may reports whether kind k can fire now (not off, not cooling down) and marks it
// fired if so.
func (r *run) may(k Kind) bool {
	i := kindIndex(k)
	if r.off&(1<<i) != 0 {
		return false
	}
	if f := r.s.fired[i]; f != 0 && r.m-(f-1) < cooldownMinutes {
		return false
	}
	r.s.fired[i] = r.m + 1
	return true
}

func (r *run) add(k Kind, observed, baseline float64, network uint64, detail string) {
	a := Anomaly{Key: r.ev.Key, Role: r.ev.Role, Kind: k, At: r.ev.Time, Detail: detail,
		Observed: observed, Baseline: baseline}
	if network != 0 {
		a.Network = netPrefix(network).String()
	}
	r.out = append(r.out, a)
}

func (r *run) dormant(gap int64) {
	if !r.may(DormantWake) {
		return
	}
	s := r.s
	days := float64(gap) / (24 * 60)
	detail := fmt.Sprintf("used after %s of silence (last used %s); dormancy is %s",
		fmtDays(days), time.Unix(s.lastUse*60, 0).UTC().Format(time.RFC3339), fmtDays(r.cfg.Dormancy.Hours()/24))
	if s.maxGap > 0 {
		detail += fmt.Sprintf(", the key's longest silence before was %s", fmtDays(float64(s.maxGap)/(24*60)))
	}
	r.add(DormantWake, days, r.cfg.Dormancy.Hours()/24, 0, detail)
}

func fmtDays(d float64) string {
	if d < 2 {
		return fmt.Sprintf("%.1f hours", d*24)
	}
	return fmt.Sprintf("%.1f days", d)
}

func (r *run) rate(c uint32) {
	h := floorDiv(r.m, 60)
	base, lim, ok := r.s.rateLimit(h, &r.cfg)
	if !ok || float64(c) < lim || !r.may(RateSpike) {
		return
	}
	day := "weekday"
	if slotOf(h) >= 24 {
		day = "weekend"
	}
	r.add(RateSpike, float64(c), math.Ceil(lim), 0, fmt.Sprintf(
		"%d verifications in 5 minutes; the key's usual busiest 5 minutes around %02d:00 UTC on a %s is %.0f, %v robust deviations above it is %.0f",
		c, mod(h, 24), day, base, r.cfg.RateZ, math.Ceil(lim)))
}

func (r *run) storm(ctr int, c, limit uint32) {
	if !r.may(RefusalStorm) {
		return
	}
	n24, _ := netIDs(r.ev.Client)
	r.add(RefusalStorm, float64(c), float64(limit), n24, fmt.Sprintf(
		"%d %s refusals in 5 minutes; the key's usual busiest 5 minutes had %.0f, a storm is %d",
		c, counterName[ctr], r.s.peak[ctr], limit))
}

func (r *run) guess(ctr int, c, limit uint32, n24 uint64) {
	if !r.may(SecretGuessing) {
		return
	}
	from := "networks the key does not use"
	if ctr == cGuessKnown {
		from = "the key's own networks (more than its usual verification rate)"
	}
	r.add(SecretGuessing, float64(c), float64(limit), n24, fmt.Sprintf(
		"%d wrong secrets for this key_id in 5 minutes from %s; the usual busiest 5 minutes had %.0f, guessing is %d",
		c, from, r.s.peak[ctr], limit))
}

func (r *run) many(x, limit float64, n24 uint64) {
	if !r.may(ManyNetworks) {
		return
	}
	unit, p := "networks (/24, /48)", r.s.netPeak[0]
	if r.s.roaming() {
		unit, p = "wider networks (/16, /32; the key roams)", r.s.netPeak[1]
	}
	r.add(ManyNetworks, math.Round(x), limit, n24, fmt.Sprintf(
		"about %.0f distinct client %s within the last hour; the key's usual peak is %.0f, many is %.0f",
		x, unit, p, limit))
}

func (r *run) newNetwork() {
	s, p := r.s, &r.s.pend
	if !r.may(NewNetwork) {
		return
	}
	known, kept := 0, 0
	for i := range s.modeList() {
		if p.mask&(1<<i) != 0 {
			known++
			if p.seen&(1<<i) != 0 {
				kept++
			}
		}
	}
	unit := "network"
	if s.roaming() {
		unit = "wider network (the key roams within its known wider networks)"
	}
	r.add(NewNetwork, float64(kept), float64(known), p.id, fmt.Sprintf(
		"used from %s, a %s it had not used, since %s, while %d of its %d usual networks kept being used",
		netPrefix(p.id), unit, time.Unix(p.t0*60, 0).UTC().Format(time.RFC3339), kept, known))
}
