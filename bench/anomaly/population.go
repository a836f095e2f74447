package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/anomaly"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// gen is the simulated world: keys, what they do, and the labels.
type gen struct {
	seed         uint64
	days         int64
	epoch        int64 // Unix seconds of simulated minute 0
	startWeekday int64 // weekday of day 0 (0 Sunday)
	learn        int64 // the detector's default learning period, minutes
	dormancy     int64 // the detector's default dormancy, minutes
	from, to     int64 // simulated minutes with traffic
	keys         []*key
	incidents    []*incident
}

const day = 1440

func uniform(r *rand.Rand, a, b float64) float64 { return a + (b-a)*r.Float64() }

func logUniform(r *rand.Rand, a, b float64) float64 {
	return math.Exp(uniform(r, math.Log(a), math.Log(b)))
}

func minutesU(r *rand.Rand, a, b int64) int64 { return a + r.Int64N(max(b-a, 1)) }

// build makes the population of a seed. Nothing here depends on the detector but its
// default learning period and dormancy (so that anomalies are injected after learning,
// and dormant keys are silent long enough to count as dormant).
func build(seed uint64, nkeys, days int) *gen {
	start := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC) // a Monday
	def := anomaly.Defaults()
	g := &gen{seed: seed, days: int64(days), epoch: start.Unix(), startWeekday: int64(start.Weekday()),
		learn: int64(def.Learning / time.Minute), dormancy: int64(def.Dormancy / time.Minute),
		to: int64(days) * day}
	r := rand.New(rand.NewPCG(seed, 0x616e6f6d616c79))
	end := g.to
	tzs := []int64{-8, -5, -3, 0, 1, 2, 3, 5, 8, 9}
	for i := range nkeys {
		k := &key{idx: i, id: fmt.Sprintf("k%05d", i), role: fmt.Sprintf("role%d", i%8)}
		switch u := r.Float64(); {
		case u < 0.35:
			k.prof = profOffice
		case u < 0.50:
			k.prof = profOffices
		case u < 0.70:
			k.prof = profServer
		case u < 0.90:
			k.prof = profMobile
		default:
			k.prof = profMixed
		}
		switch k.prof {
		case profServer:
			k.shape = shapeAlways
			if r.Float64() < 0.3 {
				k.shape = shapeBusiness
			}
		case profMobile:
			k.shape = shapeEvening
			if r.Float64() < 0.3 {
				k.shape = shapeAlways
			}
		default:
			k.shape = shapeBusiness
			if r.Float64() < 0.1 {
				k.shape = shapeAlways
			}
		}
		k.tz = tzs[r.IntN(len(tzs))] * 60
		// Heavy-tailed volumes: lognormal, median 400 a day; the busiest keys do
		// thousands an hour, the quietest a few calls a day.
		k.daily = min(max(400*math.Exp(1.8*r.NormFloat64()), 2), 400000)
		switch k.shape {
		case shapeBusiness:
			k.weekend = uniform(r, 0.03, 0.3)
		case shapeAlways:
			k.weekend = uniform(r, 0.75, 1)
		case shapeEvening:
			k.weekend = uniform(r, 1, 1.3)
		}
		k.trend = 0.2 * r.NormFloat64()
		if (k.prof == profServer || k.prof == profOffice) && r.Float64() < 0.15 {
			k.batch = []int{1, 2, 4}[r.IntN(3)]
			for j := range k.batch {
				k.batchAt[j] = int64(j*60/k.batch) + r.Int64N(int64(60/k.batch))
			}
		}
		k.refuse = min(0.002*math.Exp(r.NormFloat64()), 0.1)
		if r.Float64() < 0.12 {
			peak := k.daily / day * 2.5
			if k.batch > 0 {
				peak = k.daily / 24 * 2.5 / float64(k.batch)
			}
			k.limit = math.Ceil(max(peak*uniform(r, 1.3, 3), 5))
		}
		k.v6 = k.prof != profMobile && r.Float64() < 0.15
		g.networks(k, r)
		k.active = []interval{{0, end}}
		g.keys = append(g.keys, k)
	}

	// Cohorts with a history before day 0: dormant keys (labelled when woken),
	// periodic keys (a long gap they have shown before) and keys with a gap shorter
	// than the dormancy (near-misses).
	perm := r.Perm(nkeys)
	next := 0
	take := func(n int) []*key {
		out := make([]*key, 0, n)
		for range n {
			out = append(out, g.keys[perm[next]])
			next++
		}
		return out
	}
	nk := max(10, nkeys/20)
	for _, k := range take(nk) {
		g.dormant(k, r)
	}
	for _, k := range take(max(5, nkeys/50)) {
		g.periodic(k, r)
	}
	for _, k := range take(max(5, nkeys/50)) {
		k.cohort = "gap"
		x := minutesU(r, day, end-day)
		silence := int64(uniform(r, 20, 42) * day)
		length := int64(uniform(r, 5, 20) * day)
		k.active = []interval{{x - silence - length, x - silence}, {x, end}}
	}

	// Injected anomalies, on keys without a cohort, at most one per key.
	for _, inj := range []injection{injStolen, injLeak, injSpike, injProbe, injGuess} {
		for _, k := range take(nk) {
			g.inject(k, inj, r)
		}
	}

	// Legitimate episodes on every key in the main window.
	for _, k := range g.keys {
		g.episodes(k, r)
	}
	g.from = 0
	for _, k := range g.keys {
		k.envFrom, k.envTo = end, 0
		for _, iv := range k.active {
			k.envFrom, k.envTo = min(k.envFrom, iv.from), max(k.envTo, iv.to)
		}
		if k.inc != nil {
			k.envFrom, k.envTo = min(k.envFrom, k.inc.from), max(k.envTo, k.inc.to)
		}
		k.envTo = min(k.envTo, end)
		g.from = min(g.from, k.envFrom)
	}
	return g
}

// networks gives a key its client population.
func (g *gen) networks(k *key, r *rand.Rand) {
	add := func(n network, w float64) {
		k.nets = append(k.nets, n)
		prev := 0.0
		if len(k.weights) > 0 {
			prev = k.weights[len(k.weights)-1]
		}
		k.weights = append(k.weights, prev+w)
	}
	switch k.prof {
	case profOffice:
		n := randomNetwork(r, k.v6)
		add(n, 1)
		if r.Float64() < 0.3 {
			add(sameWider(r, n), uniform(r, 0.2, 1))
		}
	case profOffices:
		for range 2 + r.IntN(3) {
			add(randomNetwork(r, k.v6), uniform(r, 0.2, 1))
		}
	case profServer:
		n := randomNetwork(r, k.v6)
		add(n, 1)
		for range r.IntN(3) {
			add(sameWider(r, n), uniform(r, 0.3, 1))
		}
	case profMixed:
		add(randomNetwork(r, k.v6), uniform(r, 0.5, 0.8))
		homes := 2 + r.IntN(5)
		rest := 1 - k.weights[0]
		for range homes {
			add(randomNetwork(r, k.v6 && r.Float64() < 0.5), rest/float64(homes)*uniform(r, 0.5, 1.5))
		}
	case profMobile:
		prev := 0.0
		for range 1 + r.IntN(3) {
			share := uniform(r, 0.2, 1)
			v6 := r.Float64() < 0.25
			nb := 2 + r.IntN(4)
			for range nb {
				var b block
				b.v6 = v6
				if v6 {
					b.b = [4]byte{0x2a, byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))}
				} else {
					b.b = [4]byte{byte(11 + r.IntN(212)), byte(r.IntN(256))}
				}
				k.blocks = append(k.blocks, b)
				prev += share / float64(nb) * uniform(r, 0.3, 1.7)
				k.bw = append(k.bw, prev)
			}
		}
	}
}

func (g *gen) dormant(k *key, r *rand.Rand) {
	k.cohort = "dormant"
	k.daily = max(k.daily, 50) // so that its weeks of use show
	end := g.to
	w := minutesU(r, day, end-day)
	silence := int64(uniform(r, 46, 80) * day)
	length := int64(uniform(r, 3, 20) * day)
	k.active = []interval{{w - silence - length, w - silence}}
	inc := &incident{key: k.idx, inj: injWake, kind: anomaly.DormantWake, accept: []anomaly.Kind{anomaly.DormantWake},
		code: verifyapi.CodeValid, rate: logUniform(r, 0.5, 5)}
	dur := minutesU(r, 10, 120)
	if r.Float64() < 0.3 {
		// The owner comes back: a first session, then the usual traffic.
		inc.note, inc.fromOwn = "owner resumes", true
		dur = 10
		k.active = append(k.active, interval{w + 10, end})
	} else if r.Float64() < 0.5 {
		inc.note, inc.fromOwn = "thief on the owner's network", true
	} else {
		inc.note, inc.net = "thief on a new network", randomNetwork(r, k.v6)
		inc.accept = append(inc.accept, anomaly.NewNetwork)
	}
	inc.interval = interval{w, w + dur}
	k.inc = inc
	g.incidents = append(g.incidents, inc)
}

func (g *gen) periodic(k *key, r *rand.Rand) {
	k.cohort = "periodic"
	k.daily = max(k.daily, 50) // so that each day of use has calls
	period := uniform(r, 50, 70) * day
	x := minutesU(r, day, g.to-day)
	x -= mod(x, day)
	k.active = nil
	for c := int64(3); c >= 0; c-- {
		t := x - int64(float64(c)*period)
		if c > 0 {
			t += int64(uniform(r, -2, 2) * day)
		}
		k.active = append(k.active, interval{t, t + day})
	}
	// The second use is the first long silence the key shows: indistinguishable from a
	// dormant key waking up, so it is labelled as one. The later ones repeat a gap the
	// key has shown before: near-misses, not labelled.
	second := k.active[1]
	inc := &incident{key: k.idx, inj: injWake, kind: anomaly.DormantWake, accept: []anomaly.Kind{anomaly.DormantWake},
		interval: second, note: "periodic key's first long gap"}
	k.inc = inc
	g.incidents = append(g.incidents, inc)
}

// activeHours reports whether the owner is busy at t: at least 30% of the busiest hour
// of the week before.
func (g *gen) activeHours(k *key, t int64) bool {
	peak := 0.0
	for h := int64(1); h <= 7*24; h++ {
		peak = max(peak, g.lambda(k, t-h*60))
	}
	return g.lambda(k, t) >= 0.3*peak
}

func (g *gen) inject(k *key, inj injection, r *rand.Rand) {
	inc := &incident{key: k.idx, inj: inj, note: profileName[k.prof]}
	var dur int64
	switch inj {
	case injStolen:
		dur = minutesU(r, 60, 240)
	case injLeak:
		dur = minutesU(r, 60, 360)
	case injSpike:
		dur = minutesU(r, 20, 180)
	case injProbe:
		dur = minutesU(r, 5, 30)
	case injGuess:
		dur = minutesU(r, 5, 60)
	}
	lo, hi := g.learn+6*60, g.to-dur-60
	t := minutesU(r, lo, hi)
	if inj == injStolen {
		// "Used concurrently": the thief works while the owner does.
		for range 500 {
			if g.activeHours(k, t) {
				break
			}
			t = minutesU(r, lo, hi)
		}
	}
	inc.interval = interval{t, t + dur}
	switch inj {
	case injStolen:
		inc.kind = anomaly.NewNetwork
		inc.accept = []anomaly.Kind{anomaly.NewNetwork}
		inc.net = randomNetwork(r, k.v6 && r.Float64() < 0.7)
		inc.rate = logUniform(r, 0.2, 3)
	case injLeak:
		inc.kind = anomaly.ManyNetworks
		inc.accept = []anomaly.Kind{anomaly.ManyNetworks, anomaly.NewNetwork, anomaly.RateSpike}
		if k.limit > 0 {
			inc.accept = append(inc.accept, anomaly.RefusalStorm)
		}
		n := int(logUniform(r, 15, 150))
		ramp := uniform(r, 0, 20)
		for range n {
			inc.leakNets = append(inc.leakNets, randomNetwork(r, r.Float64() < 0.2))
			inc.leakJoin = append(inc.leakJoin, t+int64(uniform(r, 0, ramp)))
			inc.leakRate = append(inc.leakRate, logUniform(r, 0.2, 2))
		}
		inc.note += fmt.Sprintf(", %d networks", n)
	case injSpike:
		inc.kind = anomaly.RateSpike
		inc.accept = []anomaly.Kind{anomaly.RateSpike}
		if k.limit > 0 {
			inc.accept = append(inc.accept, anomaly.RefusalStorm)
		}
		inc.mult = logUniform(r, 5, 20)
		inc.rate = logUniform(r, 30, 150)
		inc.note += fmt.Sprintf(", ×%.0f", inc.mult)
	case injProbe:
		inc.kind = anomaly.RefusalStorm
		inc.accept = []anomaly.Kind{anomaly.RefusalStorm}
		inc.rate = logUniform(r, 6, 60)
		switch u := r.Float64(); {
		case u < 0.15 && k.limit > 0:
			inc.code = verifyapi.CodeRateLimited
			inc.accept = append(inc.accept, anomaly.RateSpike)
		case u < 0.4:
			inc.code = verifyapi.CodeForbiddenIP
		default:
			inc.code = verifyapi.CodeInsufficientScope
		}
		if inc.code != verifyapi.CodeForbiddenIP && r.Float64() < 0.5 {
			inc.fromOwn = true
			inc.note += ", " + inc.code + " from its own network"
		} else {
			inc.net = randomNetwork(r, k.v6)
			inc.accept = append(inc.accept, anomaly.NewNetwork)
			inc.note += ", " + inc.code + " from a new network"
		}
	case injGuess:
		inc.kind = anomaly.SecretGuessing
		inc.accept = []anomaly.Kind{anomaly.SecretGuessing}
		inc.code = verifyapi.CodeNotFound
		inc.rate = logUniform(r, 5, 100)
		if r.Float64() < 0.1 {
			inc.fromOwn = true
			inc.note += ", from its own network"
		} else {
			inc.net = randomNetwork(r, k.v6)
		}
	}
	k.inc = inc
	g.incidents = append(g.incidents, inc)
}

// episodes adds the legitimate changes and near-misses of a key's main window.
func (g *gen) episodes(k *key, r *rand.Rand) {
	end := g.to
	for d := int64(0); d < g.days; d++ {
		if r.Float64() < 0.03 { // a busy day or a campaign: ×1.3 to ×2.5 for hours
			s := d*day + r.Int64N(day)
			k.surges = append(k.surges, surge{interval{s, s + minutesU(r, 60, 360)}, uniform(r, 1.3, 2.5)})
		}
		if k.daily < 300 && r.Float64() < 0.1 { // a developer's script on a quiet key
			s := d*day - k.tz + minutesU(r, 9*60, 18*60)
			k.bursts = append(k.bursts, devBurst{s, int(uniform(r, 5, 120)), k.pick(r, s)})
		}
	}
	if k.prof != profMobile && k.cohort == "" && r.Float64() < 0.12 {
		mv := move{at: minutesU(r, day, end), idx: r.IntN(len(k.nets))}
		if r.Float64() < 0.5 {
			mv.to = sameWider(r, k.nets[mv.idx]) // a new address block from the same ISP
		} else {
			mv.to = randomNetwork(r, k.v6) // a new office, a new ISP, a new cloud region
		}
		if r.Float64() < 0.15 {
			mv.gradual, mv.overlap = true, minutesU(r, 15, 120)
		}
		k.moves = append(k.moves, mv)
	}
	if k.prof == profMixed && r.Float64() < 0.5 {
		s := minutesU(r, day, end-3*day)
		k.trips = append(k.trips, trip{interval{s, s + minutesU(r, day, 3*day)}, 1 + r.IntN(len(k.nets)-1),
			randomNetwork(r, false)})
	}
	if r.Float64() < 0.03 { // a client left with a rotated secret
		s := minutesU(r, 0, end-day)
		k.stales = append(k.stales, stale{interval{s, s + minutesU(r, 60, 24*60)}, uniform(r, 0.1, 0.5)})
	}
}
