package apikey

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// pathFeed is feed: the change feed that callers caching verify answers long-poll
// (internal/changefeed holds it; key_entry.go and path_credits.go append to it).
func pathFeed(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "feed$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "read",
			OperationSuffix: "feed",
		},
		Fields: map[string]*framework.FieldSchema{
			verifyapi.FieldCursor: {
				Type:        framework.TypeString,
				Description: "Where to read from: the cursor of the previous answer. Empty (the first read) answers reset with the current cursor.",
			},
			// A string parsed by the handler, so that a bad value gets a 400 that names
			// the field like every other.
			verifyapi.FieldWait: {
				Type:        framework.TypeString,
				Description: fmt.Sprintf("Seconds to wait for an event when there is none after the cursor: 0 to %d, default %d.", int(verifyapi.MaxFeedWait.Seconds()), verifyapi.DefaultFeedWaitS),
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: b.pathFeedRead,
				Responses: okResponse(map[string]*framework.FieldSchema{
					verifyapi.FieldCursor: {Type: framework.TypeString, Description: "The cursor to read with next."},
					verifyapi.FieldReset:  {Type: framework.TypeBool, Description: "The cursor was empty, of another node or engine start, or too old: drop every cached answer and grant, and read on from cursor."},
					verifyapi.FieldEvents: {Type: framework.TypeSlice, Description: "The events after the cursor, in order: kind and key_id."},
				}),
			},
		},
		HelpSynopsis:    strings.TrimSpace(feedHelpSyn),
		HelpDescription: strings.TrimSpace(feedHelpDesc),
	}
}

func (b *backend) pathFeedRead(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	wait := time.Duration(verifyapi.DefaultFeedWaitS) * time.Second
	if raw := d.Get(verifyapi.FieldWait).(string); raw != "" {
		secs, err := parseWait(raw)
		if err != nil {
			return logical.ErrorResponse("%s: %s", verifyapi.FieldWait, err), nil
		}
		wait = secs
	}
	r := b.feed.Read(ctx, d.Get(verifyapi.FieldCursor).(string), verifyapi.MaxFeedEvents, wait)
	out := verifyapi.FeedResponse{Cursor: r.Cursor, Reset: r.Reset, Events: make([]verifyapi.FeedEvent, len(r.Events))}
	for i, e := range r.Events {
		out.Events[i] = verifyapi.FeedEvent{Kind: e.Kind, KeyID: e.KeyID}
	}
	return &logical.Response{Data: out.Data()}, nil
}

// parseWait reads wait: whole seconds from 0 to MaxFeedWait (a Go duration such as
// 10s is accepted too).
func parseWait(raw string) (time.Duration, error) {
	d, err := parseDuration(raw)
	if err != nil || d < 0 || d > verifyapi.MaxFeedWait {
		return 0, fmt.Errorf("must be 0 to %d seconds", int(verifyapi.MaxFeedWait.Seconds()))
	}
	return d, nil
}

const feedHelpSyn = `Follow the changes that make cached verify answers wrong.`

const feedHelpDesc = `
For callers that cache verify answers (the apikeyauth middleware and the gateway with
fleet mode on). Read with the cursor of the previous answer (none the first time) and
wait (seconds, 0-60, default 20): the answer has the events after the cursor, in order
(at most 1000), or, when there are none, waits up to wait for one. Each event has kind
and key_id; kinds: revoked (revoked, deleted or tidied), disabled, enabled, rotated,
expiry_changed, limits_changed (credits set or added), grant_cancelled, updated (name
or metadata, or a write on another node). An empty cursor, one from another node or from before the engine started,
or one older than the last 65536 events, answers reset=true with the current cursor:
the caller must drop everything it cached. The feed is per node and in memory.
`
