// Command anomaly measures the anomaly detector (internal/anomaly) on simulated traffic:
// a deterministic generator with a simulated clock makes keys with daily and weekly
// seasonality, heavy-tailed volumes, offices, mobile clients, moves and trips, and
// injects anomalies of each kind at known times; the detector sees the events only
// (never the labels), with the default Config; the alarms are scored against the labels.
// Targets that are missed are printed as MISS; the program still exits 0.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"math/rand/v2"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/anomaly"
)

type alarm struct {
	key    int
	kind   anomaly.Kind
	at     int64 // simulated seconds from the start
	net    string
	detail string
}

func main() {
	seed := flag.Uint64("seed", 1, "generator seed")
	nkeys := flag.Int("keys", 1000, "keys")
	days := flag.Int("days", 14, "simulated days (after the history of the dormant cohorts)")
	md := flag.String("md", "", "also write the results as Markdown to this file")
	lru := flag.Int("lru", 0, "hold at most this many keys in the detector, flushing their state to a simulated storage (every simulated 10 minutes, and when evicted states pile up) and reloading it (0: every key)")
	workers := flag.Int("workers", runtime.GOMAXPROCS(0), "goroutines feeding the detector")
	verbose := flag.Bool("v", false, "list every missed incident and false alarm")
	trace := flag.String("trace", "", "print one key's profile, its injected anomaly and every alarm on it (e.g. k00042)")
	flag.Parse()
	if *nkeys < 100 || *days < 10 {
		fmt.Fprintln(os.Stderr, "need -keys ≥ 100 and -days ≥ 10 (the learning period is 7 days)")
		os.Exit(2)
	}

	began := time.Now()
	g := build(*seed, *nkeys, *days)
	built := time.Since(began)
	alarms, events, dropped := g.run(*workers, *lru)
	ran := time.Since(began) - built
	res := score(g, alarms)
	res.events, res.built, res.ran = events, built, ran
	res.seed, res.lru, res.dropped = *seed, *lru, dropped
	res.print(os.Stdout, *verbose)
	if *trace != "" {
		g.trace(os.Stdout, *trace, alarms)
	}
	if *md != "" {
		if err := os.WriteFile(*md, []byte(res.markdown()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
}

// run feeds every key's events to one detector, from workers goroutines (each owns a
// share of the keys and walks the simulated minutes in order).
func (g *gen) run(workers, lru int) ([]alarm, int64, uint64) {
	maxKeys := len(g.keys)
	if lru > 0 {
		maxKeys = lru
	}
	det := anomaly.NewDetector(maxKeys)
	var store sync.Map // key id → []byte: the plugin's storage
	cfg := anomaly.Config{}
	loaders := make([]func() []byte, len(g.keys))
	if lru > 0 {
		for i, k := range g.keys {
			id := k.id
			loaders[i] = func() []byte {
				if b, ok := store.Load(id); ok {
					return b.([]byte)
				}
				return nil
			}
		}
	}
	// The plugin's flush: Dirty, then Snapshot and write each, one flush at a time.
	var flushing sync.Mutex
	flush := func() {
		flushing.Lock()
		defer flushing.Unlock()
		for _, id := range det.Dirty() {
			if b, ok := det.Snapshot(id); ok {
				store.Store(id, b)
			}
		}
	}

	workers = max(workers, 1)
	out := make([][]alarm, workers)
	counts := make([]int64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []*key
			for _, k := range g.keys {
				if k.idx%workers == w {
					mine = append(mine, k)
				}
			}
			slices.SortFunc(mine, func(a, b *key) int { return int(a.envFrom - b.envFrom) })
			rngs := make([]*rand.Rand, len(mine))
			for i, k := range mine {
				rngs[i] = rand.New(rand.NewPCG(g.seed, uint64(k.idx)+1))
			}
			var buf []ev
			var alarms []alarm
			n := int64(0)
			for t := g.from; t < g.to; t++ {
				for i, k := range mine {
					if k.envFrom > t {
						break
					}
					if t >= k.envTo {
						continue
					}
					buf = g.minute(k, rngs[i], t, buf)
					for _, e := range buf {
						ev := anomaly.Event{Key: k.id, Role: k.role, Code: e.code, Client: e.addr,
							Time: time.Unix(g.epoch+t*60, e.ms*int64(time.Millisecond))}
						for _, a := range det.Observe(ev, cfg, loaders[k.idx]) {
							alarms = append(alarms, alarm{key: k.idx, kind: a.Kind,
								at: a.At.Unix() - g.epoch, net: a.Network, detail: a.Detail})
						}
					}
					n += int64(len(buf))
					if lru > 0 && len(buf) > 0 && det.Stats().Evicted >= lru/2 {
						flush() // the simulated clock runs far faster than a real flush interval
					}
				}
				if lru > 0 && w == 0 && t%10 == 0 {
					flush() // every simulated 10 minutes
				}
			}
			out[w], counts[w] = alarms, n
		}()
	}
	wg.Wait()
	var all []alarm
	total := int64(0)
	for w := range workers {
		all = append(all, out[w]...)
		total += counts[w]
	}
	slices.SortFunc(all, func(a, b alarm) int {
		if a.at != b.at {
			return int(a.at - b.at)
		}
		return a.key - b.key
	})
	return all, total, det.Stats().Dropped
}
