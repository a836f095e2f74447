// Command apikey-dashboard is the web console of the apikey secrets engine: it shows and
// manages keys, roles and usage with the signed-in person's own Vault token, and holds
// no Vault privilege of its own. See docs/dashboard.md.
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

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/dashboard"
)

// version is what -version prints: "dev" for a plain build, the release's VERSION when
// `make release` stamps it (-ldflags -X main.version=...).
var version = "dev"

// Client-facing timeouts: a client that sends slowly or idles holds a connection and a
// goroutine, so none of them is unbounded. Pages are rendered whole before they are
// written, so a write timeout cuts nothing off.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 90 * time.Second // a page waits for Vault calls of up to 30 s each
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	shutdownTimeout   = 15 * time.Second
)

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
		fmt.Fprintln(os.Stderr, "apikey-dashboard:", err)
		os.Exit(1)
	}
}

// options is the command line.
type options struct {
	listen        string
	vaultAddr     string
	mount         string
	userpassMount string
	basePath      string
	tlsCert       string
	tlsKey        string
	secureCookies bool
	sessionTTLMax time.Duration
	maxSessions   int
	logLevel      slog.Level
}

func parseOptions(args []string, getenv func(string) string, out io.Writer) (options, error) {
	var (
		o        options
		logLevel string
	)
	fs := flag.NewFlagSet("apikey-dashboard", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8300", "address to listen on")
	fs.StringVar(&o.vaultAddr, "vault-addr", getenv("VAULT_ADDR"), "Vault's address (default: $VAULT_ADDR); VAULT_CACERT and Vault's other client variables apply, VAULT_TOKEN is ignored")
	fs.StringVar(&o.mount, "mount", dashboard.DefaultMount, "path the apikey secrets engine is enabled at")
	fs.StringVar(&o.userpassMount, "userpass-mount", dashboard.DefaultUserpassMount, "path of Vault's userpass auth method used to sign in")
	fs.StringVar(&o.basePath, "base-path", "", "path prefix the dashboard is served under behind a proxy, e.g. /apikey (empty: /)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "serve HTTPS with this PEM certificate (chain); needs -tls-key")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key for -tls-cert")
	fs.BoolVar(&o.secureCookies, "secure-cookies", false, "mark cookies Secure without -tls-cert (behind a proxy that terminates TLS); always on with -tls-cert")
	fs.DurationVar(&o.sessionTTLMax, "session-ttl-max", dashboard.DefaultSessionTTLMax, "longest a session lasts; it also ends when its Vault token expires")
	fs.IntVar(&o.maxSessions, "max-sessions", dashboard.DefaultMaxSessions, "most sessions kept in memory; the least recently used is dropped first")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: apikey-dashboard [flags]\n\n"+
			"The web console of the apikey secrets engine. It has no Vault token of its own: people\n"+
			"sign in with theirs (or with userpass) and every Vault call is made with it.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := o.logLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return options{}, fmt.Errorf("-log-level: %w", err)
	}
	if o.vaultAddr == "" {
		return options{}, errors.New("-vault-addr (or VAULT_ADDR) is required")
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return options{}, errors.New("-tls-cert and -tls-key go together")
	}
	if o.sessionTTLMax <= 0 {
		return options{}, errors.New("-session-ttl-max must be positive")
	}
	if o.maxSessions <= 0 {
		return options{}, errors.New("-max-sessions must be positive")
	}
	return o, nil
}

// run serves until ctx ends (a signal), then shuts down gracefully.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	o, err := parseOptions(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: o.logLevel}))
	srv, err := dashboard.New(dashboard.Config{
		VaultAddr:     o.vaultAddr,
		Mount:         o.mount,
		UserpassMount: o.userpassMount,
		BasePath:      o.basePath,
		SecureCookies: o.secureCookies || o.tlsCert != "",
		HSTS:          o.tlsCert != "",
		SessionTTLMax: o.sessionTTLMax,
		MaxSessions:   o.maxSessions,
		Logger:        logger,
		Version:       version,
	})
	if err != nil {
		return err
	}
	var tlsConfig *tls.Config
	if o.tlsCert != "" {
		// Loaded before listening, so a bad certificate stops start-up instead of Serve.
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return fmt.Errorf("-tls-cert/-tls-key: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           srv,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			served <- hs.ServeTLS(ln, "", "")
			return
		}
		served <- hs.Serve(ln)
	}()
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
	}
	logger.Info("listening", "addr", ln.Addr().String(), "url", scheme+"://"+ln.Addr().String()+o.basePath+"/",
		"vault_addr", srv.VaultAddress(), "mount", o.mount, "userpass_mount", o.userpassMount, "version", version)
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	logger.Info("stopped")
	return nil
}
