package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

const proxiesDocsDir = "../../docs/proxies"

func readProxyDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(proxiesDocsDir, name))
	require.NoError(t, err)
	return string(b)
}

// TestEnvoyConfigsMatchTheAPI checks docs/proxies/envoy-*.yaml against Envoy's v3 API as
// go-control-plane has it: every field known (typed_config included), every value of
// the right type, every validation rule met. No real Envoy runs here (it is not
// packaged); this catches what a typo or a renamed field would break.
func TestEnvoyConfigsMatchTheAPI(t *testing.T) {
	for _, name := range []string{"envoy-grpc.yaml", "envoy-http.yaml"} {
		t.Run(name, func(t *testing.T) {
			var doc any
			require.NoError(t, yaml.Unmarshal([]byte(readProxyDoc(t, name)), &doc))
			js, err := json.Marshal(doc)
			require.NoError(t, err)
			var b bootstrapv3.Bootstrap
			require.NoError(t, protojson.Unmarshal(js, &b))
			require.NoError(t, b.ValidateAll())
			// typed_config and the other Any fields are not validated by ValidateAll.
			n := validateAnys(t, b.ProtoReflect())
			require.GreaterOrEqual(t, n, 3, "the HTTP connection manager, ext_authz and the router at least")

			text := string(js)
			require.Contains(t, text, `"failure_mode_allow":false`)
			if name == "envoy-http.yaml" {
				require.Contains(t, text, `"path_prefix":"`+pathExtAuthz+`"`)
				require.Contains(t, text, `"uri":"http://`+docsGatewayAddr+`"`)
			} else {
				require.Contains(t, text, `"port_value":8082`)
			}
		})
	}
}

// docsGatewayAddr is the gateway's address in docs/proxies (vaulttest.DocsGatewayAddr).
const docsGatewayAddr = "127.0.0.1:8081"

// validateAnys unpacks every Any in m (recursively), validates it, and returns how many
// it found.
func validateAnys(t *testing.T, m protoreflect.Message) int {
	t.Helper()
	n := 0
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		require.NoError(t, err, a.GetTypeUrl())
		if v, ok := inner.(interface{ ValidateAll() error }); ok {
			require.NoError(t, v.ValidateAll(), a.GetTypeUrl())
		}
		return 1 + validateAnys(t, inner.ProtoReflect())
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				n += validateAnys(t, v.List().Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				n += validateAnys(t, mv.Message())
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			n += validateAnys(t, v.Message())
		}
		return true
	})
	return n
}

// TestProxyDocsUseTheEndpoints: the shipped configs ask the endpoints and send the
// headers this gateway reads (the real proxies run them in integration/proxies_test.go).
func TestProxyDocsUseTheEndpoints(t *testing.T) {
	nginx := readProxyDoc(t, "nginx.conf")
	require.Contains(t, nginx, "proxy_pass http://apikey_gateway"+pathAuthRequest+";")
	require.Contains(t, nginx, "proxy_set_header X-Original-Method $request_method;")
	require.Contains(t, nginx, "proxy_set_header X-Original-URI    $request_uri;")
	require.Equal(t, http.CanonicalHeaderKey("X-Original-URI"), defaultOriginalURIHeader)
	caddy := readProxyDoc(t, "Caddyfile")
	require.Contains(t, caddy, "uri "+pathForwardAuth)
	traefik := readProxyDoc(t, "traefik-dynamic.yml")
	require.Contains(t, traefik, docsGatewayAddr+pathForwardAuth)
	for _, doc := range []string{nginx, caddy, traefik} {
		for _, h := range []string{headerKeyID, headerKeyRole, headerKeyScopes} {
			require.Contains(t, doc, h)
		}
	}
}
