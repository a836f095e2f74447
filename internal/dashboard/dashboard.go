// Package dashboard is the apikey-dashboard web console: server-rendered pages over the
// apikey secrets engine's HTTP API, acting with the signed-in person's own Vault token.
//
// The dashboard has no Vault privilege of its own. A person signs in with a Vault token
// or through Vault's userpass method; the token is kept in this process's memory behind
// an opaque session cookie, and every Vault call is made with it, so Vault's policies
// decide what each person sees and does, and Vault's audit log names them. See
// docs/dashboard.md.
package dashboard

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"regexp"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// Defaults of Config.
const (
	DefaultMount         = "apikey"
	DefaultUserpassMount = "userpass"
	DefaultSessionTTLMax = 8 * time.Hour
	DefaultMaxSessions   = 1000
)

// Config configures a Server.
type Config struct {
	// VaultAddr is Vault's address (https://vault.example:8200). Empty: VAULT_ADDR, as
	// Vault's client reads it.
	VaultAddr string
	// Mount is the path the apikey engine is enabled at.
	Mount string
	// UserpassMount is the path of Vault's userpass auth method used for sign-in.
	UserpassMount string
	// BasePath is the path prefix the dashboard is served under ("" or "/console"): every
	// link, form and cookie carries it.
	BasePath string
	// SecureCookies sets Secure on cookies: always when serving TLS, and behind a proxy
	// that terminates TLS.
	SecureCookies bool
	// HSTS adds Strict-Transport-Security (when serving TLS itself).
	HSTS bool
	// SessionTTLMax bounds a session's life; a session also ends with its token.
	SessionTTLMax time.Duration
	// MaxSessions bounds the sessions kept; the least recently used goes first.
	MaxSessions int
	// Logger gets one line per request and the errors; never a token, key or password.
	Logger *slog.Logger
	// Version is shown in the page footer.
	Version string
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time
}

// Server is the dashboard's HTTP handler.
type Server struct {
	cfg      Config
	vault    *vaultClient
	sessions *sessionStore
	pages    map[string]*template.Template
	assets   map[string]string // file name -> content hash, for cache-busting URLs
	handler  http.Handler
	log      *slog.Logger
	now      func() time.Time
}

var (
	basePathPattern = regexp.MustCompile(`^(/[A-Za-z0-9._~-]+)*$`)
	mountPattern    = regexp.MustCompile(`^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$`)
)

// New checks cfg and returns the server.
func New(cfg Config) (*Server, error) {
	cfg.Mount = strings.Trim(cfg.Mount, "/")
	cfg.UserpassMount = strings.Trim(cfg.UserpassMount, "/")
	cfg.BasePath = strings.TrimRight(cfg.BasePath, "/")
	if cfg.Mount == "" {
		cfg.Mount = DefaultMount
	}
	if cfg.UserpassMount == "" {
		cfg.UserpassMount = DefaultUserpassMount
	}
	switch {
	case !mountPattern.MatchString(cfg.Mount) || strings.Contains(cfg.Mount, ".."):
		return nil, fmt.Errorf("mount %q is not a Vault mount path", cfg.Mount)
	case !mountPattern.MatchString(cfg.UserpassMount) || strings.Contains(cfg.UserpassMount, ".."):
		return nil, fmt.Errorf("userpass mount %q is not a Vault mount path", cfg.UserpassMount)
	case !basePathPattern.MatchString(cfg.BasePath) || strings.Contains(cfg.BasePath, ".."):
		return nil, fmt.Errorf("base path %q must be empty or like /console (letters, digits, . _ ~ -)", cfg.BasePath)
	}
	if cfg.SessionTTLMax <= 0 {
		cfg.SessionTTLMax = DefaultSessionTTLMax
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	vc, err := newVaultClient(cfg.VaultAddr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		vault:    vc,
		sessions: newSessionStore(cfg.MaxSessions, now),
		log:      cfg.Logger,
		now:      now,
	}
	if err := s.loadAssets(); err != nil {
		return nil, err
	}
	if err := s.loadTemplates(); err != nil {
		return nil, err
	}
	s.handler = s.securityHeaders(s.logRequests(s.routes()))
	return s, nil
}

// VaultAddress is the Vault address the dashboard calls.
func (s *Server) VaultAddress() string { return s.vault.Address() }

// ServeHTTP serves the dashboard.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// routes is the mux under the base path.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /assets/{name}", s.serveAsset)
	mux.HandleFunc("GET /login", s.loginForm)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.post(s.logout))

	mux.HandleFunc("GET /{$}", s.get(s.overview))
	mux.HandleFunc("GET /keys", s.get(s.keys))
	mux.HandleFunc("GET /keys/{id}", s.get(s.keyDetail))
	mux.HandleFunc("GET /keys/{id}/{action}", s.get(s.keyActionConfirm))
	mux.HandleFunc("POST /keys/{id}/{action}", s.post(s.keyAction))
	mux.HandleFunc("GET /roles", s.get(s.roles))
	mux.HandleFunc("GET /roles/new", s.get(s.roleNewForm))
	mux.HandleFunc("POST /roles/new", s.post(s.roleCreate))
	mux.HandleFunc("GET /roles/{name}", s.get(s.roleDetail))
	mux.HandleFunc("GET /roles/{name}/edit", s.get(s.roleEditForm))
	mux.HandleFunc("POST /roles/{name}/edit", s.post(s.roleUpdate))
	mux.HandleFunc("GET /issue", s.get(s.issueForm))
	mux.HandleFunc("POST /issue", s.post(s.issue))
	mux.HandleFunc("POST /rotate", s.post(s.rotateHeld))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.errorPage(w, r, s.currentSession(r), http.StatusNotFound, "Not found", "There is no page at this address.")
	})
	if s.cfg.BasePath == "" {
		return mux
	}
	// The base path itself goes to the overview; anything outside it is not ours.
	base := s.cfg.BasePath
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == base {
			http.Redirect(w, r, base+"/", http.StatusSeeOther)
			return
		}
		http.StripPrefix(base, mux).ServeHTTP(w, r)
	})
}

// contentSecurityPolicy allows nothing but the dashboard's own files: no inline script
// or style, no framing, forms posting only here.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// securityHeaders sets the headers every answer carries.
func (s *Server) securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
		// Pages show key metadata and, once, a key: no cache keeps them. Assets override it.
		h.Set("Cache-Control", "no-store")
		if s.cfg.HSTS {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r)
	})
}

// statusRecorder remembers the status written, for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// logRequests logs each request's method, path (never the query or the body), status
// and duration.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		s.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
			"duration_ms", float64(time.Since(start).Microseconds())/1000)
	})
}

// loadAssets hashes the embedded assets, for URLs that change when a file does.
func (s *Server) loadAssets() error {
	s.assets = map[string]string{}
	return fs.WalkDir(assetFS, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := assetFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		s.assets[strings.TrimPrefix(p, "assets/")] = hex.EncodeToString(sum[:6])
		return nil
	})
}

var assetTypes = map[string]string{
	".css": "text/css; charset=utf-8",
	".js":  "text/javascript; charset=utf-8",
	".svg": "image/svg+xml",
	".txt": "text/plain; charset=utf-8",
}

func (s *Server) serveAsset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	ctype, ok := assetTypes[path.Ext(name)]
	if _, known := s.assets[name]; !known || !ok {
		http.NotFound(w, r)
		return
	}
	b, err := assetFS.ReadFile("assets/" + name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", ctype)
	// The URL carries the content's hash (see assetURL), so it may be kept.
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	_, _ = w.Write(b)
}

// assetURL is the URL of an embedded asset, with its hash.
func (s *Server) assetURL(name string) (string, error) {
	h, ok := s.assets[name]
	if !ok {
		return "", errors.New("no asset " + name)
	}
	return s.cfg.BasePath + "/assets/" + name + "?v=" + h, nil
}
