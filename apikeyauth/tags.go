package apikeyauth

import (
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usagestats"
)

// MaxTags is the most tags one verify call may carry: Config.Tags, a handler's tags and
// the route tag together.
const MaxTags = usagestats.MaxTags

// checkTags validates tags the way verify does (usagestats.ParseTags: name=value, at most
// MaxTags, no name twice) and returns a copy. routeTag, when set, takes one of the
// MaxTags and its name must not be used by tags; it comes first, so that a clash is
// reported on the tag in tags.
func checkTags(routeTag string, tags []string) ([]string, error) {
	all := tags
	if routeTag != "" {
		// The value is a placeholder: route values are made valid per request (routeTagValue).
		all = append([]string{routeTag + "=route"}, tags...)
	}
	if _, err := usagestats.ParseTags(all); err != nil {
		return nil, err
	}
	return slices.Clone(tags), nil
}

// checkRouteTagName validates Config.RouteTag as a tag name.
func checkRouteTagName(name string) error {
	err := usagestats.Tag{Name: name, Value: "route"}.Validate()
	if te, ok := errors.AsType[*usagestats.TagError](err); ok {
		return fmt.Errorf("RouteTag %.80q: %s", name, te.Reason)
	}
	return err
}

// routeTagValue turns a route pattern into a valid tag value, deterministically: every
// byte outside what a tag value allows (printable ASCII other than '=': a space, a
// control character, any byte of a non-ASCII character) becomes '_', and the result is
// cut to usagestats.MaxTagValueLen bytes. So "GET /orders/{id}" is sent as
// "GET_/orders/{id}". Route patterns are few and fixed, so the values stay few; a
// pattern the engine would refuse must never turn every request into a 400 from Vault.
// "" stays "" (no route tag).
func routeTagValue(pattern string) string {
	if len(pattern) > usagestats.MaxTagValueLen {
		pattern = pattern[:usagestats.MaxTagValueLen]
	}
	i := 0
	for i < len(pattern) && tagValueByte(pattern[i]) {
		i++
	}
	if i == len(pattern) {
		return pattern // already valid: no allocation
	}
	b := []byte(pattern)
	for ; i < len(b); i++ {
		if !tagValueByte(b[i]) {
			b[i] = '_'
		}
	}
	return string(b)
}

// tagValueByte reports whether a tag value may hold c (usagestats.Tag.Validate).
func tagValueByte(c byte) bool { return c >= 0x21 && c <= 0x7e && c != '=' }

// tagsFor returns the tags of a verify for r under req: Config.Tags and the handler's
// tags, plus RouteTag=<r.Pattern made valid> when RouteTag is set and r matched a
// ServeMux pattern. The raw URL path is never used: its values are unbounded.
func (m *Middleware) tagsFor(r *http.Request, req requirement) []string {
	if m.routeTag == "" || r.Pattern == "" {
		return req.tags
	}
	tags := make([]string, 0, len(req.tags)+1)
	tags = append(tags, req.tags...)
	return append(tags, m.routeTag+"="+routeTagValue(r.Pattern))
}
