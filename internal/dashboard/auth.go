package dashboard

import (
	"context"
	"crypto/subtle"
	"net/http"
	"regexp"
	"strings"
	"time"
)

const (
	// sessionCookie holds the opaque session id; the token stays on the server.
	sessionCookie = "apikey_dashboard_session"
	// loginCookie holds the sign-in form's CSRF token (there is no session yet), compared
	// with the form's copy (double submit).
	loginCookie = "apikey_dashboard_login"
	// maxFormBytes bounds a form's body.
	maxFormBytes = 1 << 20
)

var (
	// usernamePattern keeps the userpass user name from changing the login path.
	usernamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$`)
	// tokenPattern: what a Vault token looks like (hvs., s., b., batch or legacy), bounded.
	tokenPattern = regexp.MustCompile(`^[A-Za-z0-9._+/=-]+$`)
)

// cookie returns a cookie with the dashboard's flags: HttpOnly, SameSite=Strict, the base
// path, Secure when configured.
func (s *Server) cookie(name, value string, maxAge int) *http.Cookie {
	p := s.cfg.BasePath
	if p == "" {
		p = "/"
	}
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     p,
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   s.cfg.SecureCookies,
		SameSite: http.SameSiteStrictMode,
	}
}

// currentSession is the request's live session, or nil.
func (s *Server) currentSession(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	return s.sessions.get(c.Value)
}

// endSession removes the request's session and clears its cookie.
func (s *Server) endSession(w http.ResponseWriter, r *http.Request) *session {
	var sess *session
	if c, err := r.Cookie(sessionCookie); err == nil {
		sess = s.sessions.remove(c.Value)
	}
	http.SetCookie(w, s.cookie(sessionCookie, "", -1))
	return sess
}

// handler is a page handler of a signed-in person.
type handler func(w http.ResponseWriter, r *http.Request, sess *session)

// get serves a page to a signed-in person; others are sent to sign in.
func (s *Server) get(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess := s.currentSession(r)
		if sess == nil {
			http.Redirect(w, r, s.cfg.BasePath+"/login", http.StatusSeeOther)
			return
		}
		h(w, r, sess)
	}
}

// post serves a form of a signed-in person, after checking its CSRF token.
func (s *Server) post(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			s.errorPage(w, r, nil, http.StatusBadRequest, "Bad request", "The form could not be read.")
			return
		}
		sess := s.currentSession(r)
		if sess == nil {
			s.render(w, r, nil, http.StatusUnauthorized, "error", page{Title: "Signed out", Data: errorData{
				Status: http.StatusUnauthorized, Heading: "You are not signed in",
				Message: "Your session ended (or never began): nothing was done. Sign in and try again.", SignIn: true,
			}})
			return
		}
		if !sess.validCSRF(r.PostForm.Get("csrf")) {
			s.log.Warn("csrf token missing or wrong", "path", r.URL.Path)
			s.errorPage(w, r, sess, http.StatusForbidden, "Form expired",
				"The form did not carry this session's CSRF token, so nothing was done. Reload the page and submit it again.")
			return
		}
		h(w, r, sess)
	}
}

// loginData is the sign-in page's Data.
type loginData struct {
	LoginCSRF string
	Method    string
	Username  string
	Error     string
	Notice    string
	Userpass  string // the userpass mount
}

func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	if s.currentSession(r) != nil {
		http.Redirect(w, r, s.cfg.BasePath+"/", http.StatusSeeOther)
		return
	}
	d := loginData{Method: "userpass"}
	switch {
	case r.URL.Query().Has("ended"):
		d.Notice = "Your session ended: Vault no longer accepts its token. Sign in again."
	case r.URL.Query().Get("out") == "revoked":
		d.Notice = "Signed out. The token the dashboard obtained for you was revoked."
	case r.URL.Query().Get("out") == "kept":
		d.Notice = "Signed out. Your token was not revoked: it is yours, and still valid."
	}
	s.renderLogin(w, r, http.StatusOK, d)
}

// renderLogin renders the sign-in form with a fresh CSRF token in a cookie and the form.
func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, d loginData) {
	d.LoginCSRF = randomToken(32)
	d.Userpass = s.cfg.UserpassMount
	http.SetCookie(w, s.cookie(loginCookie, d.LoginCSRF, 3600))
	s.render(w, r, nil, status, "login", page{Title: "Sign in", Data: d})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, nil, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return
	}
	f := r.PostForm
	d := loginData{Method: f.Get("method"), Username: f.Get("username")}
	c, err := r.Cookie(loginCookie)
	got := f.Get("csrf")
	if err != nil || c.Value == "" || len(got) != len(c.Value) || subtle.ConstantTimeCompare([]byte(got), []byte(c.Value)) != 1 {
		s.log.Warn("csrf token missing or wrong", "path", r.URL.Path)
		d.Error = "The sign-in form expired (or cookies are off). Try again."
		s.renderLogin(w, r, http.StatusForbidden, d)
		return
	}
	ctx := r.Context()
	sess := &session{method: d.Method, created: s.now()}
	switch d.Method {
	case "token":
		token := strings.TrimSpace(f.Get("token"))
		if len(token) > 1024 || !tokenPattern.MatchString(token) {
			d.Error = "That is not a Vault token."
			s.renderLogin(w, r, http.StatusBadRequest, d)
			return
		}
		sess.token = token
	case "userpass":
		if !usernamePattern.MatchString(d.Username) || strings.Contains(d.Username, "..") {
			d.Error = "User names are letters, digits and . _ @ + - (up to 128)."
			s.renderLogin(w, r, http.StatusBadRequest, d)
			return
		}
		password := f.Get("password")
		if password == "" {
			d.Error = "Enter the password."
			s.renderLogin(w, r, http.StatusBadRequest, d)
			return
		}
		var env envelope[map[string]any]
		err := s.vault.do(ctx, "", call{op: "update", path: "auth/" + s.cfg.UserpassMount + "/login/" + d.Username,
			body: map[string]any{"password": password}}, &env)
		if err != nil || env.Auth == nil || env.Auth.ClientToken == "" {
			s.log.Warn("sign-in refused", "method", "userpass", "status", statusOf(err))
			d.Error = "Vault refused the user name or password."
			if statusOf(err) == 0 && err != nil {
				d.Error = "Vault did not answer: is it up?"
			}
			s.renderLogin(w, r, http.StatusUnauthorized, d)
			return
		}
		sess.token = env.Auth.ClientToken
		sess.owned = true
	default:
		d.Error = "Choose how to sign in."
		s.renderLogin(w, r, http.StatusBadRequest, d)
		return
	}
	self, _, err := get[lookupSelf](ctx, s.vault, sess.token, call{op: "read", path: "auth/token/lookup-self"})
	if err != nil {
		if sess.owned {
			s.revoke(ctx, sess.token)
		}
		s.log.Warn("sign-in refused", "method", d.Method, "status", statusOf(err))
		d.Error = "Vault refused this token: it is not valid, has expired, or lacks the default policy (auth/token/lookup-self)."
		if statusOf(err) == 0 {
			d.Error = "Vault did not answer: is it up?"
		}
		s.renderLogin(w, r, http.StatusUnauthorized, d)
		return
	}
	sess.who = self.DisplayName
	sess.policies = self.Policies
	life := s.cfg.SessionTTLMax
	if ttl := time.Duration(self.TTL) * time.Second; self.TTL > 0 && ttl < life {
		life = ttl
	}
	sess.expires = sess.created.Add(life)
	sess.csrf = randomToken(32)
	// A new id at every sign-in: a cookie planted before sign-in never becomes a session.
	if old, err := r.Cookie(sessionCookie); err == nil {
		s.sessions.remove(old.Value)
	}
	id := s.sessions.create(sess)
	http.SetCookie(w, s.cookie(sessionCookie, id, int(life.Seconds())))
	http.SetCookie(w, s.cookie(loginCookie, "", -1))
	s.log.Info("signed in", "method", d.Method, "who", sess.who, "session_ttl", life.String())
	http.Redirect(w, r, s.cfg.BasePath+"/", http.StatusSeeOther)
}

// logout ends the session; a token the dashboard obtained (userpass) is revoked, a token
// the person brought is left alone.
func (s *Server) logout(w http.ResponseWriter, r *http.Request, sess *session) {
	s.endSession(w, r)
	out := "kept"
	if sess.owned {
		s.revoke(r.Context(), sess.token)
		out = "revoked"
	}
	s.log.Info("signed out", "who", sess.who, "token", out)
	http.Redirect(w, r, s.cfg.BasePath+"/login?out="+out, http.StatusSeeOther)
}

// revoke revokes a token the dashboard obtained.
func (s *Server) revoke(ctx context.Context, token string) {
	ctx = context.WithoutCancel(ctx)
	if err := s.vault.do(ctx, token, call{op: "update", path: "auth/token/revoke-self"}, nil); err != nil {
		s.log.Warn("revoking the session's token failed", "status", statusOf(err))
	}
}

// tokenValid asks Vault whether the session's token still works (after a 403, which
// Vault also answers for a revoked or expired token).
func (s *Server) tokenValid(r *http.Request, sess *session) bool {
	_, _, err := get[lookupSelf](r.Context(), s.vault, sess.token, call{op: "read", path: "auth/token/lookup-self"})
	return err == nil || statusOf(err) != http.StatusForbidden
}

func statusOf(err error) int {
	if ve, ok := err.(*VaultError); ok {
		return ve.Status
	}
	return 0
}
