//go:build testclock

package apikey

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// clock is a wall clock a test can move through the test/clock path. Only the plugin
// binary built for the integration tests has it (make integration-test builds it with
// -tags testclock); released binaries use testclock_off.go.
type clock struct {
	offset atomic.Int64 // nanoseconds added to the wall clock
}

func (c *clock) now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

func (c *clock) paths(*backend) []*framework.Path {
	return []*framework.Path{{
		Pattern: "test/clock",
		Fields: map[string]*framework.FieldSchema{
			"now": {Type: framework.TypeString, Description: "The time to move the clock to (RFC 3339)."},
		},
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "test-clock"},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{Callback: c.read, Responses: clockResponse},
			logical.UpdateOperation: &framework.PathOperation{Responses: clockResponse, Callback: func(_ context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
				t, err := time.Parse(time.RFC3339, d.Get("now").(string))
				if err != nil {
					return logical.ErrorResponse("now: %s", err), nil
				}
				c.offset.Store(int64(time.Until(t)))
				return c.read(nil, nil, nil)
			}},
		},
		HelpSynopsis:    "Test builds only: move the engine's clock.",
		HelpDescription: "Only in plugin binaries built with the testclock tag (integration tests). Writing now moves the clock verify and usage counting use; reading shows it.",
	}}
}

var clockResponse = okResponse(map[string]*framework.FieldSchema{
	"now": {Type: framework.TypeString, Description: "The engine's time (RFC 3339)."},
})

func (c *clock) read(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
	return &logical.Response{Data: map[string]interface{}{"now": c.now().UTC().Format(time.RFC3339Nano)}}, nil
}
