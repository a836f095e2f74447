package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/anomaly"
)

// grace is how long after an injected interval an alarm still counts for it.
const grace = 5 * 60

// Targets.
const (
	targetPrecision = 0.9
	targetRecall    = 0.9
	targetFalse     = 1.0 // per 1000 key-days
	targetTTD       = 5 * 60
)

type kindStat struct {
	incidents, detected int
	ttd                 []int64
	alarms, matched     int
	cross               int // matched through an accepted secondary kind
	missed              []*incident
	hits                []hit
}

type hit struct {
	inc *incident
	ttd int64
}

type falseAlarm struct {
	alarm
	cause string
}

type result struct {
	g       *gen
	kinds   map[anomaly.Kind]*kindStat
	falses  []falseAlarm
	keyDays float64
	events  int64
	built   time.Duration
	ran     time.Duration
	seed    uint64
	lru     int
	dropped uint64
}

func score(g *gen, alarms []alarm) *result {
	res := &result{g: g, kinds: map[anomaly.Kind]*kindStat{}, keyDays: float64(len(g.keys)) * float64(g.days)}
	for _, k := range anomaly.Kinds() {
		res.kinds[k] = &kindStat{}
	}
	byKey := map[int][]alarm{}
	for _, a := range alarms {
		byKey[a.key] = append(byKey[a.key], a)
		st := res.kinds[a.kind]
		st.alarms++
		inc := g.keys[a.key].inc
		if inc != nil && a.at >= inc.from*60 && a.at <= inc.to*60+grace && slices.Contains(inc.accept, a.kind) {
			st.matched++
			if a.kind != inc.kind {
				st.cross++
			}
			continue
		}
		res.falses = append(res.falses, falseAlarm{a, g.cause(g.keys[a.key], a)})
	}
	for _, inc := range g.incidents {
		st := res.kinds[inc.kind]
		st.incidents++
		found := false
		for _, a := range byKey[inc.key] {
			if a.kind == inc.kind && a.at >= inc.from*60 && a.at <= inc.to*60+grace {
				st.detected++
				// Time to detect counts from the anomaly's first event: nothing can be
				// seen before it.
				start := inc.from * 60
				if inc.first > 0 {
					start = inc.first
				}
				st.ttd = append(st.ttd, max(a.at-start, 0))
				st.hits = append(st.hits, hit{inc, max(a.at-start, 0)})
				found = true
				break
			}
		}
		if !found {
			st.missed = append(st.missed, inc)
		}
	}
	return res
}

// cause names the legitimate episode a false alarm came with (the report's, not the
// detector's, knowledge).
func (g *gen) cause(k *key, a alarm) string {
	t := a.at / 60
	near := func(iv interval, after int64) bool { return t >= iv.from-60 && t <= iv.to+after }
	for _, mv := range k.moves {
		if near(interval{mv.at, mv.at + mv.overlap}, 2*day) {
			if mv.gradual {
				return "gradual migration (overlap)"
			}
			return "office move"
		}
	}
	for _, tr := range k.trips {
		if near(tr.interval, 60) {
			return "trip (home network → hotel)"
		}
	}
	for _, s := range k.stales {
		if near(s.interval, 60) {
			return "client with a rotated secret"
		}
	}
	for _, s := range k.surges {
		if near(s.interval, 60) {
			return "busy day (×1.3–2.5)"
		}
	}
	for _, b := range k.bursts {
		if near(interval{b.at, b.at + 3}, 10) {
			return "developer burst on a quiet key"
		}
	}
	if inc := k.inc; inc != nil && near(inc.interval, 60) {
		return "during an injected " + string(inc.kind) + " (a kind not expected of it)"
	}
	switch k.cohort {
	case "periodic":
		return "periodic key"
	case "gap":
		return "key back after a gap shorter than the dormancy"
	case "dormant":
		return "dormant key"
	}
	return "ordinary traffic (" + profileName[k.prof] + ")"
}

func median(xs []int64) (int64, bool) {
	if len(xs) == 0 {
		return 0, false
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2], true
}

func quantile(xs []int64, q float64) int64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func fmtDur(sec int64) string {
	d := time.Duration(sec) * time.Second
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", sec)
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", sec/60, sec%60)
	default:
		return fmt.Sprintf("%.1fh", d.Hours())
	}
}

type row struct {
	kind                                   string
	incidents, detected, alarms, fp, cross string
	recall, precision, own, ttd, p90       string
	recallOK, precisionOK, ttdOK           string
}

func passMiss(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

func (res *result) rows() []row {
	var out []row
	for _, k := range anomaly.Kinds() {
		st := res.kinds[k]
		r := row{kind: string(k), incidents: fmt.Sprint(st.incidents), detected: fmt.Sprint(st.detected),
			alarms: fmt.Sprint(st.alarms), fp: fmt.Sprint(st.alarms - st.matched), cross: fmt.Sprint(st.cross)}
		rec := float64(st.detected) / float64(max(st.incidents, 1))
		r.recall, r.recallOK = fmt.Sprintf("%.3f", rec), passMiss(rec >= targetRecall)
		if st.alarms > 0 {
			p := float64(st.matched) / float64(st.alarms)
			r.precision, r.precisionOK = fmt.Sprintf("%.3f", p), passMiss(p >= targetPrecision)
		} else {
			r.precision, r.precisionOK = "–", "MISS (no alarm)"
		}
		r.own = "–"
		if own := st.alarms - st.cross; own > 0 {
			r.own = fmt.Sprintf("%.3f", float64(st.matched-st.cross)/float64(own))
		}
		r.ttd, r.p90, r.ttdOK = "–", "–", ""
		if m, ok := median(st.ttd); ok {
			r.ttd, r.p90 = fmtDur(m), fmtDur(quantile(st.ttd, 0.9))
			if k == anomaly.NewNetwork || k == anomaly.ManyNetworks || k == anomaly.RateSpike {
				r.ttdOK = passMiss(m <= targetTTD)
			}
		} else if k == anomaly.NewNetwork || k == anomaly.ManyNetworks || k == anomaly.RateSpike {
			r.ttdOK = "MISS"
		}
		out = append(out, r)
	}
	return out
}

func (res *result) falseRate() float64 { return float64(len(res.falses)) / res.keyDays * 1000 }

func (res *result) header() string {
	g := res.g
	lru := "every key held"
	if res.lru > 0 {
		lru = fmt.Sprintf("LRU of %d keys with flushes to a simulated storage (%d dropped)", res.lru, res.dropped)
	}
	return fmt.Sprintf("seed %d: %d keys × %d days (%.0f key-days; dormant cohorts from day %d), %d events, %d injected anomalies; detector defaults, %s; generated in %s, run in %s",
		res.seed, len(g.keys), g.days, res.keyDays, g.from/day, res.events, len(g.incidents), lru,
		res.built.Round(time.Millisecond), res.ran.Round(100*time.Millisecond))
}

// population summarises the keys and their legitimate episodes (the near-misses).
func (g *gen) population() string {
	var profiles [len(profileName)]int
	var moves, gradual, trips, surges, bursts, stales, periodic, gaps, limited, batch int
	for _, k := range g.keys {
		profiles[k.prof]++
		for _, mv := range k.moves {
			moves++
			if mv.gradual {
				gradual++
			}
		}
		trips += len(k.trips)
		surges += len(k.surges)
		bursts += len(k.bursts)
		stales += len(k.stales)
		switch k.cohort {
		case "periodic":
			periodic++
		case "gap":
			gaps++
		}
		if k.limit > 0 {
			limited++
		}
		if k.batch > 0 {
			batch++
		}
	}
	var parts []string
	for i, n := range profiles {
		parts = append(parts, fmt.Sprintf("%d %s", n, profileName[i]))
	}
	return fmt.Sprintf("keys: %s; %d send in bursts, %d have a rate limit. Legitimate episodes (never labelled): "+
		"%d office moves (%d gradual, with overlap), %d trips, %d busy periods (×1.3–2.5), %d developer bursts on quiet keys, "+
		"%d clients left with a rotated secret, %d periodic keys, %d keys back after 20–42 days",
		strings.Join(parts, ", "), batch, limited, moves, gradual, trips, surges, bursts, stales, periodic, gaps)
}

func (res *result) causes() []string {
	byCause := map[string]map[anomaly.Kind]int{}
	for _, f := range res.falses {
		if byCause[f.cause] == nil {
			byCause[f.cause] = map[anomaly.Kind]int{}
		}
		byCause[f.cause][f.kind]++
	}
	type line struct {
		n    int
		text string
	}
	var lines []line
	for _, c := range slices.Sorted(maps.Keys(byCause)) {
		var parts []string
		n := 0
		for _, k := range anomaly.Kinds() {
			if v := byCause[c][k]; v > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", k, v))
				n += v
			}
		}
		lines = append(lines, line{n, fmt.Sprintf("%d × %s (%s)", n, c, strings.Join(parts, ", "))})
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].n > lines[j].n })
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.text
	}
	return out
}

func (res *result) print(w io.Writer, verbose bool) {
	fmt.Fprintln(w, res.header())
	fmt.Fprintln(w, res.g.population())
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-16s %9s %8s %7s %6s %6s %6s %9s %9s %8s %8s\n", "kind", "incidents", "detected", "recall",
		"alarms", "false", "cross", "precision", "own-only", "TTD p50", "TTD p90")
	rows := res.rows()
	for _, r := range rows {
		fmt.Fprintf(w, "%-16s %9s %8s %7s %6s %6s %6s %9s %9s %8s %8s\n", r.kind, r.incidents, r.detected, r.recall,
			r.alarms, r.fp, r.cross, r.precision, r.own, r.ttd, r.p90)
	}
	fmt.Fprintf(w, "\nfalse alarms: %d, %.2f per 1000 key-days\n", len(res.falses), res.falseRate())
	for _, c := range res.causes() {
		fmt.Fprintln(w, "  "+c)
	}
	fmt.Fprintln(w, "\ntargets:")
	for _, r := range rows {
		fmt.Fprintf(w, "  %-16s recall ≥ %.1f %s   precision ≥ %.1f %s", r.kind, targetRecall, r.recallOK,
			targetPrecision, r.precisionOK)
		if r.ttdOK != "" {
			fmt.Fprintf(w, "   median TTD ≤ 5m %s", r.ttdOK)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "  false alarms ≤ %.0f per 1000 key-days %s\n", targetFalse, passMiss(res.falseRate() <= targetFalse))
	if verbose {
		fmt.Fprintln(w, "\nmissed:")
		for _, k := range anomaly.Kinds() {
			for _, inc := range res.kinds[k].missed {
				key := res.g.keys[inc.key]
				fmt.Fprintf(w, "  %s %s %s (%s, %.0f/day, %s, day %.2f, %s)\n", k, key.id, injectionName[inc.inj],
					inc.note, key.daily, profileName[key.prof], float64(inc.from)/day, fmtDur((inc.to-inc.from)*60))
			}
		}
		fmt.Fprintln(w, "\ndetected:")
		for _, k := range anomaly.Kinds() {
			for _, h := range res.kinds[k].hits {
				key := res.g.keys[h.inc.key]
				fmt.Fprintf(w, "  %s %s after %s (%s, %.0f/day, day %.2f)\n", k, key.id, fmtDur(h.ttd),
					h.inc.note, key.daily, float64(h.inc.from)/day)
			}
		}
		fmt.Fprintln(w, "\nfalse alarms:")
		for _, f := range res.falses {
			key := res.g.keys[f.key]
			fmt.Fprintf(w, "  day %.3f %s %s %s (%s, %.0f/day) %s\n      %s\n", float64(f.at)/86400, key.id, f.kind, f.cause,
				profileName[key.prof], key.daily, f.net, f.detail)
		}
	}
}

func (res *result) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n%s.\n\n", res.header(), res.g.population())
	b.WriteString("| kind | incidents | detected | recall | alarms | false | cross | precision | own-only | TTD p50 | TTD p90 | recall ≥ 0.9 | precision ≥ 0.9 | p50 ≤ 5m |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|\n")
	for _, r := range res.rows() {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.kind, r.incidents,
			r.detected, r.recall, r.alarms, r.fp, r.cross, r.precision, r.own, r.ttd, r.p90, r.recallOK, r.precisionOK, r.ttdOK)
	}
	fmt.Fprintf(&b, "\nFalse alarms: %d, **%.2f per 1000 key-days** (target ≤ %.0f: %s).\n", len(res.falses),
		res.falseRate(), targetFalse, passMiss(res.falseRate() <= targetFalse))
	for _, c := range res.causes() {
		fmt.Fprintf(&b, "- %s\n", c)
	}
	return b.String()
}

// trace prints what the generator made of one key and every alarm on it.
func (g *gen) trace(w io.Writer, id string, alarms []alarm) {
	for _, k := range g.keys {
		if k.id != id {
			continue
		}
		fmt.Fprintf(w, "\n%s: %s, %.0f calls/day, shape %d, tz %+dh, weekend ×%.2f, trend %+.2f, batch %d/h, refusals %.4f, rate limit %.0f/min, cohort %q\n",
			k.id, profileName[k.prof], k.daily, k.shape, k.tz/60, k.weekend, k.trend, k.batch, k.refuse, k.limit, k.cohort)
		fmt.Fprintf(w, "  networks %d, mobile blocks %d, active %v\n", len(k.nets), len(k.blocks), k.active)
		for _, mv := range k.moves {
			fmt.Fprintf(w, "  move of network %d at day %.2f (gradual %v, %d min)\n", mv.idx, float64(mv.at)/day, mv.gradual, mv.overlap)
		}
		for _, tr := range k.trips {
			fmt.Fprintf(w, "  trip of network %d, days %.2f–%.2f\n", tr.idx, float64(tr.from)/day, float64(tr.to)/day)
		}
		if inc := k.inc; inc != nil {
			fmt.Fprintf(w, "  injected %s (%s): days %.3f–%.3f, first event day %.3f, %.1f calls/min\n", inc.kind, inc.note,
				float64(inc.from)/day, float64(inc.to)/day, float64(inc.first)/86400, inc.rate)
		}
		for _, a := range alarms {
			if a.key == k.idx {
				fmt.Fprintf(w, "  day %.3f %s %s: %s\n", float64(a.at)/86400, a.kind, a.net, a.detail)
			}
		}
		return
	}
	fmt.Fprintf(w, "no key %s\n", id)
}
