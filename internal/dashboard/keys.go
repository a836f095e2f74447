package dashboard

import (
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
)

var (
	// keyIDPattern is a key_id: 16 base62 characters.
	keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9]{16}$`)
	// roleNamePattern is what the engine's paths accept as a role name (Vault's
	// GenericNameRegex), lowercase as the engine requires.
	roleNamePattern = regexp.MustCompile(`^[a-z0-9_](?:[a-z0-9_.-]{0,126}[a-z0-9_])?$`)
)

func itoa(n int) string { return strconv.Itoa(n) }

// engine is the apikey mount called with the session's token.
func (s *Server) engine(sess *session) engine {
	return engine{v: s.vault, mount: s.cfg.Mount, token: sess.token}
}

// validRole reports whether name can be a role name (so it cannot change the path it
// is put in).
func validRole(name string) bool {
	return roleNamePattern.MatchString(name) && !strings.Contains(name, "..")
}

// Page sizes the key list offers.
var pageSizes = []int{25, 50, 100, 250, 500, 1000}

const defaultPageSize = 50

// keyFilter is the key list's search form, as the URL carries it.
type keyFilter struct {
	Role           string
	Status         string
	Name           string
	Metadata       string // k=v, several separated by commas or new lines
	ExpiringWithin string
	UnusedFor      string
	NeverUsed      string
	Limit          int
	After          string
}

func keyFilterFrom(q url.Values) keyFilter {
	f := keyFilter{
		Role:           strings.TrimSpace(q.Get("role")),
		Status:         q.Get("status"),
		Name:           strings.TrimSpace(q.Get("name")),
		Metadata:       strings.TrimSpace(q.Get("metadata")),
		ExpiringWithin: strings.TrimSpace(q.Get("expiring_within")),
		UnusedFor:      strings.TrimSpace(q.Get("unused_for")),
		NeverUsed:      q.Get("never_used"),
		After:          q.Get("after"),
		Limit:          defaultPageSize,
	}
	if n, err := strconv.Atoi(q.Get("limit")); err == nil && slices.Contains(pageSizes, n) {
		f.Limit = n
	}
	if !slices.Contains(keyStatuses, f.Status) {
		f.Status = ""
	}
	if f.NeverUsed != "true" && f.NeverUsed != "false" {
		f.NeverUsed = ""
	}
	return f
}

// vaultParams are the keys/ LIST's query parameters for f.
func (f keyFilter) vaultParams() url.Values {
	v := url.Values{"limit": {itoa(f.Limit)}, "after": {f.After}}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set("role", f.Role)
	set("status", f.Status)
	set("name", f.Name)
	set("expiring_within", f.ExpiringWithin)
	set("unused_for", f.UnusedFor)
	set("never_used", f.NeverUsed)
	for _, p := range splitPairs(f.Metadata) {
		v.Add("metadata", p)
	}
	return v
}

// query is f as the dashboard's own URL query, with after set to after.
func (f keyFilter) query(after string) string {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set("role", f.Role)
	set("status", f.Status)
	set("name", f.Name)
	set("metadata", f.Metadata)
	set("expiring_within", f.ExpiringWithin)
	set("unused_for", f.UnusedFor)
	set("never_used", f.NeverUsed)
	if f.Limit != defaultPageSize {
		v.Set("limit", itoa(f.Limit))
	}
	set("after", after)
	return v.Encode()
}

// splitPairs splits k=v pairs given one per line or separated by commas.
func splitPairs(s string) []string {
	var out []string
	for _, line := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == ',' }) {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}

// keyRow is one row of the key list, formatted here rather than in the template: a
// page can have 1000 rows, and each template call costs reflection.
type keyRow struct {
	ID, Name, Role, Status       string
	Identity                     string
	Created, Expires, ExpiresRel string
	Uses                         int64
	LastUsed                     string // relative, "" if never
}

type keysData struct {
	Filter keyFilter
	Rows   []keyRow
	// NextQuery and FirstPage are the URLs of the next and the first page ("" when there
	// is none): built here from url.Values.Encode, so they are safe as they are.
	NextQuery template.URL
	FirstPage template.URL
	Roles     []string
	Statuses  []string
	PageSizes []int
	Error     *sectionError
	Filtered  bool
}

// keys is the inventory: one page of keys/ LIST with the search's filters; the engine
// pages it (limit, after, next_after), so a page costs the same at 100 keys or 100 000.
func (s *Server) keys(w http.ResponseWriter, r *http.Request, sess *session) {
	q := r.URL.Query()
	if id := strings.TrimSpace(q.Get("key_id")); id != "" {
		if keyIDPattern.MatchString(id) {
			http.Redirect(w, r, s.cfg.BasePath+"/keys/"+id, http.StatusSeeOther)
			return
		}
	}
	ctx := r.Context()
	e := s.engine(sess)
	f := keyFilterFrom(q)
	d := keysData{Filter: f, Statuses: keyStatuses, PageSizes: pageSizes}
	d.Filtered = f.Role != "" || f.Status != "" || f.Name != "" || f.Metadata != "" || f.ExpiringWithin != "" ||
		f.UnusedFor != "" || f.NeverUsed != ""
	if id := strings.TrimSpace(q.Get("key_id")); id != "" {
		d.Error = &sectionError{Message: "key_id: a key_id is 16 letters and digits"}
		s.render(w, r, sess, http.StatusBadRequest, "keys", page{Title: "Keys", Nav: "keys", Data: d})
		return
	}
	var (
		wg    sync.WaitGroup
		list  keyList
		err   error
		roles []string
	)
	wg.Go(func() { list, err = e.listKeys(ctx, f.vaultParams()) })
	wg.Go(func() { roles, _ = e.listRoles(ctx) }) // only for the role picker: without list on roles/, a text field
	wg.Wait()
	d.Roles = roles
	var ve *VaultError
	if err != nil && errors.As(err, &ve) && ve.Status == http.StatusBadRequest {
		// A filter the engine refused: its message names the field.
		d.Error = &sectionError{Message: strings.Join(ve.Errors, "; ")}
		s.render(w, r, sess, http.StatusBadRequest, "keys", page{Title: "Keys", Nav: "keys", Data: d})
		return
	}
	if err != nil {
		s.vaultErrorPage(w, r, sess, err)
		return
	}
	d.Rows = make([]keyRow, 0, len(list.Keys))
	for _, id := range list.Keys {
		k := list.KeyInfo[id]
		row := keyRow{ID: id, Name: k.Name, Role: k.Role, Identity: k.Identity, Status: k.Status, Created: s.fmtTime(k.CreatedAt),
			Expires: s.fmtTime(k.ExpiresAt), ExpiresRel: s.relTime(k.ExpiresAt), Uses: k.UseCount}
		if k.LastUsedAt != "" {
			row.LastUsed = s.relTime(k.LastUsedAt)
		}
		d.Rows = append(d.Rows, row)
	}
	if list.NextAfter != "" {
		d.NextQuery = template.URL(s.cfg.BasePath + "/keys?" + f.query(list.NextAfter))
	}
	if f.After != "" {
		d.FirstPage = template.URL(s.cfg.BasePath + "/keys?" + f.query(""))
	}
	s.render(w, r, sess, http.StatusOK, "keys", page{Title: "Keys", Nav: "keys", Data: d, Flash: flash(q)})
}

// flash is the message of a finished action, from a fixed list (the URL names which).
func flash(q url.Values) string {
	switch q.Get("done") {
	case "disabled":
		return "The key is disabled: verify answers DISABLED from now on."
	case "enabled":
		return "The key is enabled again."
	case "deleted":
		return "The key was deleted: verify answers NOT_FOUND from now on."
	case "role-created":
		return "The role was created."
	case "role-updated":
		return "The role was saved."
	}
	return ""
}

type keyDetailData struct {
	ID          string
	Key         keyRecord
	Exists      bool
	Granularity string
	Usage       usageData
	Chart       chart
	UsageErr    *sectionError
	TagMax      int64
	Anomalies   []anomalyInfo
	AnomalyErr  *sectionError
	// What the person may do, from sys/capabilities-self (all true when unknown).
	CanUpdate, CanDelete, CanRotate bool
	KeyPath, RotatePath             string
	CapsKnown                       bool
}

func hasCap(caps []string, want ...string) bool {
	for _, c := range caps {
		if c == "root" || slices.Contains(want, c) {
			return true
		}
	}
	return false
}

// keyDetail is one key: its record, its usage by outcome, tag and network, its
// anomalies, and the actions the person's token allows.
func (s *Server) keyDetail(w http.ResponseWriter, r *http.Request, sess *session) {
	id := r.PathValue("id")
	if !keyIDPattern.MatchString(id) {
		s.errorPage(w, r, sess, http.StatusNotFound, "Not found", "A key_id is 16 letters and digits.")
		return
	}
	ctx := r.Context()
	e := s.engine(sess)
	d := keyDetailData{ID: id, Granularity: "hour"}
	if r.URL.Query().Get("granularity") == "day" {
		d.Granularity = "day"
	}
	var (
		wg      sync.WaitGroup
		readErr error
	)
	wg.Go(func() { d.Key, readErr = e.readKey(ctx, id) })
	wg.Go(func() {
		u, err := e.keyUsage(ctx, id, url.Values{"granularity": {d.Granularity}})
		d.Usage = u
		if isStatus(err, http.StatusNotFound) {
			err = nil // no usage yet (or an unknown key: the record's read says which)
		}
		d.UsageErr = s.section(err)
		title := "Verifications per hour by outcome"
		if d.Granularity == "day" {
			title = "Verifications per day by outcome"
		}
		d.Chart = newChart(title, u)
		for _, t := range u.Tags {
			d.TagMax = max(d.TagMax, t.Total)
		}
	})
	wg.Go(func() {
		l, err := e.listAnomalies(ctx, url.Values{"key_id": {id}, "limit": {"100"}})
		d.AnomalyErr = s.section(err)
		for _, aid := range l.Keys {
			if a, ok := l.KeyInfo[aid]; ok {
				a.ID = aid
				d.Anomalies = append(d.Anomalies, a)
			}
		}
		slices.Reverse(d.Anomalies)
	})
	wg.Wait()
	switch {
	case readErr == nil:
		d.Exists = true
	case isStatus(readErr, http.StatusNotFound) && d.Usage.KeyID != "":
		// Deleted or revoked, its usage still kept: show what is left.
		d.Key = keyRecord{KeyID: id, Role: d.Usage.Role}
	default:
		s.vaultErrorPage(w, r, sess, readErr)
		return
	}
	d.KeyPath = e.path("keys", id)
	d.RotatePath = e.path("creds", d.Key.Role, "rotate")
	d.CanUpdate, d.CanDelete, d.CanRotate = true, true, validRole(d.Key.Role)
	if caps := e.capabilities(ctx, d.KeyPath, d.RotatePath); caps != nil {
		d.CapsKnown = true
		d.CanUpdate = hasCap(caps[d.KeyPath], "update")
		d.CanDelete = hasCap(caps[d.KeyPath], "delete")
		d.CanRotate = d.CanRotate && hasCap(caps[d.RotatePath], "update")
	}
	s.render(w, r, sess, http.StatusOK, "key", page{Title: "Key " + id, Nav: "keys", Data: d, Flash: flash(r.URL.Query())})
}

// keyActions are the actions on one key, each confirmed on a page of its own.
var keyActions = map[string]struct {
	Title, Verb, Explain string
}{
	"disable": {"Disable key", "Disable", "Verify answers DISABLED for this key from the next request on. Its lease is untouched; you can enable it again."},
	"enable":  {"Enable key", "Enable", "Verify accepts this key again (if it has not expired)."},
	"rotate":  {"Rotate key", "Rotate", "Issues a replacement with the same role, scopes, name and spent uses, and shows it once. The old key keeps verifying for the grace period, then answers EXPIRED."},
	"delete": {"Delete key", "Delete", "Deletes the key's record: verify answers NOT_FOUND at once, and this cannot be undone. " +
		"Its Vault lease is not revoked by this: the engine's record does not hold the lease id, so the dashboard cannot name it. " +
		"The lease revokes as a no-op when it ends; whoever received the key also received its lease id and can run vault lease revoke <lease_id>."},
}

type confirmData struct {
	Action  string
	Title   string
	Verb    string
	Explain string
	ID      string
	Key     keyRecord
	Grace   string
	Error   string
}

// keyActionConfirm is the confirmation page of an action: a form that posts it.
func (s *Server) keyActionConfirm(w http.ResponseWriter, r *http.Request, sess *session) {
	id, action := r.PathValue("id"), r.PathValue("action")
	a, ok := keyActions[action]
	if !keyIDPattern.MatchString(id) || !ok {
		s.errorPage(w, r, sess, http.StatusNotFound, "Not found", "There is no such action.")
		return
	}
	k, err := s.engine(sess).readKey(r.Context(), id)
	if err != nil {
		s.vaultErrorPage(w, r, sess, err)
		return
	}
	s.render(w, r, sess, http.StatusOK, "confirm", page{Title: a.Title, Nav: "keys", Data: confirmData{
		Action: action, Title: a.Title, Verb: a.Verb, Explain: a.Explain, ID: id, Key: k, Grace: "1h",
	}})
}

// keyAction performs a confirmed action.
func (s *Server) keyAction(w http.ResponseWriter, r *http.Request, sess *session) {
	id, action := r.PathValue("id"), r.PathValue("action")
	a, ok := keyActions[action]
	if !keyIDPattern.MatchString(id) || !ok {
		s.errorPage(w, r, sess, http.StatusNotFound, "Not found", "There is no such action.")
		return
	}
	ctx := r.Context()
	e := s.engine(sess)
	switch action {
	case "disable", "enable":
		if err := e.updateKey(ctx, id, map[string]any{"disabled": action == "disable"}); err != nil {
			s.vaultErrorPage(w, r, sess, err)
			return
		}
		s.log.Info("key "+action+"d", "key_id", id, "who", sess.who)
		http.Redirect(w, r, s.cfg.BasePath+"/keys/"+id+"?done="+action+"d", http.StatusSeeOther)
	case "delete":
		if err := e.deleteKey(ctx, id); err != nil {
			s.vaultErrorPage(w, r, sess, err)
			return
		}
		s.log.Info("key deleted", "key_id", id, "who", sess.who)
		http.Redirect(w, r, s.cfg.BasePath+"/keys?done=deleted", http.StatusSeeOther)
	case "rotate":
		role := r.PostForm.Get("role")
		grace := strings.TrimSpace(r.PostForm.Get("grace_period"))
		apiKey := strings.TrimSpace(r.PostForm.Get("api_key"))
		again := func(status int, msg string) {
			k, _ := e.readKey(ctx, id)
			if k.KeyID == "" {
				k = keyRecord{KeyID: id, Role: role}
			}
			s.render(w, r, sess, status, "confirm", page{Title: a.Title, Nav: "keys", Data: confirmData{
				Action: action, Title: a.Title, Verb: a.Verb, Explain: a.Explain, ID: id, Key: k, Grace: grace, Error: msg,
			}})
		}
		if !validRole(role) {
			again(http.StatusBadRequest, "role: not a role name")
			return
		}
		body := map[string]any{"key_id": id}
		if apiKey != "" {
			// Proof of possession: what policies/issuer.hcl allows its holder.
			body = map[string]any{"api_key": apiKey}
		}
		if grace != "" {
			body["grace_period"] = grace
		}
		k, warnings, err := e.rotate(ctx, role, body)
		var ve *VaultError
		if errors.As(err, &ve) && ve.Status == http.StatusBadRequest {
			again(http.StatusBadRequest, strings.Join(ve.Errors, "; "))
			return
		}
		if err != nil {
			s.vaultErrorPage(w, r, sess, err)
			return
		}
		s.log.Info("key rotated", "old_key_id", k.OldKeyID, "key_id", k.KeyID, "who", sess.who)
		s.renderIssued(w, r, sess, k, warnings, "Key rotated")
	}
}
