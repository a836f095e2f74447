package dashboard

import (
	"errors"
	"net/http"
	"strings"
)

type issueForm struct {
	Role, Scopes, TTL, Name, Metadata string
}

type issueFormData struct {
	Form   issueForm
	Roles  []string
	Errors []string
	// The rotation form (by proof of possession) on the same page.
	RotateErrors []string
	Grace        string
}

// issueForm is the form that issues a key: role, narrowed scopes, ttl, name, metadata.
func (s *Server) issueForm(w http.ResponseWriter, r *http.Request, sess *session) {
	d := issueFormData{Form: issueForm{Role: r.URL.Query().Get("role")}, Grace: "1h"}
	if !validRole(d.Form.Role) {
		d.Form.Role = ""
	}
	d.Roles, _ = s.engine(sess).listRoles(r.Context()) // issuers may not list roles: then a text field
	s.render(w, r, sess, http.StatusOK, "issue", page{Title: "Issue a key", Nav: "issue", Data: d})
}

// issue writes creds/<role> and shows the key once.
func (s *Server) issue(w http.ResponseWriter, r *http.Request, sess *session) {
	pf := r.PostForm
	f := issueForm{
		Role:     strings.TrimSpace(pf.Get("role")),
		Scopes:   strings.TrimSpace(pf.Get("scopes")),
		TTL:      strings.TrimSpace(pf.Get("ttl")),
		Name:     pf.Get("name"),
		Metadata: pf.Get("metadata"),
	}
	ctx := r.Context()
	e := s.engine(sess)
	again := func(msgs ...string) {
		roles, _ := e.listRoles(ctx)
		s.render(w, r, sess, http.StatusBadRequest, "issue", page{Title: "Issue a key", Nav: "issue", Data: issueFormData{Form: f, Roles: roles, Errors: msgs}})
	}
	if !validRole(f.Role) {
		again("role: choose a role (lowercase letters, digits and _ . -)")
		return
	}
	body := map[string]any{}
	if scopes := splitList(f.Scopes); len(scopes) > 0 {
		body["scopes"] = scopes
	}
	if f.TTL != "" {
		body["ttl"] = f.TTL
	}
	if f.Name != "" {
		body["name"] = f.Name
	}
	md, err := parseMetadata(f.Metadata)
	if err != nil {
		again(err.Error())
		return
	}
	if len(md) > 0 {
		body["metadata"] = md
	}
	k, warnings, err := e.issue(ctx, f.Role, body)
	var ve *VaultError
	if errors.As(err, &ve) && ve.Status == http.StatusBadRequest {
		again(ve.Errors...)
		return
	}
	if err != nil {
		s.vaultErrorPage(w, r, sess, err)
		return
	}
	s.log.Info("key issued", "key_id", k.KeyID, "role", k.Role, "who", sess.who)
	s.renderIssued(w, r, sess, k, warnings, "Key issued")
}

type issuedData struct {
	Heading  string
	Key      issuedKey
	Warnings []string
}

// renderIssued shows a key issued or rotated: the only page that ever holds a key. It
// is the answer to the POST (never a redirect to a URL that could show it again), is
// not stored by any cache, and the key is not kept anywhere.
func (s *Server) renderIssued(w http.ResponseWriter, r *http.Request, sess *session, k issuedKey, warnings []string, heading string) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	s.render(w, r, sess, http.StatusOK, "issued", page{Title: heading, Nav: "issue", Data: issuedData{Heading: heading, Key: k, Warnings: warnings}})
}

// rotateHeld rotates a key the person holds, by proof of possession (api_key): what
// policies/issuer.hcl allows an issuer, who cannot read the inventory.
func (s *Server) rotateHeld(w http.ResponseWriter, r *http.Request, sess *session) {
	pf := r.PostForm
	role := strings.TrimSpace(pf.Get("role"))
	apiKey := strings.TrimSpace(pf.Get("api_key"))
	grace := strings.TrimSpace(pf.Get("grace_period"))
	ctx := r.Context()
	e := s.engine(sess)
	again := func(msgs ...string) {
		roles, _ := e.listRoles(ctx)
		s.render(w, r, sess, http.StatusBadRequest, "issue", page{Title: "Issue a key", Nav: "issue", Data: issueFormData{
			Form: issueForm{Role: role}, Roles: roles, RotateErrors: msgs, Grace: grace}})
	}
	if !validRole(role) {
		again("role: choose the key's role")
		return
	}
	if apiKey == "" {
		again("api_key: paste the key to rotate")
		return
	}
	body := map[string]any{"api_key": apiKey}
	if grace != "" {
		body["grace_period"] = grace
	}
	k, warnings, err := e.rotate(ctx, role, body)
	var ve *VaultError
	if errors.As(err, &ve) && ve.Status == http.StatusBadRequest {
		again(ve.Errors...)
		return
	}
	if err != nil {
		s.vaultErrorPage(w, r, sess, err)
		return
	}
	s.log.Info("key rotated", "old_key_id", k.OldKeyID, "key_id", k.KeyID, "who", sess.who)
	s.renderIssued(w, r, sess, k, warnings, "Key rotated")
}
