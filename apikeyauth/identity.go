package apikeyauth

import (
	"context"
	"maps"
	"slices"
	"time"
)

// Identity is what verify said about the key a request presented. Each request gets its
// own copy: a handler may keep or change it without affecting others.
type Identity struct {
	KeyID     string
	Role      string
	Name      string
	Scopes    []string
	Metadata  map[string]string
	ExpiresAt time.Time
}

func (id *Identity) clone() *Identity {
	if id == nil {
		return nil
	}
	c := *id
	c.Scopes = slices.Clone(id.Scopes)
	c.Metadata = maps.Clone(id.Metadata)
	return &c
}

type identityKey struct{}

// WithIdentity returns a context carrying id, as the middleware gives handlers. Useful to
// test handlers without Vault.
func WithIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the identity of the verified key of the request whose context
// is ctx; false when the request did not pass through the middleware.
func IdentityFrom(ctx context.Context) (*Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(*Identity)
	return id, ok && id != nil
}
