//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/vaulttest"
)

// cleanups holds the clean-up of everything run starts (Vault and its plugin
// processes, the gateways, the upstream, the work directory): main runs it on a normal
// return and on an error, and a second Ctrl-C kills the processes without waiting.
var cleanups vaulttest.Cleanups

// vaultServer is a `vault server -dev` (in-memory storage) run for the benchmark.
type vaultServer struct {
	*vaulttest.Server
}

// startVault starts a dev server on a free loopback port in workDir, with a plugin
// directory that holds a copy of every plugin, and waits until it is unsealed and
// active.
func startVault(ctx context.Context, vaultBin, workDir string, plugins ...vaulttest.Plugin) (*vaultServer, error) {
	s, err := vaulttest.NewServer(vaulttest.ServerOptions{
		VaultBin: vaultBin,
		Dir:      workDir,
		Dev:      true,
		Plugins:  plugins,
		// Vault's debug log would cost CPU in the measured rows.
		LogLevel:     "warn",
		ReadyTimeout: 60 * time.Second,
		Cleaner:      &cleanups,
	})
	if err != nil {
		return nil, err
	}
	if err := s.StartDev(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w; last lines of %s:\n%s", err, s.LogPath, s.LogTail(20))
	}
	return &vaultServer{s}, nil
}

// setup registers and enables the plugin at mount, writes the role the benchmark issues
// from, sizes the verify cache, and writes the verifier policy.
func (s *vaultServer) setup(ctx context.Context, plugin vaulttest.Plugin, mount, role string, ttl time.Duration, cacheSize int) error {
	if err := s.RegisterPlugin(ctx, plugin); err != nil {
		return fmt.Errorf("registering the plugin: %w", err)
	}
	if err := s.EnablePlugin(ctx, plugin.Name, mount); err != nil {
		return fmt.Errorf("enabling the plugin at %s/: %w", mount, err)
	}
	if err := s.WaitPluginReady(ctx, mount); err != nil {
		return fmt.Errorf("the plugin at %s/ does not answer: %w", mount, err)
	}
	l := s.Client.Logical()
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
	if err := s.Client.Sys().PutPolicyWithContext(ctx, verifierPolicy, fmt.Sprintf("path %q {\n  capabilities = [\"update\"]\n}\n", mount+"/verify")); err != nil {
		return fmt.Errorf("writing policy %s: %w", verifierPolicy, err)
	}
	return nil
}

// setupCountingOff enables the plugin a second time at mount with usage counting off
// (config usage_counting=false), writes role there and returns one key of it: the
// baseline of the counting ratio.
func (s *vaultServer) setupCountingOff(ctx context.Context, plugin vaulttest.Plugin, mount, role string, ttl time.Duration) (string, error) {
	if err := s.EnablePlugin(ctx, plugin.Name, mount); err != nil {
		return "", fmt.Errorf("enabling the plugin at %s/: %w", mount, err)
	}
	if err := s.WaitPluginReady(ctx, mount); err != nil {
		return "", fmt.Errorf("the plugin at %s/ does not answer: %w", mount, err)
	}
	l := s.Client.Logical()
	if _, err := l.WriteWithContext(ctx, mount+"/roles/"+role, map[string]any{"scopes": "bench:read,bench:write", "ttl": ttl.String(), "max_ttl": ttl.String()}); err != nil {
		return "", fmt.Errorf("writing role %s: %w", role, err)
	}
	if _, err := l.WriteWithContext(ctx, mount+"/config", map[string]any{"usage_counting": false}); err != nil {
		return "", fmt.Errorf("turning counting off: %w", err)
	}
	sec, err := l.ReadWithContext(ctx, mount+"/creds/"+role)
	if err != nil {
		return "", fmt.Errorf("issuing a key at %s/: %w", mount, err)
	}
	key, _ := sec.Data["api_key"].(string)
	if key == "" {
		return "", fmt.Errorf("issuing a key at %s/: no api_key", mount)
	}
	return key, nil
}

// verifierPolicy grants update on <mount>/verify only (policies/verifier.hcl).
const verifierPolicy = "apikey-bench-verifier"

// verifierToken creates a periodic token with only the verifier policy (what a gateway
// runs with).
func (s *vaultServer) verifierToken(ctx context.Context) (string, error) {
	sec, err := s.Client.Auth().Token().CreateWithContext(ctx, &api.TokenCreateRequest{
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

// noopPluginName and noopMount are the no-op baseline plugin's catalog name and mount.
const (
	noopPluginName = "apikey-bench-noop"
	noopMount      = "noop"
)

// setupNoop registers and enables the no-op baseline plugin (bench/noopplugin) at
// noopMount and waits until it answers. It reports no version (it has no RunningVersion),
// so it is registered without one.
func (s *vaultServer) setupNoop(ctx context.Context, plugin vaulttest.Plugin) error {
	if err := s.RegisterPlugin(ctx, plugin); err != nil {
		return fmt.Errorf("registering the no-op plugin: %w", err)
	}
	if err := s.EnablePlugin(ctx, plugin.Name, noopMount); err != nil {
		return fmt.Errorf("enabling the no-op plugin at %s/: %w", noopMount, err)
	}
	// WaitPluginReady lists the engine's roles, which the no-op plugin does not have.
	err := vaulttest.Poll(ctx, 60*time.Second, 100*time.Millisecond, func() error {
		_, err := s.Client.Logical().ReadWithContext(ctx, noopMount+"/lease")
		return err
	})
	if err != nil {
		return fmt.Errorf("the no-op plugin at %s/ does not answer: %w", noopMount, err)
	}
	return nil
}
