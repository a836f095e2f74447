package main

// The gRPC side of forward-auth mode: Envoy's ext_authz service
// envoy.service.auth.v3.Authorization/Check on -grpc-listen.

import (
	"context"
	"crypto/tls"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// extAuthz is the Authorization service. Check answers like the HTTP endpoints: Envoy's
// description of the request becomes the original request, which goes through the same
// rules, routes and middleware.
type extAuthz struct {
	authv3.UnimplementedAuthorizationServer
	f *forwardAuth
}

// newGRPCServer returns the gRPC server of -grpc-listen (TLS with the -tls-cert-file
// certificate when tlsConfig is set).
func newGRPCServer(f *forwardAuth, tlsConfig *tls.Config) *grpc.Server {
	var opts []grpc.ServerOption
	if tlsConfig != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConfig)))
	}
	s := grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(s, &extAuthz{f: f})
	return s
}

func (s *extAuthz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	info := &requestInfo{}
	ans := newAnswer()
	remote := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		remote = p.Addr.String()
	}
	r := checkHTTPRequest(ctx, req, remote)
	orig := s.f.decide(ans, r, shapeEnvoyGRPC, info)
	if err := ctx.Err(); err != nil {
		s.f.logRequest(ctx, shapeEnvoyGRPC, orig, ans, 499, start, info, remote)
		return nil, status.FromContextError(err).Err()
	}
	resp := s.f.checkResponse(r.Header, ans)
	s.f.logRequest(ctx, shapeEnvoyGRPC, orig, ans, ans.finalStatus(), start, info, remote)
	return resp, nil
}

// checkHTTPRequest is the request Envoy describes, as decide reads a proxy's request:
// the original method and request target (path and query, undecoded), its headers, the
// gRPC peer (Envoy) as RemoteAddr, and the client Envoy saw (its source address) as the
// only X-Forwarded-For.
func checkHTTPRequest(ctx context.Context, req *authv3.CheckRequest, remoteAddr string) *http.Request {
	h := req.GetAttributes().GetRequest().GetHttp()
	hdr := http.Header{}
	add := func(k, v string) {
		if strings.HasPrefix(k, ":") {
			return // pseudo-headers: method and path are read from their fields
		}
		k = http.CanonicalHeaderKey(k)
		hdr[k] = append(hdr[k], v)
	}
	for _, k := range slices.Sorted(maps.Keys(h.GetHeaders())) {
		add(k, h.GetHeaders()[k])
	}
	// With encode_raw_headers, headers come one by one and raw.
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		v := hv.GetValue()
		if raw := hv.GetRawValue(); len(raw) > 0 {
			v = string(raw)
		}
		add(hv.GetKey(), v)
	}
	delete(hdr, "X-Forwarded-For")
	if a := req.GetAttributes().GetSource().GetAddress().GetSocketAddress().GetAddress(); a != "" {
		hdr.Set("X-Forwarded-For", a)
	}
	r := &http.Request{
		Method:     h.GetMethod(),
		RequestURI: h.GetPath(),
		URL:        &url.URL{},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     hdr,
		Host:       h.GetHost(),
		RemoteAddr: remoteAddr,
		Body:       http.NoBody,
	}
	return r.WithContext(ctx)
}

// checkResponse puts ans in Envoy's terms: allowed, the identity headers to set (over
// any the client sent) and the headers to remove (headersToRemove); refused, the HTTP
// status, headers and JSON body the client gets, and a gRPC status other than OK.
func (f *forwardAuth) checkResponse(reqHeader http.Header, ans *answer) *authv3.CheckResponse {
	if ans.allowed() {
		var headers []*corev3.HeaderValueOption
		for _, name := range []string{headerKeyID, headerKeyRole, headerKeyScopes} {
			// Envoy does not set empty values: an empty one is removed instead (see
			// headersToRemove), so that no client copy survives.
			if v := ans.header.Get(name); v != "" {
				headers = append(headers, envoyHeader(name, v))
			}
		}
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers:         headers,
				HeadersToRemove: f.headersToRemove(reqHeader, ans),
			}},
		}
	}
	st := ans.finalStatus()
	code := ans.code()
	h := ans.header.Clone()
	h.Set(headerCode, code)
	h.Set(headerStatus, strconv.Itoa(st))
	h.Set("Cache-Control", "no-store")
	var headers []*corev3.HeaderValueOption
	for _, k := range slices.Sorted(maps.Keys(h)) {
		for _, v := range h[k] {
			headers = append(headers, envoyHeader(k, v))
		}
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(grpcCode(st)), Message: code},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(st)},
			Headers: headers,
			Body:    ans.body.String(),
		}},
	}
}

// envoyHeader is a header that replaces any of the same name.
func envoyHeader(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: strings.ToLower(name), Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// grpcCode is the gRPC status of a refusal with HTTP status st (Envoy denies on any
// code but OK and sends the client the DeniedHttpResponse; the code is for its logs).
func grpcCode(st int) codes.Code {
	switch st {
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	case http.StatusBadRequest, http.StatusMethodNotAllowed:
		return codes.InvalidArgument
	case http.StatusNotFound:
		return codes.NotFound
	default:
		return codes.PermissionDenied
	}
}
