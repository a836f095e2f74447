//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/vaulttest"
)

// mount is where the engine is enabled: policies/verifier.hcl names apikey/.
const mount = "apikey"

// verifierPolicy is the name policies/verifier.hcl is written under.
const verifierPolicy = "apikey-verifier"

// Roles the sections issue from (ttl = max_ttl = keyTTL, so no key expires meanwhile).
const (
	rolePlain = "plain" // no limits
	roleUses  = "uses"  // max_uses that never binds
	roleRate  = "rate"  // rate_limit that never binds
	roleQuota = "quota" // max_uses = -quota
	roleLimit = "limit" // rate_limit = -rate-limit
	keyTTL    = "2h"
	// bigUses and bigRate are limits no row reaches, so that the rows measure the cost
	// of metering, not refusals.
	bigUses = 1_000_000_000
	bigRate = 1_000_000
)

// benchEnv is what every section runs against.
type benchEnv struct {
	cfg      config
	workDir  string
	vault    *vaulttest.Server
	token    string // verifier token of the gateways
	upstream *upstream
}

// issuedKey is a key from creds/<role>.
type issuedKey struct {
	key, keyID, leaseID string
}

func setup(ctx context.Context, cfg config, workDir string) (*benchEnv, error) {
	plugin, err := vaulttest.NewSecretsPlugin(vaulttest.PluginName, cfg.pluginBin, cfg.pluginVersion)
	if err != nil {
		return nil, err
	}
	logf("starting Vault dev server (%s)", cfg.vaultBin)
	s, err := vaulttest.NewServer(vaulttest.ServerOptions{
		VaultBin: cfg.vaultBin,
		Dir:      workDir,
		Dev:      true,
		Plugins:  []vaulttest.Plugin{plugin},
		// Vault's debug log would cost CPU in the measured rows.
		LogLevel:     "warn",
		ReadyTimeout: 60 * time.Second,
		Cleaner:      &cleanups,
	})
	if err != nil {
		return nil, err
	}
	if err := s.StartDev(ctx); err != nil {
		return nil, fmt.Errorf("%w; last lines of %s:\n%s", err, s.LogPath, s.LogTail(20))
	}
	fail := func(what string, err error) error {
		return fmt.Errorf("%s: %w; last lines of the Vault log:\n%s", what, err, s.LogTail(20))
	}
	if err := s.RegisterPlugin(ctx, plugin); err != nil {
		return nil, fail("registering the plugin", err)
	}
	if err := s.EnablePlugin(ctx, plugin.Name, mount); err != nil {
		return nil, fail("enabling the plugin", err)
	}
	if err := s.WaitPluginReady(ctx, mount); err != nil {
		return nil, fail("the plugin does not answer", err)
	}
	roles := map[string]map[string]any{
		rolePlain: {},
		roleUses:  {"max_uses": bigUses},
		roleRate:  {"rate_limit": bigRate},
		roleQuota: {"max_uses": cfg.quota},
		roleLimit: {"rate_limit": cfg.rateLimit},
	}
	for name, fields := range roles {
		data := map[string]any{"scopes": "bench", "ttl": keyTTL, "max_ttl": keyTTL}
		for k, v := range fields {
			data[k] = v
		}
		if _, err := s.Client.Logical().WriteWithContext(ctx, mount+"/roles/"+name, data); err != nil {
			return nil, fail("writing role "+name, err)
		}
	}
	policy, err := os.ReadFile(filepath.Join(cfg.policiesDir, "verifier.hcl"))
	if err != nil {
		return nil, err
	}
	if err := s.Client.Sys().PutPolicyWithContext(ctx, verifierPolicy, string(policy)); err != nil {
		return nil, fail("writing the verifier policy", err)
	}
	sec, err := s.Client.Auth().Token().CreateWithContext(ctx, &api.TokenCreateRequest{
		Policies:        []string{verifierPolicy},
		NoDefaultPolicy: true,
		Period:          "1h",
		DisplayName:     "bench-fleet-gateway",
	})
	if err != nil {
		return nil, fail("creating the verifier token", err)
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return nil, errors.New("token create returned no token")
	}
	up, err := startUpstream()
	if err != nil {
		return nil, err
	}
	logf("Vault v%s at %s, plugin %s at %s/", s.Version, s.Addr, cfg.pluginVersion, mount)
	return &benchEnv{cfg: cfg, workDir: workDir, vault: s, token: sec.Auth.ClientToken, upstream: up}, nil
}

// issue issues a key of role.
func (e *benchEnv) issue(ctx context.Context, role string) (issuedKey, error) {
	sec, err := e.vault.Client.Logical().ReadWithContext(ctx, mount+"/creds/"+role)
	if err != nil {
		return issuedKey{}, fmt.Errorf("issuing a key of %s: %w", role, err)
	}
	if sec == nil || sec.Data == nil {
		return issuedKey{}, fmt.Errorf("issuing a key of %s: empty answer", role)
	}
	k := issuedKey{leaseID: sec.LeaseID}
	k.key, _ = sec.Data["api_key"].(string)
	k.keyID, _ = sec.Data["key_id"].(string)
	if k.key == "" || k.keyID == "" || k.leaseID == "" {
		return issuedKey{}, fmt.Errorf("issuing a key of %s: no api_key, key_id or lease", role)
	}
	return k, nil
}

// gateways starts n gateway processes named name-<i> in front of the upstream, with
// their metrics listeners: auth on with the verifier token, fleet mode or not, and
// extra flags. The failure budget is off: pollers see many refusals by design.
func (e *benchEnv) gateways(ctx context.Context, name string, n int, auth, fleet bool, extra ...string) ([]*vaulttest.Gateway, error) {
	args := []string{
		"-upstream", e.upstream.url,
		"-mount", mount,
		"-log-level", "warn", // the gateway logs every request at info
		"-failure-budget", "-1",
		"-auth=" + strconv.FormatBool(auth),
	}
	if fleet {
		args = append(args, "-fleet")
	}
	opts := vaulttest.GatewayOptions{
		Bin:             e.cfg.gatewayBin,
		Name:            name,
		Dir:             e.workDir,
		Args:            append(args, extra...),
		MetricsListener: true,
		ReadyTimeout:    20 * time.Second,
		Cleaner:         &cleanups,
	}
	if auth {
		opts.VaultAddr, opts.VaultToken = e.vault.Addr, e.token
	}
	gws, err := vaulttest.StartGateways(ctx, n, opts)
	if err != nil {
		return nil, err
	}
	return gws, nil
}

// stopGateways stops gateways gracefully (SIGTERM: fleet mode returns its grants and
// sends its last report), killing any still running after 10 s.
func stopGateways(gws []*vaulttest.Gateway) {
	var wg sync.WaitGroup
	for _, g := range gws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.Stop(10 * time.Second); err != nil {
				logf("%v", err)
			}
		}()
	}
	wg.Wait()
}

// upstream serves 200 "ok" on a free loopback port and counts requests by the key_id
// the gateway names in X-Api-Key-Id: what was admitted, whatever the clients saw.
type upstream struct {
	url    string
	counts sync.Map // key_id -> *atomic.Int64
}

func startUpstream() (*upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &upstream{url: "http://" + ln.Addr().String()}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u.counter(r.Header.Get("X-Api-Key-Id")).Add(1)
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte("ok"))
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	cleanups.Cleanup(func() { _ = srv.Close() })
	return u, nil
}

func (u *upstream) counter(keyID string) *atomic.Int64 {
	if c, ok := u.counts.Load(keyID); ok {
		return c.(*atomic.Int64)
	}
	c, _ := u.counts.LoadOrStore(keyID, new(atomic.Int64))
	return c.(*atomic.Int64)
}

// admitted is how many requests with keyID reached the upstream.
func (u *upstream) admitted(keyID string) int64 { return u.counter(keyID).Load() }

// vaultCalls is one scrape of a gateway's calls to Vault by kind (verify, renew, feed,
// report). A gateway without apikey_gateway_vault_calls_total (no fleet support) has its
// verify calls counted from the verify latency histogram.
func vaultCalls(ctx context.Context, g *vaulttest.Gateway) (map[string]float64, error) {
	m, err := g.Metrics(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, call := range []string{"verify", "renew", "feed", "report"} {
		if v, ok := m[`apikey_gateway_vault_calls_total{call="`+call+`"}`]; ok {
			out[call] = v
		}
	}
	if len(out) == 0 {
		out["verify"] = m.Sum("apikey_gateway_verify_duration_seconds_count")
	}
	return out, nil
}
