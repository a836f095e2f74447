package dashboard

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// page is what every template gets: the layout's fields and the page's own Data.
type page struct {
	Title   string
	Nav     string // the active navigation entry
	Base    string
	Session *sessionView // nil when signed out
	CSRF    string
	Flash   string
	Mount   string
	Version string
	Data    any
}

type sessionView struct {
	Who      string
	Method   string
	Policies []string
	Expires  time.Time
}

// loadTemplates parses each page with the layout and the shared partials.
func (s *Server) loadTemplates() error {
	funcs := template.FuncMap{
		"asset":     s.assetURL,
		"fmtTime":   s.fmtTime,
		"relTime":   s.relTime,
		"dur":       fmtSeconds,
		"join":      strings.Join,
		"pairs":     sortedPairs,
		"codeClass": codeClass,
		"pathEsc":   url.PathEscape,
		"float":     func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) },
		"bar":       hbar,
	}
	pages, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	s.pages = map[string]*template.Template{}
	for _, p := range pages {
		name := strings.TrimSuffix(strings.TrimPrefix(p, "templates/"), ".html")
		if name == "layout" || strings.HasPrefix(name, "_") {
			continue
		}
		files := []string{"templates/layout.html", p}
		partials, _ := fs.Glob(templateFS, "templates/_*.html")
		files = append(files, partials...)
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, files...)
		if err != nil {
			return fmt.Errorf("template %s: %w", name, err)
		}
		s.pages[name] = t
	}
	return nil
}

// render writes the page name with status. It renders into a buffer first, so a
// template error becomes a 500 instead of half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, sess *session, status int, name string, p page) {
	t := s.pages[name]
	if t == nil {
		s.log.Error("no such template", "template", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	p.Base = s.cfg.BasePath
	p.Mount = s.cfg.Mount
	p.Version = s.cfg.Version
	if sess != nil {
		p.Session = &sessionView{Who: sess.who, Method: sess.method, Policies: sess.policies, Expires: sess.expires}
		p.CSRF = sess.csrf
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		s.log.Error("rendering", "template", name, "path", r.URL.Path, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// errorData is the error page's Data.
type errorData struct {
	Status     int
	Heading    string
	Message    string
	Capability string   // the capability Vault refused, for 403s
	Path       string   // the Vault path called
	PolicyPath string   // Path as a policy grants it for every key (a key_id as +)
	Vault      []string // Vault's own messages
	SignIn     bool     // offer the sign-in page
}

// errorPage renders a page that explains a failure.
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, sess *session, status int, heading, message string) {
	s.render(w, r, sess, status, "error", page{Title: heading, Data: errorData{Status: status, Heading: heading, Message: message}})
}

// vaultErrorPage renders what Vault refused. A 403 names the capability and the path the
// dashboard called with the person's token; if the token itself is no longer valid, the
// session ends and the person is sent to sign in again.
func (s *Server) vaultErrorPage(w http.ResponseWriter, r *http.Request, sess *session, err error) {
	var ve *VaultError
	if !errors.As(err, &ve) {
		s.log.Error("internal error", "path", r.URL.Path, "error", err)
		s.errorPage(w, r, sess, http.StatusInternalServerError, "Internal error", "The dashboard failed; its log says why.")
		return
	}
	s.log.Warn("vault refused", "op", ve.Op, "vault_path", ve.Path, "status", ve.Status)
	d := errorData{Status: ve.Status, Path: ve.Path, Vault: ve.Errors}
	switch {
	case ve.PermissionDenied():
		if sess != nil && !s.tokenValid(r, sess) {
			s.endSession(w, r)
			http.Redirect(w, r, s.cfg.BasePath+"/login?ended=1", http.StatusSeeOther)
			return
		}
		d.Status = http.StatusForbidden
		d.Heading = "Permission denied"
		d.Capability = ve.Op
		d.PolicyPath = policyPath(ve.Path)
		d.Message = fmt.Sprintf("Vault refused the %s capability on %s to your token.", ve.Op, ve.Path)
	case ve.Status == http.StatusNotFound:
		d.Heading = "Not found"
		d.Message = fmt.Sprintf("Vault has nothing at %s.", ve.Path)
	case ve.Status == http.StatusBadRequest:
		d.Heading = "Refused by the engine"
		d.Message = fmt.Sprintf("Vault refused the request to %s %s.", ve.Op, ve.Path)
	case ve.Status == 0:
		d.Status = http.StatusBadGateway
		d.Heading = "Vault did not answer"
		d.Message = fmt.Sprintf("The call to %s %s failed before Vault answered: is Vault at %s up?", ve.Op, ve.Path, s.vault.Address())
		d.Vault = nil
	default:
		d.Status = http.StatusBadGateway
		d.Heading = "Vault failed"
		d.Message = fmt.Sprintf("Vault answered %d to %s %s.", ve.Status, ve.Op, ve.Path)
	}
	s.render(w, r, sess, d.Status, "error", page{Title: d.Heading, Data: d})
}

// keyPathPattern is a path of one key: its key_id becomes + in the policy shown.
var keyPathPattern = regexp.MustCompile(`^(.+/keys/)[A-Za-z0-9]{16}(/usage)?$`)

// policyPath is the path a policy names to allow a call on path for every key.
func policyPath(path string) string {
	return keyPathPattern.ReplaceAllString(path, "${1}+${2}")
}

// sectionError is a part of a page Vault refused, shown in place of that part.
type sectionError struct {
	Capability string
	Path       string
	Message    string
}

func (s *Server) section(err error) *sectionError {
	if err == nil {
		return nil
	}
	var ve *VaultError
	if !errors.As(err, &ve) {
		return &sectionError{Message: "internal error"}
	}
	s.log.Warn("vault refused", "op", ve.Op, "vault_path", ve.Path, "status", ve.Status)
	if ve.PermissionDenied() {
		return &sectionError{Capability: ve.Op, Path: ve.Path, Message: "permission denied"}
	}
	msg := strings.Join(ve.Errors, "; ")
	if ve.Status == 0 {
		msg = "Vault did not answer"
	}
	return &sectionError{Path: ve.Path, Message: msg}
}

// fmtTime shows an RFC 3339 time from Vault as "2026-11-29 05:13 UTC" ("never" if
// empty).
func (s *Server) fmtTime(v any) string {
	var t time.Time
	switch x := v.(type) {
	case string:
		if x == "" {
			return "never"
		}
		p, err := time.Parse(time.RFC3339, x)
		if err != nil {
			return x
		}
		t = p
	case time.Time:
		t = x
	default:
		return fmt.Sprint(v)
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// relTime is how long ago or ahead an RFC 3339 time is ("3h ago", "in 5d").
func (s *Server) relTime(v string) string {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil || v == "" {
		return ""
	}
	d := t.Sub(s.now())
	ago := d < 0
	if ago {
		d = -d
	}
	var out string
	switch {
	case d < time.Minute:
		out = strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		out = strconv.Itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		out = strconv.Itoa(int(d.Hours())) + "h"
	default:
		out = strconv.Itoa(int(d.Hours()/24)) + "d"
	}
	if ago {
		return out + " ago"
	}
	return "in " + out
}

// fmtSeconds shows seconds as a duration the engine accepts back ("1h30m", "0").
func fmtSeconds(sec int64) string {
	if sec == 0 {
		return "0"
	}
	s := (time.Duration(sec) * time.Second).String() // 1h30m0s, 30m0s, 1h0m0s, 45s
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

type pair struct{ Key, Value string }

func sortedPairs(m map[string]string) []pair {
	out := make([]pair, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, pair{k, m[k]})
	}
	return out
}

// codeClass is the CSS class of a verify code; codes the dashboard does not know (Vault
// is not trusted to send only known ones) share one.
func codeClass(code string) string {
	if slices.Contains(verifyapi.Codes(), code) {
		return "c-" + code
	}
	return "c-other"
}
