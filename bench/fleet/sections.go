//go:build unix

package main

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/vaulttest"
)

// throughputSection measures one gateway each with auth off, with -fleet and an
// unmetered key, a max_uses key and a rate-limited key (neither limit binds), and with
// the max_uses key without -fleet, interleaved; it reports each ÷ auth off and the
// Vault calls each made per 10k requests.
func throughputSection(ctx context.Context, e *benchEnv, rep *report) error {
	cfg := e.cfg
	type spec struct {
		name    string
		gwName  string
		auth    bool
		fleet   bool
		role    string
		gateway *vaulttest.Gateway
		key     string
	}
	specs := []*spec{
		{name: "gateway, auth off", gwName: "tp-auth-off"},
		{name: "gateway -fleet, unmetered key", gwName: "tp-unmetered", auth: true, fleet: true, role: rolePlain},
		{name: "gateway -fleet, max_uses key", gwName: "tp-max-uses", auth: true, fleet: true, role: roleUses},
		{name: "gateway -fleet, rate_limit key", gwName: "tp-rate-limit", auth: true, fleet: true, role: roleRate},
		{name: "gateway without -fleet, max_uses key", gwName: "tp-max-uses-no-fleet", auth: true, role: roleUses},
		{name: "gateway without -fleet, unmetered key", gwName: "tp-unmetered-no-fleet", auth: true, role: rolePlain},
	}
	var started []*vaulttest.Gateway
	defer func() { stopGateways(started) }()
	for _, sp := range specs {
		gws, err := e.gateways(ctx, sp.gwName, 1, sp.auth, sp.fleet)
		if err != nil {
			return err
		}
		sp.gateway = gws[0]
		started = append(started, sp.gateway)
		if sp.role != "" {
			k, err := e.issue(ctx, sp.role)
			if err != nil {
				return err
			}
			sp.key = k.key
		}
	}
	client := newHTTPClient(cfg.conc)
	// Auth really is on where it should be, and every row's request passes.
	if err := probe(ctx, client, specs[1].gateway.Addr, "", http.StatusUnauthorized); err != nil {
		return fmt.Errorf("the auth-on gateway did not refuse a request without a key: %w", err)
	}
	for _, sp := range specs {
		if err := probe(ctx, client, sp.gateway.Addr, sp.key, http.StatusOK); err != nil {
			return fmt.Errorf("%s: %w", sp.name, err)
		}
	}
	before := make([]map[string]float64, len(specs))
	targets := make([]target, len(specs))
	for i, sp := range specs {
		var err error
		if before[i], err = vaultCalls(ctx, sp.gateway); err != nil {
			return err
		}
		targets[i] = target{url: sp.gateway.Addr, key: sp.key}
	}
	names := make([]string, len(specs))
	for i, sp := range specs {
		names[i] = sp.name
	}
	logf("rows %s (%s warm-up each, then %s each in %d interleaved rounds)", strings.Join(names, " | "), cfg.warmup, cfg.dur, cfg.rounds)
	l := &loader{client: client, conc: cfg.conc, warmup: cfg.warmup, dur: cfg.dur, rounds: cfg.rounds}
	res, err := l.runInterleaved(ctx, targets)
	if err != nil {
		return err
	}
	for i, sp := range specs {
		r := res[i]
		note := ""
		if r.errs > 0 {
			note = fmt.Sprintf("%d errors (first: %s)", r.errs, r.firstErr)
		}
		rep.addRow(row{name: sp.name, rps: r.rps(), p50: r.pct(50), p99: r.pct(99), note: note})
		logf("    %-40s %6.0f req/s, p50 %s, p99 %s, %d errors", sp.name, r.rps(), fmtDur(r.pct(50)), fmtDur(r.pct(99)), r.errs)
	}
	off := res[0].rps()
	ratio := func(i int) float64 {
		if off == 0 {
			return 0
		}
		return res[i].rps() / off
	}
	rep.add(atLeast("1. -fleet, max_uses key ÷ auth off (req/s)", ratio(2), 0.90, ""))
	rep.add(atLeast("2. -fleet, rate_limit key ÷ auth off (req/s)", ratio(3), 0.90, ""))
	rep.add(atLeast("3. -fleet, unmetered key ÷ auth off (req/s)", ratio(1), 0.95, ""))
	rep.add(outcome{name: "4. without -fleet, max_uses key ÷ auth off (req/s)", value: fmt.Sprintf("%.2f", ratio(4)), valid: off > 0, note: "every request asks Vault (before fleet mode)"})
	rep.add(outcome{name: "4a. without -fleet, unmetered key ÷ auth off (req/s)", value: fmt.Sprintf("%.2f", ratio(5)), valid: off > 0, note: "the 5 s cache without fleet mode (bench/load's ratio 5): what fleet mode's own cost is measured against"})

	for i, sp := range specs[1:] {
		i++
		after, err := vaultCalls(ctx, sp.gateway)
		if err != nil {
			return err
		}
		total := 0.0
		var parts []string
		for _, call := range slices.Sorted(maps.Keys(after)) {
			d := after[call] - before[i][call]
			total += d
			parts = append(parts, fmt.Sprintf("%s %.0f", call, d))
		}
		per10k := 0.0
		if res[i].sent > 0 {
			per10k = total / float64(res[i].sent) * 10_000
		}
		what := strings.TrimPrefix(sp.name, "gateway ")
		rep.add(outcome{
			name:  fmt.Sprintf("5%c. Vault calls per 10k requests, %s", 'a'+rune(i-1), what),
			value: fmt.Sprintf("%.1f", per10k), valid: res[i].sent > 0,
			note: fmt.Sprintf("%s for %d requests (warm-up included)", strings.Join(parts, ", "), res[i].sent),
		})
	}
	rep.note("throughput rows: one gateway process each, in front of the same in-process upstream, measured interleaved (%d rounds); keys: max_uses %d, rate_limit %d/s (neither binds)", cfg.rounds, bigUses, bigRate)
	rep.note("Vault calls: the gateway's apikey_gateway_vault_calls_total (verify, renew, feed, report) over the whole set, warm-up included, so that background feed polls and reports while the other rows ran count too")
	return nil
}

// revocationSection revokes keys one at a time while a poller per gateway sends the
// key; the time from the revoke's answer to each gateway's first refusal is recorded.
func revocationSection(ctx context.Context, e *benchEnv, rep *report) error {
	cfg := e.cfg
	gws, err := e.gateways(ctx, "revocation", cfg.replicas, true, true, "-fleet-cache-ttl", "60s", "-cache-ttl", "60s")
	if err != nil {
		return err
	}
	defer stopGateways(gws)
	keys := make([]issuedKey, cfg.revocations)
	for i := range keys {
		if keys[i], err = e.issue(ctx, rolePlain); err != nil {
			return err
		}
	}
	client := newHTTPClient(4)
	// A key still served giveUp after its revocation counts as missed; after two keys
	// missed at every gateway (no feed at all) the section stops instead of waiting out
	// the 60 s caches for every key.
	const giveUp = 15 * time.Second
	stoppedEarly := 0
	lat := make([][]time.Duration, len(gws))
	var revokeTook []time.Duration
	beforeReturn, missed := 0, 0
	unexpected := map[int]int{}
	logf("revoking %d keys one at a time, %d gateways polling each", len(keys), len(gws))
	for _, k := range keys {
		for _, g := range gws {
			if err := probe(ctx, client, g.Addr, k.key, http.StatusOK); err != nil {
				return fmt.Errorf("warming %s: %w", g.Name, err)
			}
		}
		seen := make([]time.Time, len(gws))
		statuses := make([]int, len(gws))
		var wg sync.WaitGroup
		polling := time.Now()
		for i, g := range gws {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil && time.Since(polling) < giveUp {
					st, err := get(ctx, client, g.Addr, k.key)
					if err == nil && st != http.StatusOK {
						seen[i], statuses[i] = time.Now(), st
						return
					}
					time.Sleep(2 * time.Millisecond)
				}
			}()
		}
		time.Sleep(20 * time.Millisecond) // the pollers are running
		sent := time.Now()
		if err := e.vault.Client.Sys().RevokeWithContext(ctx, k.leaseID); err != nil {
			return fmt.Errorf("revoking %s: %w", k.keyID, err)
		}
		returned := time.Now()
		revokeTook = append(revokeTook, returned.Sub(sent))
		wg.Wait()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		missedHere := 0
		for i := range gws {
			if seen[i].IsZero() {
				missed++
				missedHere++
				continue
			}
			if statuses[i] != http.StatusUnauthorized {
				unexpected[statuses[i]]++
			}
			d := seen[i].Sub(returned)
			if d < 0 {
				beforeReturn++
				d = 0
			}
			lat[i] = append(lat[i], d)
		}
		if missedHere == len(gws) {
			if stoppedEarly++; stoppedEarly >= 2 {
				rep.note("revocation: stopped after two keys still served by every gateway %s after their revocation", giveUp)
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	var all []time.Duration
	for i, g := range gws {
		slices.Sort(lat[i])
		all = append(all, lat[i]...)
		p99 := percentile(lat[i], 99)
		rep.addRow(row{name: "revoke → first refusal, " + g.Name, p50: percentile(lat[i], 50), p99: p99, note: fmt.Sprintf("%d keys", len(lat[i]))})
		o := outcome{name: "6. revoke → first refusal p99, " + g.Name, value: fmtDur(p99), target: "≤ 1s", pass: p99 <= time.Second && len(lat[i]) == len(keys), valid: true}
		if len(lat[i]) < len(keys) {
			o.value = "> " + giveUp.String()
			o.note = fmt.Sprintf("refused %d of %d keys within %s", len(lat[i]), len(keys), giveUp)
		}
		rep.add(o)
	}
	slices.Sort(all)
	slices.Sort(revokeTook)
	note := fmt.Sprintf("%d revocations × %d gateways; max %s", len(keys), len(gws), fmtDur(percentile(all, 100)))
	if missed > 0 {
		note += fmt.Sprintf("; %d never refused within %s", missed, giveUp)
	}
	overall := outcome{name: "6. revoke → first refusal p99, every replica", value: fmtDur(percentile(all, 99)), target: "≤ 1s", pass: missed == 0 && percentile(all, 99) <= time.Second, valid: true, note: note}
	if missed > 0 {
		overall.value = "> " + giveUp.String()
	}
	rep.add(overall)
	rep.note("revocation: %d gateways with -fleet-cache-ttl 60s and -cache-ttl 60s (without the feed a revoked key would pass for up to 60 s); a poller per gateway sends the key every 2 ms; latency is from the revoke's answer (sys/leases/revoke; p50 %s) to the first refusal; %d refusals came before the revoke's answer (counted as 0)", len(gws), fmtDur(percentile(revokeTook, 50)), beforeReturn)
	if len(unexpected) > 0 {
		rep.note("revocation: refusals other than 401: %v", unexpected)
	}
	return nil
}

// quotaSection hammers one max_uses key through every gateway past its quota.
func quotaSection(ctx context.Context, e *benchEnv, rep *report) error {
	cfg := e.cfg
	gws, err := e.gateways(ctx, "quota", cfg.replicas, true, true)
	if err != nil {
		return err
	}
	defer stopGateways(gws)
	k, err := e.issue(ctx, roleQuota)
	if err != nil {
		return err
	}
	workers := max(2, 2*cfg.conc/len(gws))
	client := newHTTPClient(workers)
	cnt := newCounts()
	hctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	began := time.Now()
	for _, g := range gws {
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for hctx.Err() == nil {
					st, err := get(hctx, client, g.Addr, k.key)
					if hctx.Err() != nil {
						return
					}
					cnt.add(st, err)
					if err != nil || st != http.StatusOK {
						// The refusal phase only has to go on, not to load the machine.
						time.Sleep(10 * time.Millisecond)
					}
				}
			}()
		}
	}
	logf("hammering a max_uses=%d key through %d gateways (%d connections each)", cfg.quota, len(gws), workers)
	const quiet, giveUp = 4 * time.Second, 3 * time.Minute
	var firstRefusal time.Time
	for {
		_, tooMany, _, lastOK := cnt.snapshot()
		if tooMany > 0 && firstRefusal.IsZero() {
			firstRefusal = time.Now()
		}
		if tooMany > 0 && time.Since(lastOK) >= quiet || time.Since(began) > giveUp || ctx.Err() != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	admitted := e.upstream.admitted(k.keyID)
	_, _, okAtFirst, _ := cnt.snapshot()
	calls := map[string]float64{}
	for _, g := range gws {
		c, err := vaultCalls(ctx, g)
		if err != nil {
			return err
		}
		for k, v := range c {
			calls[k] += v
		}
	}
	quota := int64(cfg.quota)
	var rps float64
	if !firstRefusal.IsZero() {
		rps = float64(okAtFirst) / firstRefusal.Sub(began).Seconds()
	}
	rep.addRow(row{name: fmt.Sprintf("max_uses=%d key through %d gateways, until its first refusal", quota, len(gws)), rps: rps, note: cnt.String()})
	rep.add(outcome{name: fmt.Sprintf("7a. admitted of max_uses=%d (upstream count)", quota), value: fmt.Sprint(admitted), target: fmt.Sprintf("≤ %d", quota), pass: admitted <= quota, valid: true,
		note: fmt.Sprintf("over-admission %d, under-admission %d", max(0, admitted-quota), max(0, quota-admitted))})
	if okAtFirst >= 0 {
		rep.add(atLeast("7b. share of the quota admitted before the first refusal", float64(okAtFirst)/float64(quota), 0.99, fmt.Sprintf("%d admitted before the first 429", okAtFirst)))
	} else {
		rep.add(outcome{name: "7b. share of the quota admitted before the first refusal", target: "≥ 0.99", note: "no refusal within " + giveUp.String()})
	}
	rep.add(outcome{name: "7c. share of the quota admitted in all", value: fmt.Sprintf("%.4f", float64(admitted)/float64(quota)), valid: true})
	rep.note("quota: %d gateways × %d keep-alive connections hammer until %s after the last admitted request; Vault calls of the 4 gateways: %s", len(gws), workers, quiet, fmtCalls(calls))
	return nil
}

// rateSection offers one rate-limited key more than its limit through every gateway,
// unevenly, for rateDur after rateWarmup, and reports the admitted rate ÷ the limit.
func rateSection(ctx context.Context, e *benchEnv, rep *report) error {
	cfg := e.cfg
	gws, err := e.gateways(ctx, "rate", cfg.replicas, true, true)
	if err != nil {
		return err
	}
	defer stopGateways(gws)
	k, err := e.issue(ctx, roleLimit)
	if err != nil {
		return err
	}
	n := len(gws)
	weightSum := float64(n * (n + 1) / 2)
	const workers = 16
	client := newHTTPClient(workers)
	began := time.Now()
	t0, t1 := began.Add(cfg.rateWarmup), began.Add(cfg.rateWarmup+cfg.rateDur)
	admitted := make([]atomic.Int64, n) // 200s answered within [t0, t1)
	refused := make([]atomic.Int64, n)
	other := make([]atomic.Int64, n)
	dropped := make([]atomic.Int64, n) // offered but every worker was busy
	offered := make([]float64, n)
	var wg sync.WaitGroup
	logf("offering %.0f req/s in all to a rate_limit=%g key through %d gateways for %s (+%s warm-up)", cfg.rateOffered, cfg.rateLimit, n, cfg.rateDur, cfg.rateWarmup)
	for i, g := range gws {
		offered[i] = cfg.rateOffered * float64(n-i) / weightSum
		tokens := make(chan struct{}, 256)
		wg.Add(1)
		go func() { // the pacer: open loop at offered[i]
			defer wg.Done()
			defer close(tokens)
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			var issued int64
			for now := range tick.C {
				if now.After(t1) || ctx.Err() != nil {
					return
				}
				due := int64(now.Sub(began).Seconds() * offered[i])
				for ; issued < due; issued++ {
					select {
					case tokens <- struct{}{}:
					default:
						dropped[i].Add(1)
					}
				}
			}
		}()
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range tokens {
					st, err := get(ctx, client, g.Addr, k.key)
					at := time.Now()
					if at.Before(t0) || !at.Before(t1) {
						continue
					}
					switch {
					case err == nil && st == http.StatusOK:
						admitted[i].Add(1)
					case err == nil && st == http.StatusTooManyRequests:
						refused[i].Add(1)
					default:
						other[i].Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var total, totalOther, totalDropped int64
	var parts []string
	for i, g := range gws {
		a := admitted[i].Load()
		total += a
		totalOther += other[i].Load()
		totalDropped += dropped[i].Load()
		parts = append(parts, fmt.Sprintf("%s offered %.0f/s, admitted %.1f/s", g.Name, offered[i], float64(a)/cfg.rateDur.Seconds()))
	}
	rate := float64(total) / cfg.rateDur.Seconds()
	ratio := rate / cfg.rateLimit
	note := fmt.Sprintf("%.1f req/s admitted of rate_limit=%g", rate, cfg.rateLimit)
	if totalOther > 0 || totalDropped > 0 {
		note += fmt.Sprintf("; %d errors, %d offered requests not sent (workers busy)", totalOther, totalDropped)
	}
	rep.addRow(row{name: fmt.Sprintf("rate_limit=%g key through %d gateways, admitted", cfg.rateLimit, n), rps: rate, note: fmt.Sprintf("offered %.0f req/s in all", cfg.rateOffered)})
	rep.add(outcome{name: "8. admitted rate ÷ rate_limit over " + cfg.rateDur.String(), value: fmt.Sprintf("%.2f", ratio), target: "0.90 – 1.10", pass: ratio >= 0.90 && ratio <= 1.10, valid: true, note: note})
	rep.note("rate: %s (after %s of warm-up, not counted)", strings.Join(parts, "; "), cfg.rateWarmup)
	return nil
}

func fmtCalls(calls map[string]float64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(calls)) {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, calls[k]))
	}
	return strings.Join(parts, ", ")
}

// burstSection: one gateway, a rate-limited key whose limit never binds
// (rate_limit=bigRate), used at a trickle and then at full speed: the share of the
// burst refused. A grant's share of the rate follows the demand the gateway last saw,
// so this measures how a holder's share keeps up with a sudden rise in traffic.
func burstSection(ctx context.Context, e *benchEnv, rep *report) error {
	cfg := e.cfg
	gws, err := e.gateways(ctx, "burst", 1, true, true)
	if err != nil {
		return err
	}
	defer stopGateways(gws)
	g := gws[0]
	k, err := e.issue(ctx, roleRate)
	if err != nil {
		return err
	}
	const trickle, trickleRate, burst = 6 * time.Second, 10, 3 * time.Second
	client := newHTTPClient(cfg.conc)
	logf("%d req/s for %s, then %s at %d connections, rate_limit=%d", trickleRate, trickle, burst, cfg.conc, bigRate)
	for end := time.Now().Add(trickle); time.Now().Before(end); time.Sleep(time.Second / trickleRate) {
		if _, err := get(ctx, client, g.Addr, k.key); err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	cnt := newCounts()
	end := time.Now().Add(burst)
	var wg sync.WaitGroup
	for range cfg.conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) && ctx.Err() == nil {
				cnt.add(get(ctx, client, g.Addr, k.key))
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	ok, tooMany, _, _ := cnt.snapshot()
	share := 0.0
	if ok+tooMany > 0 {
		share = float64(tooMany) / float64(ok+tooMany)
	}
	rep.addRow(row{name: fmt.Sprintf("rate_limit=%d key, burst after %s at %d req/s (one gateway)", bigRate, trickle, trickleRate), rps: float64(ok) / burst.Seconds(), note: cnt.String()})
	rep.add(outcome{name: "9. share of a burst refused (429) although its limit never binds", value: fmt.Sprintf("%.3f", share), target: "≤ 0.01", pass: share <= 0.01, valid: ok+tooMany > 0,
		note: fmt.Sprintf("%s closed loop at %d connections after %s at %d req/s", burst, cfg.conc, trickle, trickleRate)})
	return nil
}
