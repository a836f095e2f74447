package dashboard

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

type rolesData struct {
	Roles []string
}

// roles lists the mount's roles (LIST roles/).
func (s *Server) roles(w http.ResponseWriter, r *http.Request, sess *session) {
	names, err := s.engine(sess).listRoles(r.Context())
	if err != nil {
		s.vaultErrorPage(w, r, sess, err)
		return
	}
	s.render(w, r, sess, http.StatusOK, "roles", page{Title: "Roles", Nav: "roles", Data: rolesData{Roles: names}, Flash: flash(r.URL.Query())})
}

type roleDetailData struct {
	Name     string
	Role     roleData
	Chart    chart
	UsageErr *sectionError
}

// roleDetail is one role's definition and its verifications over the last hours.
func (s *Server) roleDetail(w http.ResponseWriter, r *http.Request, sess *session) {
	name := r.PathValue("name")
	if !validRole(name) {
		s.errorPage(w, r, sess, http.StatusNotFound, "Not found", "That is not a role name: role names are lowercase letters, digits and _ . -")
		return
	}
	ctx := r.Context()
	e := s.engine(sess)
	var (
		wg   sync.WaitGroup
		d    = roleDetailData{Name: name}
		rerr error
	)
	wg.Go(func() { d.Role, rerr = e.readRole(ctx, name) })
	wg.Go(func() {
		u, err := e.usage(ctx, url.Values{"granularity": {"hour"}, "role": {name}})
		d.Chart, d.UsageErr = newChart("Verifications of the role's keys per hour by outcome", u), s.section(err)
	})
	wg.Wait()
	if rerr != nil {
		s.vaultErrorPage(w, r, sess, rerr)
		return
	}
	s.render(w, r, sess, http.StatusOK, "role", page{Title: "Role " + name, Nav: "roles", Data: d, Flash: flash(r.URL.Query())})
}

// roleForm is the role form's fields as typed.
type roleForm struct {
	Name, Scopes, TTL, MaxTTL, KeyPrefix, BoundCIDRs      string
	RateLimit, RateLimitBurst, MaxUses, Metadata, Anomaly string
}

func roleFormFrom(name string, d roleData) roleForm {
	var md []string
	for _, p := range sortedPairs(d.Metadata) {
		md = append(md, p.Key+"="+p.Value)
	}
	return roleForm{
		Name:           name,
		Scopes:         strings.Join(d.Scopes, ", "),
		TTL:            fmtSeconds(d.TTL),
		MaxTTL:         fmtSeconds(d.MaxTTL),
		KeyPrefix:      d.KeyPrefix,
		BoundCIDRs:     strings.Join(d.BoundCIDRs, ", "),
		RateLimit:      strconv.FormatFloat(d.RateLimit, 'g', -1, 64),
		RateLimitBurst: strconv.FormatInt(d.RateLimitBurst, 10),
		MaxUses:        strconv.FormatInt(d.MaxUses, 10),
		Metadata:       strings.Join(md, "\n"),
		Anomaly:        d.AnomalyAction,
	}
}

func roleFormFromPost(f url.Values) roleForm {
	g := func(k string) string { return strings.TrimSpace(f.Get(k)) }
	return roleForm{
		Name: g("name"), Scopes: g("scopes"), TTL: g("ttl"), MaxTTL: g("max_ttl"), KeyPrefix: g("key_prefix"),
		BoundCIDRs: g("bound_cidrs"), RateLimit: g("rate_limit"), RateLimitBurst: g("rate_limit_burst"),
		MaxUses: g("max_uses"), Metadata: f.Get("metadata"), Anomaly: g("anomaly_action"),
	}
}

// splitList splits a comma- or space-separated field.
func splitList(s string) []string {
	return append([]string{}, strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\n' || r == '\t' || r == '\r'
	})...)
}

// parseMetadata reads k=v pairs, one per line.
func parseMetadata(s string) (map[string]string, error) {
	out := map[string]string{}
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("metadata: line %d is not key=value", i+1)
		}
		out[k] = v
	}
	return out, nil
}

// body is the role write. A new role gets only the fields filled in (the engine's
// defaults for the rest); an edit sends every field, so what the form shows is what is
// saved, cleared fields included.
func (f roleForm) body(create bool) (map[string]any, error) {
	md, err := parseMetadata(f.Metadata)
	if err != nil {
		return nil, err
	}
	b := map[string]any{}
	put := func(k, v, zero string) {
		switch {
		case v != "":
			b[k] = v
		case !create:
			b[k] = zero
		}
	}
	if scopes := splitList(f.Scopes); len(scopes) > 0 || !create {
		b["scopes"] = scopes
	}
	if cidrs := splitList(f.BoundCIDRs); len(cidrs) > 0 || !create {
		b["bound_cidrs"] = cidrs
	}
	if len(md) > 0 || !create {
		b["metadata"] = md
	}
	put("ttl", f.TTL, "0")
	put("max_ttl", f.MaxTTL, "0")
	put("rate_limit", f.RateLimit, "0")
	put("rate_limit_burst", f.RateLimitBurst, "0")
	put("max_uses", f.MaxUses, "0")
	if f.KeyPrefix != "" {
		b["key_prefix"] = f.KeyPrefix
	}
	if f.Anomaly != "" {
		b["anomaly_action"] = f.Anomaly
	}
	return b, nil
}

type roleFormData struct {
	Form   roleForm
	Create bool
	Errors []string
}

func (s *Server) roleNewForm(w http.ResponseWriter, r *http.Request, sess *session) {
	s.render(w, r, sess, http.StatusOK, "roleform", page{Title: "New role", Nav: "roles", Data: roleFormData{
		Form: roleForm{KeyPrefix: "vk", TTL: "1h", MaxTTL: "24h"}, Create: true,
	}})
}

func (s *Server) roleEditForm(w http.ResponseWriter, r *http.Request, sess *session) {
	name := r.PathValue("name")
	if !validRole(name) {
		s.errorPage(w, r, sess, http.StatusNotFound, "Not found", "That is not a role name.")
		return
	}
	d, err := s.engine(sess).readRole(r.Context(), name)
	if err != nil {
		s.vaultErrorPage(w, r, sess, err)
		return
	}
	s.render(w, r, sess, http.StatusOK, "roleform", page{Title: "Edit role " + name, Nav: "roles", Data: roleFormData{Form: roleFormFrom(name, d)}})
}

func (s *Server) roleCreate(w http.ResponseWriter, r *http.Request, sess *session) {
	s.saveRole(w, r, sess, roleFormFromPost(r.PostForm), true)
}

func (s *Server) roleUpdate(w http.ResponseWriter, r *http.Request, sess *session) {
	f := roleFormFromPost(r.PostForm)
	f.Name = r.PathValue("name")
	s.saveRole(w, r, sess, f, false)
}

// saveRole writes the role; the engine's validation messages come back on the form.
func (s *Server) saveRole(w http.ResponseWriter, r *http.Request, sess *session, f roleForm, create bool) {
	ctx := r.Context()
	e := s.engine(sess)
	again := func(msgs ...string) {
		s.render(w, r, sess, http.StatusBadRequest, "roleform", page{Title: "Role", Nav: "roles", Data: roleFormData{Form: f, Create: create, Errors: msgs}})
	}
	if !validRole(f.Name) {
		again("name: role names are lowercase letters, digits and _ . - (starting and ending with a letter, digit or _), at most 128")
		return
	}
	body, err := f.body(create)
	if err != nil {
		again(err.Error())
		return
	}
	if create {
		// Vault turns a create of an existing role into an update: refuse it here instead.
		if _, err := e.readRole(ctx, f.Name); err == nil {
			again(fmt.Sprintf("name: role %q exists already: edit it instead", f.Name))
			return
		}
	}
	err = e.writeRole(ctx, f.Name, body, create)
	var ve *VaultError
	if errors.As(err, &ve) && ve.Status == http.StatusBadRequest {
		again(ve.Errors...)
		return
	}
	if err != nil {
		s.vaultErrorPage(w, r, sess, err)
		return
	}
	done := "role-updated"
	if create {
		done = "role-created"
	}
	s.log.Info("role saved", "role", f.Name, "create", create, "who", sess.who)
	http.Redirect(w, r, s.cfg.BasePath+"/roles/"+f.Name+"?done="+done, http.StatusSeeOther)
}
