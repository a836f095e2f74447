//go:build unix

// Command fleet is the fleet-mode benchmark behind `make bench-fleet` (part of
// `make bench`): the apikey-gateway with -fleet (quota grants, the change feed, usage
// reports) against a real Vault with the plugin.
//
// It starts a Vault dev server on a free loopback port with the plugin registered and
// enabled at apikey/, writes the roles it needs and a token with only
// policies/verifier.hcl, runs gateway processes in front of an in-process upstream, and
// drives them from keep-alive clients in this process. Sections (-sections):
//
//   - throughput: one gateway each with auth off, an unmetered key, a max_uses key, a
//     rate-limited key (limits that do not bind) and the max_uses key without -fleet,
//     measured interleaved at a fixed concurrency (closed loop); the ratios to auth off,
//     and Vault calls per 10k gateway requests from apikey_gateway_vault_calls_total;
//   - revocation: -replicas gateways with a 60 s positive cache; -revocations keys
//     revoked one at a time while a poller per gateway sends the key; the time from the
//     revoke's answer to the first refusal at each gateway, p50 and p99 per replica;
//   - quota: one max_uses=-quota key hammered past its quota through -replicas gateways:
//     admitted (never more than the quota) and the share of the quota admitted before
//     the first refusal;
//   - rate: one rate-limited key (-rate-limit) through -replicas gateways for
//     -rate-duration, offered -rate-offered req/s in all, unevenly (4:3:2:1...): the
//     admitted rate ÷ the limit;
//   - burst: one gateway and a rate-limited key whose limit never binds, used at 10
//     req/s and then at full speed: the share of the burst refused (a grant's share of
//     the rate has to keep up with the holder's demand).
//
// It prints one report: rows, then results with their targets and PASS/MISS. Misses are
// reported, never a failure: the exit status is non-zero only when the harness itself
// could not run. Vault, its plugin process and the gateways run in process groups of
// their own and are killed on exit and on Ctrl-C (a second Ctrl-C kills them at once).
//
//	go run ./bench/fleet -vault "$(scripts/vault-bin.sh)" -plugin bin/vault-plugin-secrets-apikey \
//	    -gateway bin/apikey-gateway [-c 8] [-d 5s] [-replicas 4] [-md fleet.md]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	apikey "github.com/vault-apikey/vault-plugin-secrets-apikey"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/vaulttest"
)

// cleanups holds the clean-up of everything run starts; main runs it on return, and a
// second Ctrl-C kills the processes without waiting.
var cleanups vaulttest.Cleanups

type config struct {
	vaultBin      string
	pluginBin     string
	gatewayBin    string
	policiesDir   string
	pluginVersion string
	sections      map[string]bool

	conc   int
	dur    time.Duration
	warmup time.Duration
	rounds int

	replicas    int
	revocations int
	quota       int
	rateLimit   float64
	rateOffered float64
	rateDur     time.Duration
	rateWarmup  time.Duration

	mdPath  string
	keepDir bool
}

var allSections = []string{"throughput", "revocation", "quota", "rate", "burst"}

func parseFlags() config {
	var c config
	var sections string
	flag.StringVar(&c.vaultBin, "vault", "", "Vault server binary (default: $VAULT_BIN, else what scripts/vault-bin.sh prints)")
	flag.StringVar(&c.pluginBin, "plugin", "bin/vault-plugin-secrets-apikey", "plugin binary (make build)")
	flag.StringVar(&c.gatewayBin, "gateway", "bin/apikey-gateway", "apikey-gateway binary (make build)")
	flag.StringVar(&c.policiesDir, "policies", "policies", "directory of the shipped policies (verifier.hcl is the gateways' policy)")
	flag.StringVar(&c.pluginVersion, "plugin-version", "", "version to register the plugin with (default: "+apikey.Version+", what a make build plugin reports)")
	flag.StringVar(&sections, "sections", strings.Join(allSections, ","), "comma-separated sections to run: "+strings.Join(allSections, ", "))
	flag.IntVar(&c.conc, "c", 8, "throughput: concurrent requests (one keep-alive connection each)")
	flag.DurationVar(&c.dur, "d", 5*time.Second, "throughput: measured duration of each row")
	flag.DurationVar(&c.warmup, "warmup", time.Second, "throughput: unrecorded warm-up before each row")
	flag.IntVar(&c.rounds, "rounds", 5, "throughput: rows take turns in this many segments of -d/rounds each")
	flag.IntVar(&c.replicas, "replicas", 4, "gateway processes of the revocation, quota and rate sections")
	flag.IntVar(&c.revocations, "revocations", 40, "keys revoked one at a time in the revocation section")
	flag.IntVar(&c.quota, "quota", 10000, "max_uses of the key of the quota section")
	flag.Float64Var(&c.rateLimit, "rate-limit", 200, "rate_limit (req/s) of the key of the rate section")
	flag.Float64Var(&c.rateOffered, "rate-offered", 1000, "req/s offered in all to the rate section's gateways (split 4:3:2:1...)")
	flag.DurationVar(&c.rateDur, "rate-duration", 30*time.Second, "measured duration of the rate section")
	flag.DurationVar(&c.rateWarmup, "rate-warmup", 5*time.Second, "unrecorded start of the rate section (shares converge)")
	flag.StringVar(&c.mdPath, "md", "", "also write the report as Markdown to this file")
	flag.BoolVar(&c.keepDir, "keep", false, "keep the work directory (Vault and gateway logs)")
	flag.Parse()
	c.sections = map[string]bool{}
	var bad string
	for _, s := range strings.Split(sections, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		known := false
		for _, a := range allSections {
			known = known || a == s
		}
		if !known {
			bad = fmt.Sprintf("-sections: unknown section %q", s)
		}
		c.sections[s] = true
	}
	switch {
	case bad != "":
	case flag.NArg() > 0:
		bad = fmt.Sprintf("unexpected arguments %q", flag.Args())
	case len(c.sections) == 0:
		bad = "-sections names no section"
	case c.conc < 1 || c.rounds < 1:
		bad = "-c and -rounds must be at least 1"
	case c.dur <= 0 || c.warmup < 0 || c.rateDur <= 0 || c.rateWarmup < 0:
		bad = "-d and -rate-duration must be positive, -warmup and -rate-warmup not negative"
	case c.replicas < 1 || c.revocations < 1 || c.quota < 1:
		bad = "-replicas, -revocations and -quota must be at least 1"
	case c.rateLimit <= 0 || c.rateOffered <= 0:
		bad = "-rate-limit and -rate-offered must be positive"
	}
	if bad != "" {
		fmt.Fprintln(os.Stderr, "fleet:", bad)
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
		fmt.Fprintln(os.Stderr, "\nfleet: interrupted; stopping Vault and the gateways (again to force)")
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
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "fleet: "+format+"\n", args...)
}

func run(ctx context.Context, cfg config) error {
	began := time.Now()
	if err := resolveBinaries(&cfg); err != nil {
		return err
	}
	workDir, err := os.MkdirTemp("", "apikey-bench-fleet-")
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
	env, err := setup(ctx, cfg, workDir)
	if err != nil {
		return err
	}
	rep := &report{facts: machineFacts(env.vault.Version, cfg)}
	steps := []struct {
		name string
		run  func(context.Context, *benchEnv, *report) error
	}{
		{"throughput", throughputSection},
		{"revocation", revocationSection},
		{"quota", quotaSection},
		{"rate", rateSection},
		{"burst", burstSection},
	}
	for _, st := range steps {
		if !cfg.sections[st.name] {
			continue
		}
		t := time.Now()
		logf("section %s", st.name)
		if err := st.run(ctx, env, rep); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s: %w", st.name, err)
		}
		logf("section %s took %s", st.name, time.Since(t).Round(time.Second))
	}
	rep.notes = append(rep.notes, fmt.Sprintf("load average at end: %s; harness time %s", loadAvg(), time.Since(began).Round(time.Second)))
	rep.printText(os.Stdout)
	if cfg.mdPath != "" {
		if err := rep.writeMarkdown(cfg.mdPath); err != nil {
			return err
		}
		logf("wrote %s", cfg.mdPath)
	}
	return nil
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
	for _, p := range []*string{&cfg.vaultBin, &cfg.pluginBin, &cfg.gatewayBin} {
		abs, err := vaulttest.Executable(*p)
		if err != nil {
			return fmt.Errorf("%w (make build; scripts/vault-bin.sh)", err)
		}
		*p = abs
	}
	st, err := os.Stat(filepath.Join(cfg.policiesDir, "verifier.hcl"))
	if err != nil || st.IsDir() {
		return errors.New("-policies: no verifier.hcl in " + cfg.policiesDir + " (run from the repository root)")
	}
	if cfg.pluginVersion == "" {
		cfg.pluginVersion = apikey.Version
	}
	return nil
}
