//go:build unix

package main

// Ratios 9a and 9b: each proxy with forward auth (the config of docs/proxies, asking the
// gateway in forward-auth mode, warm cache) ÷ the same proxy straight to the upstream.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/vaulttest"
)

// proxyBench is one proxy measured with and without forward auth.
type proxyBench struct {
	name  string // "nginx", "caddy"
	bin   string // -nginx / -caddy: "" finds it (vaulttest.ProxyBinary), "off" skips
	env   string // the variable ProxyBinary reads
	docs  string // its config in -proxies-dir
	start func(context.Context, vaulttest.ProxyOptions) (*vaulttest.Proxy, error)
	// plain renders the same proxy without auth, straight to upstream.
	plain func(listen, upstream string) string
}

func proxyBenches(cfg config) []proxyBench {
	return []proxyBench{
		{name: "nginx", bin: cfg.nginxBin, env: "NGINX_BIN", docs: "nginx.conf", start: vaulttest.StartNginx, plain: plainNginx},
		{name: "caddy", bin: cfg.caddyBin, env: "CADDY_BIN", docs: "Caddyfile", start: vaulttest.StartCaddy, plain: plainCaddy},
	}
}

// plainNginx is nginx as a reverse proxy without auth, with the upstream connection
// settings of docs/proxies/nginx.conf.
func plainNginx(listen, upstream string) string {
	return fmt.Sprintf(`upstream bench_upstream {
    server %s;
    keepalive 32;
}
server {
    listen %s;
    location / {
        proxy_pass http://bench_upstream;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }
}
`, upstream, listen)
}

// plainCaddy is Caddy as a reverse proxy without auth.
func plainCaddy(listen, upstream string) string {
	return fmt.Sprintf(`{
	admin off
}

http://%s {
	reverse_proxy %s
}
`, listen, upstream)
}

// proxyRows measures, for each proxy found, a GET with a valid key through the proxy
// with forward auth (docs/proxies config, one gateway in forward-auth mode for both,
// its cache warm) and through the same proxy without auth, interleaved, and returns the
// rows (two per proxy) and ratios 9a, 9b. A proxy that is not installed is skipped with
// a note; one that does not start leaves its rows unmeasured.
func proxyRows(ctx context.Context, cfg config, workDir string, vs *vaultServer, verifierTok, key string) ([]*row, []ratio, error) {
	benches := proxyBenches(cfg)
	var rows []*row
	var ratios []ratio
	onRows := map[string]*row{}
	offRows := map[string]*row{}
	for _, pb := range benches {
		on := &row{name: pb.name + " + forward auth (warm cache)"}
		off := &row{name: pb.name + ", no auth"}
		onRows[pb.name], offRows[pb.name] = on, off
		rows = append(rows, on, off)
	}
	ratioFor := func(label, name string) ratio {
		r := rpsRatio(fmt.Sprintf("%s. %s forward auth ÷ %s alone (req/s)", label, name, name), onRows[name], offRows[name], 0.85)
		if !r.valid && onRows[name].note != "" {
			r.note = onRows[name].note
		}
		return r
	}
	labels := map[string]string{"nginx": "9a", "caddy": "9b"}
	finish := func() ([]*row, []ratio, error) {
		for _, pb := range benches {
			ratios = append(ratios, ratioFor(labels[pb.name], pb.name))
		}
		return rows, ratios, nil
	}
	if note := gatewayMissing(cfg.gatewayBin); note != "" {
		for _, r := range rows {
			r.note = note
		}
		logf("proxy rows skipped: %s", note)
		return finish()
	}
	var live []proxyBench
	for _, pb := range benches {
		on, off := onRows[pb.name], offRows[pb.name]
		if pb.bin == "off" {
			on.note, on.skipped, off.note, off.skipped = "skipped: -"+pb.name+"=off", true, "skipped: -"+pb.name+"=off", true
			continue
		}
		bin := pb.bin
		var err error
		if bin == "" {
			bin, err = vaulttest.ProxyBinary(pb.name, pb.env)
		} else {
			bin, err = vaulttest.Executable(bin)
		}
		if err != nil {
			note := "skipped: " + err.Error()
			on.note, on.skipped, off.note, off.skipped = note, true, note, true
			logf("%s rows %s", pb.name, note)
			continue
		}
		pb.bin = bin
		live = append(live, pb)
	}
	if len(live) == 0 {
		return finish()
	}

	upstream, err := startUpstream()
	if err != nil {
		return nil, nil, err
	}
	upstreamHost := strings.TrimPrefix(upstream, "http://")
	gw, err := vaulttest.StartGateway(ctx, vaulttest.GatewayOptions{
		Bin:  cfg.gatewayBin,
		Name: "gateway-forward-auth",
		Dir:  workDir,
		Args: []string{
			"-mode", "forward-auth",
			"-trusted-proxies", "127.0.0.1",
			"-mount", cfg.mount,
			"-log-level", "warn",
		},
		VaultAddr:    vs.Addr,
		VaultToken:   verifierTok,
		ReadyTimeout: 20 * time.Second,
		Cleaner:      &cleanups,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		note := "the forward-auth gateway did not start: " + err.Error()
		for _, r := range rows {
			if !r.skipped {
				r.note = note
			}
		}
		logf("%s", note)
		return finish()
	}
	defer stopGateway(gw)
	gwHost := strings.TrimPrefix(gw.Addr, "http://")

	for _, pb := range live {
		on, off := onRows[pb.name], offRows[pb.name]
		docs, err := os.ReadFile(filepath.Join(cfg.proxiesDir, pb.docs))
		if err != nil {
			on.note, off.note = "no config: "+err.Error(), "no config: "+err.Error()
			continue
		}
		opts := func(name string, render func(listen string) (string, error)) vaulttest.ProxyOptions {
			dir := filepath.Join(workDir, name)
			return vaulttest.ProxyOptions{Bin: pb.bin, Name: name, Dir: dir, Config: render, Workers: runtime.NumCPU(), Cleaner: &cleanups}
		}
		pAuth, errAuth := pb.start(ctx, opts(pb.name+"-auth", func(listen string) (string, error) {
			return vaulttest.RenderDocsConfig(string(docs), map[string]string{
				vaulttest.DocsProxyAddr:    listen,
				vaulttest.DocsGatewayAddr:  gwHost,
				vaulttest.DocsUpstreamAddr: upstreamHost,
			})
		}))
		pPlain, errPlain := pb.start(ctx, opts(pb.name+"-plain", func(listen string) (string, error) {
			return pb.plain(listen, upstreamHost), nil
		}))
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		if errAuth != nil || errPlain != nil {
			note := pb.name + " did not start: " + errors.Join(errAuth, errPlain).Error()
			on.note, off.note = note, note
			logf("%s", note)
			stopProxy(pAuth)
			stopProxy(pPlain)
			continue
		}
		l := &loader{client: newHTTPClient(cfg.conc), conc: cfg.conc, warmup: cfg.warmup, dur: cfg.dur, rounds: cfg.rounds}
		// Forward auth really is on: a request without a key is refused.
		var refusal string
		if err := l.probe(ctx, request{method: http.MethodGet, url: pAuth.Addr + "/bench", want: http.StatusUnauthorized}, ""); err != nil {
			refusal = pb.name + " with forward auth did not refuse a request without a key: " + err.Error()
		}
		req := func(base string) request {
			return request{method: http.MethodGet, url: base + "/bench", header: http.Header{"Authorization": {"Bearer " + key}}, want: http.StatusOK}
		}
		measured, err := measureSet(ctx, l, spec{on.name, req(pAuth.Addr), "ok"}, spec{off.name, req(pPlain.Addr), "ok"})
		stopProxy(pAuth)
		stopProxy(pPlain)
		if err != nil {
			return nil, nil, err
		}
		*on, *off = *measured[0], *measured[1]
		if refusal != "" {
			on.note = strings.TrimPrefix(on.note+"; "+refusal, "; ")
		}
	}
	return finish()
}

// stopProxy stops p (nil: nothing) gracefully, killing it after 5 s.
func stopProxy(p *vaulttest.Proxy) {
	if p == nil {
		return
	}
	if err := p.Stop(5 * time.Second); err != nil {
		logf("%v", err)
	}
}
