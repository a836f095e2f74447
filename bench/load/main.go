//go:build unix

// Command load is the load harness behind `make bench`.
//
// It starts a Vault dev server (in-memory storage) on a free loopback port with the
// plugin registered and enabled, writes a role, and drives plain keep-alive HTTP at a
// fixed concurrency against:
//
//   - apikey/verify with a valid key and with a malformed one (no storage access),
//   - auth/token/lookup (the alternative: Vault tokens as API keys),
//   - apikey/creds/<role> and auth/token/create (both create a lease),
//   - apikey/verify over 1k stored keys and over up to 100k stored keys,
//   - the apikey-gateway binary with auth on and off in front of an in-process upstream,
//   - nginx and Caddy (when installed) with forward auth (the configs of docs/proxies,
//     asking the gateway in forward-auth mode) and without auth, in front of the same
//     upstream,
//   - a no-op external plugin (bench/noopplugin, -noop-plugin) in the same Vault: a POST
//     with a fixed answer beside verify, and a lease read without storage (and one with a
//     storage write) beside issue, the floor of Vault's external-plugin path.
//
// Rows that a ratio compares are measured interleaved (-rounds segments each), so that a
// change in background load hits them alike. It prints the machine facts and one table
// (req/s, p50, p99 per row, then the ratios with their targets and PASS/MISS). Misses are
// reported, never a failure: the exit status is non-zero only when the harness itself
// could not run. Vault, its plugin process and the gateways run in their own process
// groups and are killed on exit and on Ctrl-C (a second Ctrl-C kills them at once).
//
// Latency is per request, from sending to reading the whole response, at a fixed
// concurrency (closed loop): p50 and p99 are exact over every measured request.
//
//	go run ./bench/load -vault "$(scripts/vault-bin.sh)" -plugin bin/vault-plugin-secrets-apikey \
//	    -gateway bin/apikey-gateway -noop-plugin bin/noopplugin [-c 8] [-d 5s] [-keys 100000] [-md bench.md]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	apikey "github.com/vault-apikey/vault-plugin-secrets-apikey"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/vaulttest"
)

type config struct {
	vaultBin      string
	pluginBin     string
	gatewayBin    string
	noopBin       string
	breakdown     bool
	pluginVersion string
	mount         string
	role          string
	conc          int
	dur           time.Duration
	warmup        time.Duration
	ttl           time.Duration
	baseKeys      int
	keys          int
	fillBudget    time.Duration
	mdPath        string
	rounds        int
	keepDir       bool
	nginxBin      string
	caddyBin      string
	proxiesDir    string
}

func parseFlags() config {
	var c config
	flag.StringVar(&c.vaultBin, "vault", "", "Vault server binary (default: $VAULT_BIN, else what scripts/vault-bin.sh prints)")
	flag.StringVar(&c.pluginBin, "plugin", "bin/vault-plugin-secrets-apikey", "plugin binary (make build)")
	flag.StringVar(&c.gatewayBin, "gateway", "bin/apikey-gateway", "apikey-gateway binary; empty or missing: the gateway rows are skipped")
	flag.StringVar(&c.noopBin, "noop-plugin", "", "no-op baseline plugin binary (go build -o bin/noopplugin ./bench/noopplugin); empty: the no-op rows and ratios 6-7 are skipped")
	flag.BoolVar(&c.breakdown, "issue-breakdown", false, "also measure the no-op lease with each of issue's costs added alone (MaxLeaseTTL call, issue-shaped response) and all together, beside issue")
	flag.StringVar(&c.pluginVersion, "plugin-version", "", "version to register the plugin with (default: "+apikey.Version+", the version compiled into this harness, which a make build plugin reports)")
	flag.StringVar(&c.mount, "mount", "apikey", "mount path of the engine")
	flag.StringVar(&c.role, "role", "bench", "role to issue keys from")
	flag.IntVar(&c.conc, "c", 8, "concurrent requests (one keep-alive connection each)")
	flag.DurationVar(&c.dur, "d", 5*time.Second, "measured duration of each row")
	flag.DurationVar(&c.warmup, "warmup", time.Second, "unrecorded warm-up before each row")
	flag.DurationVar(&c.ttl, "ttl", 30*time.Minute, "ttl and max_ttl of issued keys and created tokens (long enough that none expires during the run)")
	flag.IntVar(&c.baseKeys, "base-keys", 1000, "keys stored for the small verify row")
	flag.IntVar(&c.keys, "keys", 100_000, "keys stored for the large verify row (fewer if issuing them takes longer than -fill-budget)")
	flag.DurationVar(&c.fillBudget, "fill-budget", 4*time.Minute, "longest time spent issuing keys for the large verify row")
	flag.StringVar(&c.mdPath, "md", "", "also write the table as Markdown to this file")
	flag.IntVar(&c.rounds, "rounds", 5, "rows that a ratio compares take turns in this many segments of -d/rounds each")
	flag.BoolVar(&c.keepDir, "keep", false, "keep the work directory (Vault and gateway logs)")
	flag.StringVar(&c.nginxBin, "nginx", "", "nginx binary for ratio 9a (default: $NGINX_BIN, PATH, /usr/sbin/nginx; not found: the rows are skipped); off: skip")
	flag.StringVar(&c.caddyBin, "caddy", "", "caddy binary for ratio 9b (default: $CADDY_BIN, PATH, /usr/bin/caddy; not found: the rows are skipped); off: skip")
	flag.StringVar(&c.proxiesDir, "proxies-dir", "docs/proxies", "the proxy configs measured with forward auth (nginx.conf, Caddyfile)")
	flag.Parse()
	var bad string
	switch {
	case flag.NArg() > 0:
		bad = fmt.Sprintf("unexpected arguments %q", flag.Args())
	case c.conc < 1:
		bad = "-c must be at least 1"
	case c.dur <= 0 || c.warmup < 0 || c.fillBudget < 0:
		bad = "-d must be positive, -warmup and -fill-budget not negative"
	case c.baseKeys < 1 || c.keys < 0:
		bad = "-base-keys must be at least 1, -keys not negative"
	case c.rounds < 1:
		bad = "-rounds must be at least 1"
	case c.ttl < time.Minute:
		bad = "-ttl must be at least 1m"
	}
	if bad != "" {
		fmt.Fprintln(os.Stderr, "load:", bad)
		os.Exit(2)
	}
	return c
}

func main() {
	cfg := parseFlags()
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	interrupted := make(chan struct{})
	go func() {
		<-sigs
		close(interrupted)
		fmt.Fprintln(os.Stderr, "\nload: interrupted; stopping Vault and the gateways (again to force)")
		cancel()
		<-sigs
		cleanups.KillNow()
		os.Exit(130)
	}()
	err := run(ctx, cfg)
	cleanups.Run()
	select {
	case <-interrupted:
		os.Exit(130)
	default:
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "load: "+format+"\n", args...)
}

// keyStore collects issued keys from concurrent responses.
type keyStore struct {
	mu   sync.Mutex
	keys []string
}

func (s *keyStore) addFromCreds(body []byte) {
	var r struct {
		Data struct {
			APIKey string `json:"api_key"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &r) != nil || r.Data.APIKey == "" {
		return
	}
	s.mu.Lock()
	s.keys = append(s.keys, r.Data.APIKey)
	s.mu.Unlock()
}

func (s *keyStore) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.keys...)
}

func (s *keyStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys)
}

// spec is a row to measure: its name, its requests, and a substring that the probe's
// response body must contain.
type spec struct {
	name string
	req  request
	want string
}

// measureSet probes every spec once (status and body), then measures those that passed:
// one alone, several interleaved (runInterleaved).
func measureSet(ctx context.Context, l *loader, specs ...spec) ([]*row, error) {
	rows := make([]*row, len(specs))
	var live []int
	for i, sp := range specs {
		rows[i] = &row{name: sp.name}
		if err := l.probe(ctx, sp.req, sp.want); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			rows[i].note = "probe failed: " + err.Error()
			logf("%s: %s", sp.name, rows[i].note)
			continue
		}
		live = append(live, i)
	}
	if len(live) == 0 {
		return rows, nil
	}
	names := make([]string, len(live))
	reqs := make([]request, len(live))
	for j, i := range live {
		names[j], reqs[j] = specs[i].name, specs[i].req
	}
	var results []result
	if len(reqs) == 1 {
		logf("row %s (%s warm-up + %s)", names[0], l.warmup, l.dur)
		res, err := l.run(ctx, reqs[0])
		if err != nil {
			return nil, err
		}
		results = []result{res}
	} else {
		logf("rows %s (%s warm-up each, then %s each in %d interleaved rounds)", strings.Join(names, " | "), l.warmup, l.dur, max(1, l.rounds))
		var err error
		if results, err = l.runInterleaved(ctx, reqs); err != nil {
			return nil, err
		}
	}
	for j, i := range live {
		res := results[j]
		rows[i].res = &res
		logf("    %-36s %6.0f req/s, p50 %s, p99 %s, %d errors", rows[i].name, res.rps(), fmtDur(res.pct(50)), fmtDur(res.pct(99)), res.errs)
		if per := res.cpu.perRequest(res.n); per != "" {
			other, _ := res.cpu.other()
			logf("    %-36s CPU per request: %s; other processes: %.0f%% of the machine", "", per, 100*other)
		}
	}
	return rows, nil
}

func run(ctx context.Context, cfg config) error {
	began := time.Now()
	if err := resolveBinaries(&cfg); err != nil {
		return err
	}
	workDir, err := os.MkdirTemp("", "apikey-bench-")
	if err != nil {
		return err
	}
	cleanups.Cleanup(func() {
		if cfg.keepDir {
			logf("kept %s", workDir)
			return
		}
		_ = os.RemoveAll(workDir)
	})

	plugin, err := vaulttest.NewSecretsPlugin(vaulttest.PluginName, cfg.pluginBin, cfg.pluginVersion)
	if err != nil {
		return err
	}
	plugins := []vaulttest.Plugin{plugin}
	if cfg.noopBin != "" {
		noop, err := vaulttest.NewSecretsPlugin(noopPluginName, cfg.noopBin, "")
		if err != nil {
			return err
		}
		plugins = append(plugins, noop)
	}
	logf("starting Vault dev server (%s)", cfg.vaultBin)
	vs, err := startVault(ctx, cfg.vaultBin, workDir, plugins...)
	if err != nil {
		return err
	}
	// The verify cache must hold every key issued (the large row's, the creds row's), so
	// that every verify is a warm one.
	cacheSize := min(10_000_000, 2*cfg.keys+100_000)
	if err := vs.setup(ctx, plugin, cfg.mount, cfg.role, cfg.ttl, cacheSize); err != nil {
		return fmt.Errorf("%w; last lines of the Vault log:\n%s", err, vs.LogTail(20))
	}
	verifierTok, err := vs.verifierToken(ctx)
	if err != nil {
		return fmt.Errorf("creating a verifier token: %w", err)
	}
	logf("Vault v%s at %s, plugin %s enabled at %s/ (cache_size %d)", strings.TrimPrefix(vs.Version, "v"), vs.Addr, cfg.pluginVersion, cfg.mount, cacheSize)
	if len(plugins) > 1 {
		if err := vs.setupNoop(ctx, plugins[1]); err != nil {
			return fmt.Errorf("%w; last lines of the Vault log:\n%s", err, vs.LogTail(20))
		}
		logf("no-op plugin enabled at %s/", noopMount)
	}

	rep := &report{facts: machineFacts(vs.Version, cfg.pluginVersion, cfg)}
	ld := &loader{client: newHTTPClient(cfg.conc), conc: cfg.conc, warmup: cfg.warmup, dur: cfg.dur, rounds: cfg.rounds}
	vaultHeader := http.Header{"X-Vault-Token": {vs.RootToken}, "Content-Type": {"application/json"}}
	api := func(path string) string { return vs.Addr + "/v1/" + path }
	verifyReq := func(keys ...string) request {
		bodies := make([][]byte, len(keys))
		for i, k := range keys {
			bodies[i] = jsonBody(map[string]any{"api_key": k, "cost": 0})
		}
		return request{method: http.MethodPost, url: api(cfg.mount + "/verify"), header: vaultHeader, bodies: bodies, want: http.StatusOK}
	}
	const wantValid, wantMalformed = `"code":"VALID"`, `"code":"MALFORMED"`

	// The small key set.
	store := &keyStore{}
	credsReq := request{method: http.MethodGet, url: api(cfg.mount + "/creds/" + cfg.role), header: vaultHeader, want: http.StatusOK, onBody: store.addFromCreds}
	t := time.Now()
	if err := issue(ctx, ld, credsReq, cfg.conc, cfg.baseKeys, time.Now().Add(cfg.fillBudget)); err != nil {
		return err
	}
	baseKeys := store.all()
	logf("issued %d keys in %s", len(baseKeys), time.Since(t).Round(time.Millisecond))

	// 1. verify VALID ÷ verify MALFORMED (same path, no storage); 2. verify ÷ token lookup;
	// 6. verify ÷ the no-op POST, which gets the same body.
	valid := baseKeys[0]
	noopPOST := request{method: http.MethodPost, url: api(noopMount + "/answer"), header: vaultHeader, bodies: verifyReq(valid).bodies, want: http.StatusOK}
	set1, err := measureSet(ctx, ld, withNoop(cfg,
		spec{"verify VALID, 1 key", verifyReq(valid), wantValid},
		spec{"verify MALFORMED (no storage)", verifyReq(corrupt(valid)), wantMalformed},
		spec{"token lookup (auth/token/lookup)", request{method: http.MethodPost, url: api("auth/token/lookup"), header: vaultHeader, bodies: [][]byte{jsonBody(map[string]any{"token": verifierTok})}, want: http.StatusOK}, `"policies"`},
		spec{"no-op POST (" + noopMount + "/answer)", noopPOST, wantValid},
	)...)
	if err != nil {
		return err
	}
	rowValid, rowMalformed, rowLookup, rowNoopPOST := set1[0], set1[1], set1[2], skippedNoop(cfg, set1, 3, "no-op POST")

	// 8. verify with usage counting on ÷ off: the same key shape and the same body (two
	// tags and a client address, which counting records) on two mounts of the plugin, the
	// second with usage_counting=false.
	offMount := cfg.mount + "-counting-off"
	offKey, err := vs.setupCountingOff(ctx, plugin, offMount, cfg.role, cfg.ttl)
	if err != nil {
		return fmt.Errorf("%w; last lines of the Vault log:\n%s", err, vs.LogTail(20))
	}
	countedReq := func(mount, key string) request {
		body := jsonBody(map[string]any{"api_key": key, "cost": 0, "client_ip": "192.0.2.10", "tags": []string{"route=/orders", "region=eu"}})
		return request{method: http.MethodPost, url: api(mount + "/verify"), header: vaultHeader, bodies: [][]byte{body}, want: http.StatusOK}
	}
	set8, err := measureSet(ctx, ld,
		spec{"verify VALID + tags, counting on", countedReq(cfg.mount, valid), wantValid},
		spec{"verify VALID + tags, counting off", countedReq(offMount, offKey), wantValid},
	)
	if err != nil {
		return err
	}
	rowCountOn, rowCountOff := set8[0], set8[1]

	// 4a. verify over the small key set, while only it is stored.
	set4a, err := measureSet(ctx, ld, spec{fmt.Sprintf("verify VALID, random of %d keys", len(baseKeys)), verifyReq(baseKeys...), wantValid})
	if err != nil {
		return err
	}
	rowSmall := set4a[0]

	// 5. gateway auth on ÷ auth off, same upstream.
	rowGwOn, rowGwOff, err := gatewayRows(ctx, cfg, workDir, vs, verifierTok, valid)
	if err != nil {
		return err
	}

	// 9. each proxy with forward auth ÷ the same proxy without auth.
	proxyRowsOut, proxyRatios, err := proxyRows(ctx, cfg, workDir, vs, verifierTok, valid)
	if err != nil {
		return err
	}

	// 3. creds issue ÷ token create: both write a lease with the same ttl, and both
	// responses are parsed. The keys the creds row issues stay stored and count for 4b.
	tokenReq := request{method: http.MethodPost, url: api("auth/token/create"), header: vaultHeader, want: http.StatusOK, onBody: parseToken,
		bodies: [][]byte{jsonBody(map[string]any{
			"policies":          []string{verifierPolicy},
			"no_default_policy": true,
			"ttl":               cfg.ttl.String(),
			"explicit_max_ttl":  cfg.ttl.String(),
			"display_name":      "bench",
		})}}
	// 7. creds issue ÷ the no-op lease read: both return a lease with the same ttl, and
	// both responses are parsed. The no-op lease with one storage write of a key record's
	// size tells what of the gap is that write.
	noopLease := func(query string) request {
		return request{method: http.MethodGet, url: api(noopMount + "/lease" + query), header: vaultHeader, want: http.StatusOK, onBody: parseNoopLease}
	}
	specs3 := withNoop(cfg,
		spec{"creds issue (apikey/creds/" + cfg.role + ")", credsReq, `"api_key"`},
		spec{"token create (auth/token/create)", tokenReq, `"client_token"`},
		spec{"no-op lease (" + noopMount + "/lease)", noopLease(""), `"lease_id"`},
		spec{"no-op lease + 1 storage write", noopLease("?write=true"), `"lease_id"`},
	)
	if cfg.breakdown && cfg.noopBin != "" {
		specs3 = append(specs3,
			spec{"no-op lease + MaxLeaseTTL call", noopLease("?max_ttl=true"), `"lease_id"`},
			spec{"no-op lease, issue-shaped response", noopLease("?issue_shaped=true"), `"api_key"`},
			spec{"no-op lease + write + MaxLeaseTTL + issue-shaped", noopLease("?write=true&max_ttl=true&issue_shaped=true"), `"api_key"`},
		)
	}
	set3, err := measureSet(ctx, ld, specs3...)
	if err != nil {
		return err
	}
	rowCreds, rowToken := set3[0], set3[1]
	rowNoopLease, rowNoopWrite := skippedNoop(cfg, set3, 2, "no-op lease"), skippedNoop(cfg, set3, 3, "no-op lease + 1 storage write")
	breakdownRows := set3[min(4, len(set3)):]

	// 4b. issue real keys up to cfg.keys (within the budget), then verify over all of them.
	stored := store.len()
	var fillNote string
	if want := cfg.keys - stored; want > 0 {
		estimate := ""
		if rowCreds.res != nil && rowCreds.res.rps() > 0 {
			estimate = fmt.Sprintf("; about %s at the creds row's rate", (time.Duration(float64(want)/rowCreds.res.rps()) * time.Second).Round(time.Second))
		}
		logf("issuing %d more keys (%d stored; budget %s%s)", want, stored, cfg.fillBudget, estimate)
		t := time.Now()
		if err := issue(ctx, ld, credsReq, cfg.conc, want, time.Now().Add(cfg.fillBudget)); err != nil {
			return err
		}
		took := time.Since(t)
		issued := store.len() - stored
		rate := float64(issued) / took.Seconds()
		fillNote = fmt.Sprintf("issuing %d keys (%d were stored already) took %s: %.0f keys/s at concurrency %d", issued, stored, took.Round(time.Second), rate, cfg.conc)
		if store.len() < cfg.keys {
			fillNote += fmt.Sprintf("; the %d to reach %d would have taken about %s, over the %s budget, so N is %d",
				want, cfg.keys, (time.Duration(float64(want)/rate) * time.Second).Round(time.Second), cfg.fillBudget, store.len())
		}
		logf("%s", fillNote)
	}
	all := store.all()
	set4b, err := measureSet(ctx, ld, spec{fmt.Sprintf("verify VALID, random of %d keys", len(all)), verifyReq(all...), wantValid})
	if err != nil {
		return err
	}
	rowLarge := set4b[0]

	rep.rows = append([]*row{rowValid, rowMalformed, rowLookup, rowNoopPOST, rowCreds, rowToken, rowNoopLease, rowNoopWrite}, breakdownRows...)
	rep.rows = append(rep.rows, rowSmall, rowLarge, rowGwOn, rowGwOff)
	rep.rows = append(rep.rows, proxyRowsOut...)
	rep.rows = append(rep.rows, rowCountOn, rowCountOff)
	rep.ratios = []ratio{
		rpsRatio("1. verify VALID ÷ verify MALFORMED (req/s)", rowValid, rowMalformed, 0.95),
		rpsRatio("2. verify VALID ÷ token lookup (req/s)", rowValid, rowLookup, 0),
		rpsRatio("3. creds issue ÷ token create (req/s)", rowCreds, rowToken, 0.80),
		p50Ratio(fmt.Sprintf("4. verify p50, %d keys ÷ %d keys", len(all), len(baseKeys)), rowLarge, rowSmall, 1.20),
		rpsRatio("5. gateway auth on ÷ auth off (req/s)", rowGwOn, rowGwOff, 0.90),
		rpsRatio("6. verify VALID ÷ no-op POST (req/s)", rowValid, rowNoopPOST, 0),
		rpsRatio("7. creds issue ÷ no-op lease (req/s)", rowCreds, rowNoopLease, 0.90),
		rpsRatio("7a. creds issue ÷ no-op lease + 1 write (req/s)", rowCreds, rowNoopWrite, 0),
		rpsRatio("8. verify, usage counting on ÷ off (req/s)", rowCountOn, rowCountOff, 0.97),
	}
	rep.ratios = append(rep.ratios, proxyRatios...)
	for _, i := range []int{5, 6, 7} {
		if rep.ratios[i].note == "not measured" && cfg.noopBin == "" {
			rep.ratios[i].note = noopSkipped
		}
	}
	if len(all) < cfg.keys {
		rep.ratios[3].note = fmt.Sprintf("N=%d, not %d (see note)", len(all), cfg.keys)
	}
	if rowGwOn.res == nil {
		rep.ratios[4].note = rowGwOn.note
	}
	if fillNote != "" {
		rep.notes = append(rep.notes, fillNote)
	}
	for _, r := range append(append([]*row{rowValid, rowMalformed, rowLookup, rowNoopPOST, rowCreds, rowToken, rowNoopLease, rowNoopWrite}, append(breakdownRows, rowSmall, rowLarge)...), proxyRowsOut...) {
		if r.res != nil {
			if per := r.res.cpu.perRequest(r.res.n); per != "" {
				rep.notes = append(rep.notes, fmt.Sprintf("CPU per request, %s: %s", r.name, per))
			}
		}
	}
	rep.notes = append(rep.notes,
		fmt.Sprintf("rows compared by ratios 1-2 and 6, 3 and 7, 5, 8, 9a and 9b were measured interleaved (%d rounds each); 4 compares a row before and one after issuing the keys", max(1, cfg.rounds)),
		"ratios 9a and 9b: the proxy with the config of "+cfg.proxiesDir+" (a forward-auth request to one apikey-gateway -mode forward-auth per request, its cache warm) ÷ the same proxy as a plain reverse proxy, both in front of the same upstream; the proxies run "+fmt.Sprint(runtime.NumCPU())+" workers where they have a setting",
		fmt.Sprintf("keys and tokens have ttl = max_ttl = %s, so no lease expires during the run; verify sends cost 0 (no counting); the verify cache holds %d keys", cfg.ttl, cacheSize),
		"Vault, the plugin processes (engine and no-op), the gateway, the upstream and this load generator share the same CPUs. CPU/req: CPU time of Vault, the plugin processes and the gateway per request (not the load generator's); other CPU: share of the machine used by processes outside the benchmark while the row was measured",
		fmt.Sprintf("load average at end: %s; harness time %s", loadAvg(), time.Since(began).Round(time.Second)))
	rep.printText(os.Stdout)
	if cfg.mdPath != "" {
		if err := rep.writeMarkdown(cfg.mdPath); err != nil {
			return err
		}
		logf("wrote %s", cfg.mdPath)
	}
	for _, r := range rep.rows {
		if r.res == nil && !r.skipped && !strings.HasPrefix(r.note, "gateway not built") {
			return fmt.Errorf("row %q was not measured: %s", r.name, r.note)
		}
	}
	return nil
}

// noopSkipped is the note on the no-op rows and ratios when -noop-plugin is empty.
const noopSkipped = "skipped: no -noop-plugin (go build -o bin/noopplugin ./bench/noopplugin)"

// withNoop returns specs without its no-op rows (those whose URL is on the no-op mount)
// when there is no no-op plugin, so that the others are measured as before.
func withNoop(cfg config, specs ...spec) []spec {
	if cfg.noopBin != "" {
		return specs
	}
	var out []spec
	for _, sp := range specs {
		if !strings.Contains(sp.req.url, "/v1/"+noopMount+"/") {
			out = append(out, sp)
		}
	}
	return out
}

// skippedNoop returns rows[i], or, without a no-op plugin (withNoop left the row out), a
// row that says it was skipped.
func skippedNoop(cfg config, rows []*row, i int, name string) *row {
	if cfg.noopBin == "" {
		return &row{name: name, note: noopSkipped, skipped: true}
	}
	return rows[i]
}

// gatewayRows runs the apikey-gateway binary twice against the same in-process upstream,
// with auth on (a verifier token; the key's verify result is cached) and off, and
// measures both with the same request: a GET with the key in Authorization.
func gatewayRows(ctx context.Context, cfg config, workDir string, vs *vaultServer, verifierTok, key string) (on, off *row, err error) {
	on, off = &row{name: "gateway, auth on (warm cache)"}, &row{name: "gateway, auth off"}
	if note := gatewayMissing(cfg.gatewayBin); note != "" {
		on.note, off.note = note, note
		logf("gateway rows skipped: %s", note)
		return on, off, nil
	}
	upstream, err := startUpstream()
	if err != nil {
		return nil, nil, err
	}
	gwOn, errOn := startGateway(ctx, cfg.gatewayBin, "gateway-auth-on", workDir, upstream, cfg.mount, true, vs, verifierTok)
	if gwOn != nil {
		defer stopGateway(gwOn)
	}
	gwOff, errOff := startGateway(ctx, cfg.gatewayBin, "gateway-auth-off", workDir, upstream, cfg.mount, false, vs, "")
	if gwOff != nil {
		defer stopGateway(gwOff)
	}
	if ctx.Err() != nil {
		return nil, nil, ctx.Err()
	}
	if errOn != nil || errOff != nil {
		note := "gateway did not start: " + errors.Join(errOn, errOff).Error()
		on.note, off.note = note, note
		logf("%s", note)
		return on, off, nil
	}
	onURL, offURL := gwOn.Addr, gwOff.Addr
	l := &loader{client: newHTTPClient(cfg.conc), conc: cfg.conc, warmup: cfg.warmup, dur: cfg.dur, rounds: cfg.rounds}
	// Auth really is on: a request without a key is refused.
	var refusal string
	if err := l.probe(ctx, request{method: http.MethodGet, url: onURL + "/bench", want: http.StatusUnauthorized}, ""); err != nil {
		refusal = "the auth-on gateway did not refuse a request without a key: " + err.Error()
	}
	gwReq := func(base string) request {
		return request{method: http.MethodGet, url: base + "/bench", header: http.Header{"Authorization": {"Bearer " + key}}, want: http.StatusOK}
	}
	rows, err := measureSet(ctx, l, spec{on.name, gwReq(onURL), "ok"}, spec{off.name, gwReq(offURL), "ok"})
	if err != nil {
		return nil, nil, err
	}
	on, off = rows[0], rows[1]
	if refusal != "" {
		on.note = strings.TrimPrefix(on.note+"; "+refusal, "; ")
	}
	return on, off, nil
}

func jsonBody(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// parseToken parses a token create response like addFromCreds parses a creds response,
// so that both rows cost the load generator the same.
func parseToken(body []byte) {
	var r struct {
		Auth struct {
			ClientToken string `json:"client_token"`
		} `json:"auth"`
	}
	_ = json.Unmarshal(body, &r)
}

// parseNoopLease parses a no-op lease response as addFromCreds parses a creds response,
// without keeping anything, so that issue and its baseline cost the load generator alike.
func parseNoopLease(body []byte) {
	var r struct {
		Data struct {
			APIKey string `json:"api_key"`
		} `json:"data"`
	}
	_ = json.Unmarshal(body, &r)
}

// resolveBinaries fills in the Vault binary and the plugin version and checks the paths.
func resolveBinaries(cfg *config) error {
	if cfg.vaultBin == "" {
		cfg.vaultBin = os.Getenv("VAULT_BIN")
	}
	if cfg.vaultBin == "" {
		out, err := exec.Command("scripts/vault-bin.sh").Output()
		if err != nil {
			return fmt.Errorf("no -vault and scripts/vault-bin.sh failed: %w", err)
		}
		cfg.vaultBin = strings.TrimSpace(string(out))
	}
	for _, p := range []*string{&cfg.vaultBin, &cfg.pluginBin} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		if st, err := os.Stat(abs); err != nil || st.IsDir() {
			return fmt.Errorf("%s: not a file (make build; scripts/vault-bin.sh)", *p)
		}
		*p = abs
	}
	for _, p := range []*string{&cfg.gatewayBin, &cfg.noopBin} {
		if *p != "" {
			if abs, err := filepath.Abs(*p); err == nil {
				*p = abs
			}
		}
	}
	if cfg.pluginVersion == "" {
		cfg.pluginVersion = apikey.Version
	}
	return nil
}

// gatewayMissing says why the gateway rows cannot run, or "".
func gatewayMissing(bin string) string {
	if bin == "" {
		return "gateway not built (cmd/apikey-gateway does not build)"
	}
	if st, err := os.Stat(bin); err != nil || st.IsDir() {
		return "gateway not built (" + bin + " not found)"
	}
	return ""
}

// corrupt returns key with its last character changed: same length and charset, wrong
// checksum, so verify answers MALFORMED without reading storage.
func corrupt(key string) string {
	last := key[len(key)-1]
	repl := byte('A')
	if last == 'A' {
		repl = 'B'
	}
	return key[:len(key)-1] + string(repl)
}

// issue issues n keys with req (whose onBody stores them) from conc workers, stopping at
// the deadline.
func issue(ctx context.Context, l *loader, req request, conc, n int, deadline time.Time) error {
	done, errs, firstErr, err := l.issueUntil(ctx, req, conc, n, deadline)
	if err != nil {
		return err
	}
	if errs > 0 {
		logf("issuing keys: %d errors (first: %s)", errs, firstErr)
	}
	if done == 0 {
		return fmt.Errorf("no key issued: %s", firstErr)
	}
	return nil
}
