package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// vaultTimeout bounds one call to Vault.
const vaultTimeout = 30 * time.Second

// maxVaultBody bounds what the dashboard reads from one Vault answer (a page of 1000
// keys with their info is well under 1 MiB; the metrics of a mount with many roles too).
const maxVaultBody = 16 << 20

// vaultClient calls Vault's HTTP API. It holds no token: every call names the token it
// is made with, the signed-in person's.
type vaultClient struct {
	base *api.Client
}

// newVaultClient is a client for addr configured from Vault's standard variables
// (VAULT_CACERT, VAULT_CLIENT_CERT, VAULT_NAMESPACE, ...), except that VAULT_TOKEN is
// ignored and requests are not retried: a retried write could issue two keys.
func newVaultClient(addr string) (*vaultClient, error) {
	cfg := api.DefaultConfig()
	if cfg.Error != nil {
		return nil, fmt.Errorf("vault client configuration: %w", cfg.Error)
	}
	if addr != "" {
		cfg.Address = addr
	}
	cfg.MaxRetries = 0
	cfg.Timeout = vaultTimeout
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	c.ClearToken() // NewClient takes VAULT_TOKEN from the environment: the dashboard has no token of its own
	return &vaultClient{base: c}, nil
}

// Address is Vault's address.
func (v *vaultClient) Address() string { return v.base.Address() }

// as is the base client sending token with every request. The base client is never
// changed after start-up, so the shallow copy is safe to use concurrently.
func (v *vaultClient) as(token string) *api.Client {
	return v.base.WithRequestCallbacks(func(r *api.Request) { r.ClientToken = token })
}

// VaultError is a call Vault refused or could not answer. It names the operation and
// the path, never the token or the request's values.
type VaultError struct {
	Op     string   // the capability the call needs: read, list, create, update, delete
	Path   string   // the logical path called, without /v1/
	Status int      // Vault's HTTP status; 0: no answer
	Errors []string // Vault's messages
	cause  error    // a transport error
}

func (e *VaultError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("%s %s: Vault did not answer: %v", e.Op, e.Path, e.cause)
	}
	return fmt.Sprintf("%s %s: Vault answered %d: %s", e.Op, e.Path, e.Status, strings.Join(e.Errors, "; "))
}

func (e *VaultError) Unwrap() error { return e.cause }

// PermissionDenied reports a 403: the token lacks the capability (or is not valid).
func (e *VaultError) PermissionDenied() bool { return e.Status == http.StatusForbidden }

// isStatus reports whether err is a VaultError with this status.
func isStatus(err error, status int) bool {
	var ve *VaultError
	return errors.As(err, &ve) && ve.Status == status
}

// call is one request to Vault: op is the capability it needs (for error pages).
type call struct {
	op     string
	path   string
	params url.Values
	body   any // JSON-encoded for writes
}

// do sends c with token and decodes Vault's JSON answer into out (nil: ignore it). A
// 404 with no data is a VaultError with Status 404.
func (v *vaultClient) do(ctx context.Context, token string, c call, out any) error {
	ctx, cancel := context.WithTimeout(ctx, vaultTimeout)
	defer cancel()
	client := v.as(token)
	var (
		resp *api.Response
		err  error
	)
	switch c.op {
	case "read", "list":
		params := c.params
		if c.op == "list" {
			params = url.Values{}
			for k, vs := range c.params {
				params[k] = vs
			}
			params.Set("list", "true")
		}
		resp, err = client.Logical().ReadRawWithDataWithContext(ctx, c.path, params)
	case "delete":
		resp, err = client.Logical().DeleteRawWithContext(ctx, c.path)
	default: // create, update
		var body []byte
		if c.body != nil {
			if body, err = json.Marshal(c.body); err != nil {
				return err
			}
		}
		resp, err = client.Logical().WriteRawWithContext(ctx, c.path, body)
	}
	if resp != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		ve := &VaultError{Op: c.op, Path: c.path}
		var re *api.ResponseError
		if errors.As(err, &re) {
			ve.Status = re.StatusCode
			ve.Errors = re.Errors
			if re.RawError {
				ve.Errors = []string{"(Vault's answer was not JSON)"}
			}
		} else {
			ve.cause = err
		}
		return ve
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxVaultBody)).Decode(out); err != nil {
		return &VaultError{Op: c.op, Path: c.path, Status: resp.StatusCode, Errors: []string{"the answer could not be decoded: " + err.Error()}}
	}
	return nil
}

// raw sends a read and returns the body as it is (the metrics path answers text).
func (v *vaultClient) raw(ctx context.Context, token, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, vaultTimeout)
	defer cancel()
	resp, err := v.as(token).Logical().ReadRawWithDataWithContext(ctx, path, nil)
	if resp != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		ve := &VaultError{Op: "read", Path: path}
		var re *api.ResponseError
		if errors.As(err, &re) {
			ve.Status, ve.Errors = re.StatusCode, re.Errors
		} else {
			ve.cause = err
		}
		return nil, ve
	}
	return io.ReadAll(io.LimitReader(resp.Body, maxVaultBody))
}

// envelope is Vault's JSON answer around data.
type envelope[T any] struct {
	LeaseID  string   `json:"lease_id"`
	Data     T        `json:"data"`
	Auth     *auth    `json:"auth"`
	Warnings []string `json:"warnings"`
}

type auth struct {
	ClientToken   string   `json:"client_token"`
	Policies      []string `json:"policies"`
	LeaseDuration int64    `json:"lease_duration"`
	Renewable     bool     `json:"renewable"`
}

// get reads (or lists) into T.
func get[T any](ctx context.Context, v *vaultClient, token string, c call) (T, []string, error) {
	var env envelope[T]
	err := v.do(ctx, token, c, &env)
	return env.Data, env.Warnings, err
}
