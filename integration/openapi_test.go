//go:build integration

package integration

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"
)

// openAPIDoc is the part of Vault's OpenAPI document the test reads.
type openAPIDoc struct {
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"schemas"`
	} `json:"components"`
}

type openAPIOperation struct {
	OperationID string `json:"operationId"`
	Responses   map[string]struct {
		Content map[string]struct {
			Schema struct {
				Ref string `json:"$ref"`
			} `json:"schema"`
		} `json:"content"`
	} `json:"responses"`
}

// documented returns the response fields the document gives for method on path, and
// whether it documents an answer without data (204).
func (d *openAPIDoc) documented(t *testing.T, path, method string) (fields map[string]bool, noContent bool) {
	t.Helper()
	raw, ok := d.Paths[path][method]
	require.True(t, ok, "OpenAPI has no %s %s", method, path)
	var op openAPIOperation
	require.NoError(t, json.Unmarshal(raw, &op))
	if _, ok := op.Responses["204"]; ok {
		return nil, true
	}
	ok200, ok := op.Responses["200"]
	require.True(t, ok, "%s %s documents no 200 response", method, path)
	_, hasContent := ok200.Content["application/json"]
	require.True(t, hasContent, "%s %s: the 200 response has no content", method, path)
	// Vault 1.21 drops the response's $ref when it merges a plugin's document (the field
	// has no mapstructure tag), so the schema is found by the name the SDK gives it: the
	// operation id in title case + "Response".
	name := strings.TrimPrefix(ok200.Content["application/json"].Schema.Ref, "#/components/schemas/")
	if name == "" {
		name = titleCase(op.OperationID) + "Response"
	}
	schema, ok := d.Components.Schemas[name]
	require.True(t, ok, "%s %s: no response schema %s", method, path, name)
	fields = map[string]bool{}
	for name := range schema.Properties {
		fields[name] = true
	}
	return fields, false
}

// titleCase turns "api-key-verify" into "ApiKeyVerify", as the SDK names schemas.
func titleCase(hyphenated string) string {
	var b strings.Builder
	for _, part := range strings.Split(hyphenated, "-") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

// TestOpenAPIDocumentsWhatHandlersReturn reads sys/internal/specs/openapi from a real
// server and checks each of the engine's operations against what it actually returns.
func TestOpenAPIDocumentsWhatHandlersReturn(t *testing.T) {
	t.Parallel()
	s := Setup(t)
	c := s.Client

	raw, err := c.Logical().ReadRaw("sys/internal/specs/openapi")
	require.NoError(t, err)
	defer raw.Body.Close()
	var doc openAPIDoc
	require.NoError(t, json.NewDecoder(raw.Body).Decode(&doc))

	write := func(path string, data map[string]interface{}) *api.Secret {
		sec, err := c.Logical().Write(path, data)
		require.NoError(t, err, path)
		return sec
	}
	read := func(path string) *api.Secret {
		sec, err := c.Logical().Read(path)
		require.NoError(t, err, path)
		return sec
	}
	list := func(path string) *api.Secret {
		sec, err := c.Logical().List(path)
		require.NoError(t, err, path)
		return sec
	}

	cases := []struct {
		name, path, method string
		do                 func() *api.Secret
	}{
		{"role write", "/apikey/roles/{name}", "post", func() *api.Secret {
			return write("apikey/roles/docs", map[string]interface{}{"scopes": "a", "ttl": "1h", "max_uses": 5, "rate_limit": 10})
		}},
		{"role read", "/apikey/roles/{name}", "get", func() *api.Secret { return read("apikey/roles/docs") }},
		{"role list", "/apikey/roles/", "get", func() *api.Secret { return list("apikey/roles") }},
		{"issue (read)", "/apikey/creds/{role}", "get", func() *api.Secret { return read("apikey/creds/docs") }},
		{"issue (write)", "/apikey/creds/{role}", "post", func() *api.Secret {
			return write("apikey/creds/docs", map[string]interface{}{"name": "n"})
		}},
		{"rotate", "/apikey/creds/{role}/rotate", "post", func() *api.Secret {
			k := issueAPI(t, c, "apikey", "docs", nil)
			return write("apikey/creds/docs/rotate", map[string]interface{}{"key_id": k.KeyID})
		}},
		{"verify", "/apikey/verify", "post", func() *api.Secret {
			k := issueAPI(t, c, "apikey", "docs", nil)
			return write("apikey/verify", map[string]interface{}{"api_key": k.Key})
		}},
		{"verify refused", "/apikey/verify", "post", func() *api.Secret {
			k := issueAPI(t, c, "apikey", "docs", nil)
			for range 6 {
				write("apikey/verify", map[string]interface{}{"api_key": k.Key})
			}
			return write("apikey/verify", map[string]interface{}{"api_key": k.Key})
		}},
		{"key list", "/apikey/keys/", "get", func() *api.Secret { return list("apikey/keys") }},
		{"key read (rotated)", "/apikey/keys/{key_id}", "get", func() *api.Secret {
			k := issueAPI(t, c, "apikey", "docs", nil)
			write("apikey/creds/docs/rotate", map[string]interface{}{"key_id": k.KeyID})
			return read("apikey/keys/" + k.KeyID)
		}},
		{"key update", "/apikey/keys/{key_id}", "post", func() *api.Secret {
			k := issueAPI(t, c, "apikey", "docs", nil)
			return write("apikey/keys/"+k.KeyID, map[string]interface{}{"disabled": true})
		}},
		{"key delete", "/apikey/keys/{key_id}", "delete", func() *api.Secret {
			k := issueAPI(t, c, "apikey", "docs", nil)
			sec, err := c.Logical().Delete("apikey/keys/" + k.KeyID)
			require.NoError(t, err)
			return sec
		}},
		{"config read", "/apikey/config", "get", func() *api.Secret { return read("apikey/config") }},
		{"config write", "/apikey/config", "post", func() *api.Secret {
			return write("apikey/config", map[string]interface{}{"cache_size": 20000})
		}},
		{"tidy", "/apikey/tidy", "post", func() *api.Secret { return write("apikey/tidy", nil) }},
		{"role delete", "/apikey/roles/{name}", "delete", func() *api.Secret {
			write("apikey/roles/gone", map[string]interface{}{"scopes": "a"})
			sec, err := c.Logical().Delete("apikey/roles/gone")
			require.NoError(t, err)
			return sec
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fields, noContent := doc.documented(t, tc.path, tc.method)
			sec := tc.do()
			if noContent {
				require.True(t, sec == nil || len(sec.Data) == 0, "%s %s is documented as 204 but returned %v", tc.method, tc.path, sec)
				return
			}
			require.NotNil(t, sec, "%s %s returned nothing", tc.method, tc.path)
			require.NotEmpty(t, sec.Data)
			for field := range sec.Data {
				require.True(t, fields[field], "%s %s returns %q, which OpenAPI does not document", tc.method, tc.path, field)
			}
		})
	}
}
