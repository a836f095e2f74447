package apikey

import (
	"maps"
	"net/http"

	"github.com/hashicorp/vault/sdk/framework"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// Response schemas for Vault's OpenAPI document (sys/internal/specs/openapi). Each path
// documents what its handler returns; the integration suite compares the two against a
// real server.

// okResponse documents a 200 answer with these data fields.
func okResponse(fields map[string]*framework.FieldSchema) map[int][]framework.Response {
	return map[int][]framework.Response{http.StatusOK: {{Description: http.StatusText(http.StatusOK), Fields: fields}}}
}

// noContentResponse documents an answer without data (Vault sends 204).
func noContentResponse() map[int][]framework.Response {
	return map[int][]framework.Response{http.StatusNoContent: {{Description: http.StatusText(http.StatusNoContent)}}}
}

// listResponse documents a LIST answer; withInfo adds key_info (vault list -detailed).
func listResponse(withInfo bool) map[int][]framework.Response {
	fields := map[string]*framework.FieldSchema{
		"keys": {Type: framework.TypeStringSlice, Description: "The names."},
	}
	if withInfo {
		fields["key_info"] = &framework.FieldSchema{Type: framework.TypeMap, Description: "Details by name."}
	}
	return okResponse(fields)
}

// pagedListResponse documents a LIST answer with key_info that may end before the last
// name: next_after, when present, is where the next page starts.
func pagedListResponse() map[int][]framework.Response {
	resp := listResponse(true)
	resp[http.StatusOK][0].Fields["next_after"] = &framework.FieldSchema{
		Type:        framework.TypeString,
		Description: "Present when more names may follow: pass it as after to get the next page.",
	}
	return resp
}

// withFields returns a copy of base with extra added; a nil schema in extra removes
// that field.
func withFields(base map[string]*framework.FieldSchema, extra map[string]*framework.FieldSchema) map[string]*framework.FieldSchema {
	out := maps.Clone(base)
	for name, schema := range extra {
		if schema == nil {
			delete(out, name)
			continue
		}
		out[name] = schema
	}
	return out
}

// keyPublicFields documents keyEntry.publicData: what reads, issue and verify show
// about a key.
var keyPublicFields = map[string]*framework.FieldSchema{
	verifyapi.FieldKeyID:     {Type: framework.TypeString, Description: "Public identifier of the key."},
	verifyapi.FieldRole:      {Type: framework.TypeString, Description: "Role the key was issued from."},
	verifyapi.FieldName:      {Type: framework.TypeString, Description: "The key's label."},
	verifyapi.FieldKeyScopes: {Type: framework.TypeStringSlice, Description: "Scopes granted to the key."},
	verifyapi.FieldMetadata:  {Type: framework.TypeKVPairs, Description: "The key's metadata."},
	verifyapi.FieldExpiresAt: {Type: framework.TypeString, Description: "When the key stops verifying (RFC 3339)."},
	verifyapi.FieldTTL:       {Type: framework.TypeInt, Description: "Seconds until the key stops verifying."},
}
