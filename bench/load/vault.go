//go:build unix

package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

const pluginName = "vault-plugin-secrets-apikey"

// vaultServer is a `vault server -dev` (in-memory storage) run for the benchmark.
type vaultServer struct {
	proc      *proc
	addr      string // http://127.0.0.1:port
	rootToken string
	client    *api.Client
	version   string
}

// startVault starts a dev server on a free loopback port with a plugin directory that
// holds a copy of pluginBin, and waits until it is unsealed and active.
func startVault(ctx context.Context, vaultBin, pluginBin, workDir string) (*vaultServer, error) {
	pluginDir := filepath.Join(workDir, "plugins")
	if err := os.MkdirAll(pluginDir, 0o755); err != nil {
		return nil, err
	}
	if err := copyFile(pluginBin, filepath.Join(pluginDir, pluginName), 0o755); err != nil {
		return nil, fmt.Errorf("copying the plugin: %w", err)
	}
	root := "bench-" + randomHex(12)
	logPath := filepath.Join(workDir, "vault.log")
	var lastErr error
	for range 3 {
		port, err := freePort(true)
		if err != nil {
			return nil, err
		}
		s := &vaultServer{addr: fmt.Sprintf("http://127.0.0.1:%d", port), rootToken: root}
		s.proc, err = startProc("vault", vaultBin, []string{
			"server", "-dev",
			"-dev-listen-address=127.0.0.1:" + strconv.Itoa(port),
			"-dev-root-token-id=" + root,
			"-dev-no-store-token",
			"-dev-plugin-dir=" + pluginDir,
			"-dev-plugin-init=false",
			"-log-level=warn",
		}, childEnv(), logPath)
		if err != nil {
			return nil, err
		}
		if lastErr = s.waitReady(ctx); lastErr == nil {
			return s, nil
		}
		s.proc.stop()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !strings.Contains(s.proc.logTail(50), "address already in use") {
			return nil, fmt.Errorf("%w; last lines of %s:\n%s", lastErr, logPath, s.proc.logTail(20))
		}
	}
	return nil, lastErr
}

func (s *vaultServer) waitReady(ctx context.Context) error {
	cfg := api.DefaultConfig()
	cfg.Address = s.addr
	cfg.MaxRetries = 0
	cfg.Timeout = 30 * time.Second
	client, err := api.NewClient(cfg)
	if err != nil {
		return err
	}
	client.SetToken(s.rootToken)
	s.client = client
	deadline := time.Now().Add(60 * time.Second)
	for {
		if !s.proc.running() {
			return errors.New("vault exited during start-up")
		}
		h, err := client.Sys().HealthWithContext(ctx)
		if err == nil && h.Initialized && !h.Sealed && !h.Standby {
			s.version = h.Version
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("vault not ready on %s after 60s (last error: %v)", s.addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// setup registers and enables the plugin at mount, writes the role the benchmark issues
// from, sizes the verify cache, and writes the verifier policy.
func (s *vaultServer) setup(ctx context.Context, pluginBin, pluginVersion, mount, role string, ttl time.Duration, cacheSize int) error {
	sum, err := fileSHA256(pluginBin)
	if err != nil {
		return err
	}
	sys := s.client.Sys()
	if err := sys.RegisterPluginWithContext(ctx, &api.RegisterPluginInput{
		Name:    pluginName,
		Type:    api.PluginTypeSecrets,
		Command: pluginName,
		SHA256:  sum,
		Version: pluginVersion,
	}); err != nil {
		return fmt.Errorf("registering the plugin: %w", err)
	}
	if err := sys.MountWithContext(ctx, mount, &api.MountInput{
		Type:   pluginName,
		Config: api.MountConfigInput{PluginVersion: pluginVersion},
	}); err != nil {
		return fmt.Errorf("enabling the plugin at %s/: %w", mount, err)
	}
	l := s.client.Logical()
	if _, err := l.WriteWithContext(ctx, mount+"/roles/"+role, map[string]any{
		"scopes":  "bench:read,bench:write",
		"ttl":     ttl.String(),
		"max_ttl": ttl.String(),
	}); err != nil {
		return fmt.Errorf("writing role %s: %w", role, err)
	}
	if _, err := l.WriteWithContext(ctx, mount+"/config", map[string]any{"cache_size": cacheSize}); err != nil {
		return fmt.Errorf("setting cache_size: %w", err)
	}
	if err := sys.PutPolicyWithContext(ctx, verifierPolicy, fmt.Sprintf("path %q {\n  capabilities = [\"update\"]\n}\n", mount+"/verify")); err != nil {
		return fmt.Errorf("writing policy %s: %w", verifierPolicy, err)
	}
	return nil
}

// verifierPolicy grants update on <mount>/verify only (policies/verifier.hcl).
const verifierPolicy = "apikey-bench-verifier"

// verifierToken creates a periodic token with only the verifier policy (what a gateway
// runs with).
func (s *vaultServer) verifierToken(ctx context.Context) (string, error) {
	sec, err := s.client.Auth().Token().CreateWithContext(ctx, &api.TokenCreateRequest{
		Policies:        []string{verifierPolicy},
		NoDefaultPolicy: true,
		Period:          "1h",
		DisplayName:     "bench-verifier",
	})
	if err != nil {
		return "", err
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return "", errors.New("token create returned no token")
	}
	return sec.Auth.ClientToken, nil
}

var versionRE = regexp.MustCompile(`(?m)^\s*(?:const\s+)?Version\s*(?:string\s*)?=\s*"([^"]+)"`)

// pluginVersionFrom reads `Version = "vX.Y.Z"` from the plugin's version.go.
func pluginVersionFrom(path, fallback string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fallback
	}
	if m := versionRE.FindSubmatch(b); m != nil {
		v := string(m[1])
		if !strings.HasPrefix(v, "v") {
			v = "v" + v
		}
		return v
	}
	return fallback
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
