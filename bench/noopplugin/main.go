// Command noopplugin is a secrets engine that does nothing, registered beside the apikey
// engine by the load harness (bench/load) so that the engine's costs can be reported as
// ratios to the floor of Vault's external-plugin path on the same server in the same
// run: a POST that returns a fixed answer (against verify), and a read that returns a
// lease without touching storage (against issue). It is a benchmark baseline only: it is
// never built by `make build` or `make release` and never shipped.
//
// The lease path can add, one at a time, the costs an issue has beyond the floor, so
// that the harness can tell them apart (query parameters of the read, all off by
// default):
//
//   - write=true: one req.Storage.Put of an entry the size of a key record, under a new
//     name each time (as issue stores one record per key);
//   - max_ttl=true: one MaxLeaseTTL call to the system view (what framework.CalculateTTL
//     asks for on every issue);
//   - issue_shaped=true: a response and lease internal data of the size and shape of an
//     issue's (six public fields and the key; key_id and role), instead of one field.
package main

import (
	"context"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/plugin"
)

const secretType = "noop"

func main() {
	meta := &api.PluginAPIClientMeta{}
	if err := meta.FlagSet().Parse(os.Args[1:]); err != nil {
		fatal(err)
	}
	// ServeMultiplex, like the engine: the same plugin-process set-up on both sides.
	err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: factory,
		TLSProviderFunc:    api.VaultPluginTLSProvider(meta.GetTLSConfig()),
	})
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	hclog.New(&hclog.LoggerOptions{}).Error("noop plugin shutting down", "error", err)
	os.Exit(1)
}

// replicationStateTTL matches the engine's cache (system_view.go in the root package).
const replicationStateTTL = 5 * time.Second

// cachedReplicationState answers ReplicationState from memory, as the engine does. The
// SDK asks for it on every request, and for an external plugin that is a gRPC round trip
// to Vault; without this the baseline would pay one round trip the engine does not, and
// would not be the floor.
type cachedReplicationState struct {
	logical.SystemView

	mu      sync.Mutex
	state   consts.ReplicationState
	fetched time.Time
}

func (s *cachedReplicationState) ReplicationState() consts.ReplicationState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := time.Now(); s.fetched.IsZero() || now.Sub(s.fetched) > replicationStateTTL {
		s.state = s.SystemView.ReplicationState()
		s.fetched = now
	}
	return s.state
}

// recordValue is what write=true stores: about the size of an issued key's record
// (a bench-role keyEntry as JSON is about 400 bytes).
var recordValue = []byte(`{"key_id":"` + strings.Repeat("k", 16) + `","hash":"` + strings.Repeat("h", 44) +
	`","role":"bench","name":"","scopes":["bench:read","bench:write"],"metadata":{},"ttl":1800000000000,` +
	`"max_ttl":1800000000000,"created_at":"2026-01-01T00:00:00Z","expires_at":"2026-01-01T00:30:00Z","pad":"` +
	strings.Repeat("p", 150) + `"}`)

func factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := &framework.Backend{
		Help:        "A secrets engine that does nothing: a benchmark baseline.",
		BackendType: logical.TypeLogical,
		// Like the engine's key records: per-cluster storage.
		PathsSpecial: &logical.Paths{LocalStorage: []string{"records/"}},
	}
	answer := func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
		return &logical.Response{Data: map[string]interface{}{"valid": true, "code": "VALID"}}, nil
	}
	lease := func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
		if d.Get("max_ttl").(bool) {
			_ = b.System().MaxLeaseTTL()
		}
		if d.Get("write").(bool) {
			if err := req.Storage.Put(ctx, &logical.StorageEntry{Key: "records/" + req.ID, Value: recordValue}); err != nil {
				return nil, err
			}
		}
		data := map[string]interface{}{"value": "noop"}
		internal := map[string]interface{}{"id": "noop"}
		if d.Get("issue_shaped").(bool) {
			data, internal = issueShaped()
		}
		resp := b.Secret(secretType).Response(data, internal)
		resp.Secret.TTL = 30 * time.Minute
		resp.Secret.MaxTTL = 30 * time.Minute
		return resp, nil
	}
	b.Paths = []*framework.Path{
		{
			Pattern: "answer",
			// The verify row's body: undeclared fields would add a warning to the response.
			Fields: map[string]*framework.FieldSchema{
				"api_key": {Type: framework.TypeString},
				"cost":    {Type: framework.TypeInt},
			},
			Operations:      map[logical.Operation]framework.OperationHandler{logical.UpdateOperation: &framework.PathOperation{Callback: answer}},
			HelpSynopsis:    "Answers a fixed result.",
			HelpDescription: "The floor of a verify: a POST through Vault to an external plugin and back.",
		},
		{
			Pattern: "lease",
			Fields: map[string]*framework.FieldSchema{
				"write":        {Type: framework.TypeBool, Description: "Also store one record-sized entry."},
				"max_ttl":      {Type: framework.TypeBool, Description: "Also ask the system view for MaxLeaseTTL."},
				"issue_shaped": {Type: framework.TypeBool, Description: "Answer with an issue-sized response."},
			},
			Operations:      map[logical.Operation]framework.OperationHandler{logical.ReadOperation: &framework.PathOperation{Callback: lease}},
			HelpSynopsis:    "Returns a lease.",
			HelpDescription: "The floor of an issue: a leased secret, with no storage write in the plugin unless asked.",
		},
	}
	b.Secrets = []*framework.Secret{{
		Type: secretType,
		Renew: func(_ context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
			return &logical.Response{Secret: req.Secret}, nil
		},
		Revoke: func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
			return nil, nil
		},
	}}
	withCache := *conf
	if conf.System != nil {
		withCache.System = &cachedReplicationState{SystemView: conf.System}
	}
	if err := b.Setup(ctx, &withCache); err != nil {
		return nil, err
	}
	return b, nil
}

// issueShaped is response data and lease internal data shaped like an issue's for the
// bench role (field names, types and about the same lengths), built fresh each time as
// the engine builds its own.
func issueShaped() (data, internal map[string]interface{}) {
	now := time.Now().UTC().Truncate(time.Second)
	keyID := strings.Repeat("k", 16)
	data = map[string]interface{}{
		"api_key":    "ak_" + keyID + strings.Repeat("s", 43+6),
		"key_id":     keyID,
		"role":       "bench",
		"name":       "",
		"scopes":     []string{"bench:read", "bench:write"},
		"metadata":   map[string]string{},
		"expires_at": now.Add(30 * time.Minute).Format(time.RFC3339),
	}
	internal = map[string]interface{}{"key_id": keyID, "role": "bench"}
	return data, internal
}
