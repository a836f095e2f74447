//go:build unix

package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"
)

// startUpstream serves 200 "ok" on a free loopback port, in this process; it stops at
// cleanup.
func startUpstream() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte("ok"))
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	atCleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String(), nil
}

// startGateway runs the apikey-gateway binary on a free port in front of upstream;
// auth=false proxies without checking keys. It returns the gateway's base URL once its
// /healthz answers.
func startGateway(ctx context.Context, bin, name, workDir, upstream, mount string, auth bool, vault *vaultServer, token string) (*proc, string, error) {
	port, err := freePort(false)
	if err != nil {
		return nil, "", err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	args := []string{
		"-listen", listen,
		"-upstream", upstream,
		"-mount", mount,
		"-log-level", "warn", // the gateway logs every request at info
		"-auth=" + strconv.FormatBool(auth),
	}
	env := childEnv()
	if auth {
		env = append(env, "VAULT_ADDR="+vault.addr, "VAULT_TOKEN="+token)
	}
	p, err := startProc(name, bin, args, env, filepath.Join(workDir, name+".log"))
	if err != nil {
		return nil, "", err
	}
	base := "http://" + listen
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if !p.running() {
			return nil, "", fmt.Errorf("%s exited during start-up; its log:\n%s", name, p.logTail(20))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, base, nil
			}
		}
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		if time.Now().After(deadline) {
			return nil, "", fmt.Errorf("%s not answering on %s/healthz after 20s; its log:\n%s", name, base, p.logTail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
