package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestParseOptions(t *testing.T) {
	o, err := parseOptions(nil, env(map[string]string{"VAULT_ADDR": "https://vault:8200", "VAULT_TOKEN": "ignored"}), io.Discard)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:8300", o.listen)
	require.Equal(t, "https://vault:8200", o.vaultAddr)
	require.Equal(t, "apikey", o.mount)
	require.Equal(t, "userpass", o.userpassMount)
	require.Equal(t, 8*time.Hour, o.sessionTTLMax)
	require.Equal(t, 1000, o.maxSessions)

	o, err = parseOptions([]string{"-vault-addr", "http://127.0.0.1:8200", "-mount", "keys", "-userpass-mount", "people",
		"-base-path", "/console", "-session-ttl-max", "1h", "-max-sessions", "5", "-secure-cookies"}, env(nil), io.Discard)
	require.NoError(t, err)
	require.Equal(t, "keys", o.mount)
	require.Equal(t, "/console", o.basePath)
	require.True(t, o.secureCookies)

	for _, args := range [][]string{
		{},                                     // no Vault address
		{"-vault-addr", "x", "-tls-cert", "c"}, // cert without key
		{"-vault-addr", "x", "-session-ttl-max", "0"},
		{"-vault-addr", "x", "-max-sessions", "0"},
		{"-vault-addr", "x", "-log-level", "loud"},
		{"-vault-addr", "x", "extra"},
	} {
		_, err := parseOptions(args, env(nil), io.Discard)
		require.Error(t, err, "%q", args)
	}
	var usage bytes.Buffer
	_, err = parseOptions([]string{"-h"}, env(nil), &usage)
	require.True(t, errors.Is(err, flag.ErrHelp))
	require.Contains(t, usage.String(), "no Vault token of its own")
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunServesAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var log syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-vault-addr", "http://127.0.0.1:1", "-base-path", "/c"}, env(nil), &log)
	}()
	var url string
	require.Eventually(t, func() bool {
		for _, line := range strings.Split(log.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "listening" {
				url, _ = m["url"].(string)
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond)
	require.True(t, strings.HasPrefix(url, "http://127.0.0.1:") && strings.HasSuffix(url, "/c/"), url)
	resp, err := http.Get(url + "healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("run did not stop")
	}
	require.Contains(t, log.String(), `"msg":"stopped"`)
}
