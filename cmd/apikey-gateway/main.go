// Command apikey-gateway is a reverse proxy that lets through only requests carrying an
// API key that Vault's apikey secrets engine verifies, with the scopes its route needs.
// See docs/gateway.md.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/vault/api"
	"google.golang.org/grpc"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/apikeyauth"
)

// version is what -version prints: "dev" for a plain build, the release's VERSION when
// `make release` stamps it (-ldflags -X main.version=...).
var version = "dev"

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "-version" || os.Args[1] == "--version") {
		fmt.Println(version)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "apikey-gateway:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends (a signal), then shuts down gracefully.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	o, err := parseOptions(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: o.logLevel}))
	m := newMetrics()

	var mw *apikeyauth.Middleware
	vaultAddr := ""
	if o.auth {
		client, err := newVaultClient()
		if err != nil {
			return err
		}
		vaultAddr = client.Address()
		if client.Token() == "" {
			logger.Warn("no Vault token (VAULT_TOKEN): verify calls will be refused unless a Vault Agent adds one")
		}
		mw, err = apikeyauth.New(apikeyauth.Config{
			Client:              client,
			Mount:               o.mount,
			APIKeyHeader:        o.apiKeyHeader,
			TrustedProxies:      o.trustedProxies,
			CacheSize:           o.cacheSize,
			NegativeCacheSize:   o.negativeCacheSize,
			CacheTTL:            o.cacheTTL,
			NegativeCacheTTL:    o.negativeCacheTTL,
			FailureBudget:       o.failureBudget,
			FailureWindow:       o.failureWindow,
			FailureBudgetSize:   o.failureBudgetSize,
			VerifyTimeout:       o.verifyTimeout,
			Fleet:               o.fleet,
			FleetCacheTTL:       o.fleetCacheTTL,
			FeedTimeout:         o.feedTimeout,
			FleetReportInterval: o.reportInterval,
			Logger:              logger,
			Observer:            m,
		})
		if err != nil {
			return err
		}
	} else {
		logger.Warn("authentication is OFF (-auth=false): every request is forwarded unchecked")
	}

	var tlsConfig *tls.Config
	if o.tlsCertFile != "" {
		// Loaded before listening, so a bad certificate stops start-up instead of Serve.
		cert, err := tls.LoadX509KeyPair(o.tlsCertFile, o.tlsKeyFile)
		if err != nil {
			return fmt.Errorf("-tls-cert-file/-tls-key-file: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	var (
		handler http.Handler
		fa      *forwardAuth
	)
	if o.mode == modeForwardAuth {
		fa = newForwardAuth(o, mw, m, logger)
		handler = fa
	} else {
		handler = newGateway(o, mw, m, logger)
	}
	srv := o.newServer(handler, logger)
	srv.TLSConfig = tlsConfig
	// Every server reports here; the first to stop on its own ends run.
	served := make(chan error, 3)
	var grpcSrv *grpc.Server
	if o.grpcListen != "" {
		gln, err := net.Listen("tcp", o.grpcListen)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("-grpc-listen: %w", err)
		}
		grpcSrv = newGRPCServer(fa, tlsConfig)
		go func() { served <- grpcSrv.Serve(gln) }()
		logger.Info("ext_authz gRPC listening", "addr", gln.Addr().String(), "tls", tlsConfig != nil)
	}
	var metricsSrv *http.Server
	if o.metricsListen != "" {
		mln, err := net.Listen("tcp", o.metricsListen)
		if err != nil {
			_ = ln.Close()
			if grpcSrv != nil {
				grpcSrv.Stop()
			}
			return fmt.Errorf("-metrics-listen: %w", err)
		}
		metricsSrv = o.newServer(m.handler(), logger)
		go func() { served <- metricsSrv.Serve(mln) }()
		logger.Info("metrics listening", "addr", mln.Addr().String())
	}
	go func() {
		if tlsConfig != nil {
			served <- srv.ServeTLS(ln, "", "")
			return
		}
		served <- srv.Serve(ln)
	}()
	upstream := ""
	if o.upstream != nil {
		upstream = o.upstream.Redacted()
	}
	logger.Info("listening", "addr", ln.Addr().String(), "mode", o.mode, "tls", o.tlsCertFile != "", "upstream", upstream,
		"auth", o.auth, "vault_addr", vaultAddr, "mount", o.mount, "routes", len(o.routes), "route_tag", o.routeTag,
		"cache_ttl", o.cacheTTL.String(), "trusted_proxies", len(o.trustedProxies), "fleet", o.fleet)

	select {
	case err := <-served:
		_ = srv.Close()
		if metricsSrv != nil {
			_ = metricsSrv.Close()
		}
		if grpcSrv != nil {
			grpcSrv.Stop()
		}
		closeMiddleware(mw, o.shutdownTimeout, logger)
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down", "timeout", o.shutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if metricsSrv != nil {
		// Metrics are read during the drain too: stop their listener last.
		defer func() { _ = metricsSrv.Shutdown(shutdownCtx) }()
	}
	// The gRPC listener drains alongside the HTTP one and is cut off when the timeout ends.
	grpcStopped := make(chan struct{})
	go func() {
		if grpcSrv != nil {
			grpcSrv.GracefulStop()
		}
		close(grpcStopped)
	}()
	err = srv.Shutdown(shutdownCtx)
	select {
	case <-grpcStopped:
	case <-shutdownCtx.Done():
		grpcSrv.Stop()
		<-grpcStopped
	}
	// After the drain: requests still in flight may spend grants until then. Then the
	// grants' unused uses go back and the last usage report is sent (-fleet).
	closeMiddleware(mw, o.shutdownTimeout, logger)
	if err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// closeMiddleware stops the middleware's background work (-fleet), returning its
// grants and sending its last report, within timeout of its own: the drain may have
// used up the shutdown timeout, and returning uses is worth a moment.
func closeMiddleware(mw *apikeyauth.Middleware, timeout time.Duration, logger *slog.Logger) {
	if mw == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(timeout, 5*time.Second))
	defer cancel()
	if err := mw.Close(ctx); err != nil {
		logger.Warn("returning grants and the last usage report failed", "error", err.Error())
	}
}

// newServer returns an http.Server for handler with the client-facing timeouts: a client
// that sends its request slowly, or keeps an idle connection, holds a connection and a
// goroutine, so neither may take forever. There is no write timeout: it would cut off
// long responses that the upstream streams.
func (o options) newServer(handler http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: o.readHeaderTimeout,
		ReadTimeout:       o.readTimeout,
		IdleTimeout:       o.idleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// newVaultClient configures the client the standard way: VAULT_ADDR, VAULT_TOKEN,
// VAULT_CACERT, VAULT_NAMESPACE, VAULT_MAX_RETRIES, ...
func newVaultClient() (*api.Client, error) {
	cfg := api.DefaultConfig()
	if cfg.Error != nil {
		return nil, fmt.Errorf("vault client configuration: %w", cfg.Error)
	}
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	return client, nil
}
