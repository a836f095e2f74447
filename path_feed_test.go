package apikey

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/changefeed"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// readFeed reads the feed after cursor, waiting up to wait seconds.
func (e *testEnv) readFeed(cursor string, wait int) verifyapi.FeedResponse {
	e.t.Helper()
	resp := e.mustOK(logical.ReadOperation, "feed", map[string]interface{}{verifyapi.FieldCursor: cursor, verifyapi.FieldWait: wait})
	out, err := verifyapi.DecodeFeedResponse(wire(e.t, resp.Data))
	require.NoError(e.t, err)
	return out
}

func TestFeedOrderAndResumption(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", map[string]interface{}{"scopes": "a"})
	first := e.readFeed("", 0)
	require.True(t, first.Reset, "a first read starts from now")
	require.Empty(t, first.Events)

	k := e.issue("svc", nil)
	other := e.issue("svc", nil)
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(k.key, "a"))
	e.mustOK(logical.UpdateOperation, "keys/"+k.keyID, map[string]interface{}{"disabled": true})
	e.mustOK(logical.UpdateOperation, "keys/"+k.keyID, map[string]interface{}{"disabled": false})
	e.mustOK(logical.UpdateOperation, "keys/"+k.keyID, map[string]interface{}{"metadata": map[string]interface{}{"team": "x"}})
	e.mustOK(logical.UpdateOperation, "keys/"+k.keyID, map[string]interface{}{"name": "renamed"})
	k.secret.IssueTime = time.Now().Add(-time.Minute)
	require.False(t, e.renew(k, 2*time.Hour).IsError())
	require.NoError(t, e.b.flushUsage(e.ctx, e.storage)) // use counts change nothing a cache shows
	e.mustOK(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": other.keyID, "grace_period": "1m"})
	require.NoError(t, e.revoke(k))
	e.mustOK(logical.DeleteOperation, "keys/"+k.keyID, nil) // gone already: nothing more

	want := []verifyapi.FeedEvent{
		{Kind: verifyapi.EventDisabled, KeyID: k.keyID},
		{Kind: verifyapi.EventEnabled, KeyID: k.keyID},
		{Kind: verifyapi.EventUpdated, KeyID: k.keyID},
		{Kind: verifyapi.EventUpdated, KeyID: k.keyID},
		{Kind: verifyapi.EventExpiryChanged, KeyID: k.keyID},
		{Kind: verifyapi.EventRotated, KeyID: other.keyID},
		{Kind: verifyapi.EventRevoked, KeyID: k.keyID},
	}
	all := e.readFeed(first.Cursor, 0)
	require.False(t, all.Reset)
	require.Equal(t, want, all.Events)

	// Resumption: reading from any cursor gives what came after it, and the last
	// cursor gives nothing (without waiting).
	part := e.readFeed(first.Cursor, 0)
	require.Equal(t, all, part, "the same cursor reads the same events")
	end := e.readFeed(all.Cursor, 0)
	require.False(t, end.Reset)
	require.Empty(t, end.Events)
	require.Equal(t, all.Cursor, end.Cursor)
	e.mustOK(logical.UpdateOperation, "keys/"+other.keyID, map[string]interface{}{"disabled": true})
	next := e.readFeed(all.Cursor, 0)
	require.Equal(t, []verifyapi.FeedEvent{{Kind: verifyapi.EventDisabled, KeyID: other.keyID}}, next.Events)
}

// TestFeedHearsOfWritesOnOtherNodes: a record written elsewhere (Vault calls
// Invalidate) is an updated event: callers ask verify again.
func TestFeedHearsOfWritesOnOtherNodes(t *testing.T) {
	e := newTestEnv(t)
	cursor := e.b.feed.Cursor()
	e.b.invalidate(e.ctx, keyPrefix+"0123456789abcdef")
	e.b.invalidate(e.ctx, rolePrefix+"svc")
	require.Equal(t, []verifyapi.FeedEvent{{Kind: verifyapi.EventUpdated, KeyID: "0123456789abcdef"}}, e.readFeed(cursor, 0).Events)
}

func TestFeedResets(t *testing.T) {
	e := newTestEnv(t)
	other := newTestEnv(t)
	require.NotEqual(t, e.b.feed.Epoch(), other.b.feed.Epoch(), "every backend has its own epoch")
	e.b.feed = changefeed.New(4) // a small ring, to fall behind it
	start := e.b.feed.Cursor()
	e.writeRole("svc", nil)
	for range 3 {
		k := e.issue("svc", nil)
		require.NoError(t, e.revoke(k))
		k = e.issue("svc", nil)
		e.mustOK(logical.UpdateOperation, "keys/"+k.keyID, map[string]interface{}{"disabled": true})
	}
	for name, cursor := range map[string]string{
		"empty":        "",
		"other node":   other.b.feed.Cursor(),
		"restarted":    reopen(t, e).b.feed.Cursor(),
		"too old":      start,
		"not a cursor": "hello",
	} {
		t.Run(name, func(t *testing.T) {
			got := e.readFeed(cursor, 60)
			require.True(t, got.Reset)
			require.Empty(t, got.Events)
			require.Equal(t, e.b.feed.Cursor(), got.Cursor)
		})
	}
}

// TestFeedLongPoll: a read with nothing after its cursor waits, and returns as soon as
// an event comes.
func TestFeedLongPoll(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", nil)
	k := e.issue("svc", nil)
	cursor := e.b.feed.Cursor()
	got := make(chan *logical.Response, 1)
	go func() {
		resp, err := e.b.HandleRequest(context.Background(), &logical.Request{
			Operation: logical.ReadOperation, Path: "feed", Storage: e.storage,
			Data: map[string]interface{}{verifyapi.FieldCursor: cursor, verifyapi.FieldWait: "60"},
		})
		if err != nil {
			resp = logical.ErrorResponse(err.Error())
		}
		got <- resp
	}()
	require.Eventually(t, func() bool { return e.b.feed.Waiters() == 1 }, 10*time.Second, time.Millisecond)
	start := time.Now()
	e.mustOK(logical.UpdateOperation, "keys/"+k.keyID, map[string]interface{}{"disabled": true})
	resp := <-got
	require.Less(t, time.Since(start), 10*time.Second)
	require.False(t, resp.IsError(), "%v", resp.Data)
	out, err := verifyapi.DecodeFeedResponse(wire(t, resp.Data))
	require.NoError(t, err)
	require.Equal(t, []verifyapi.FeedEvent{{Kind: verifyapi.EventDisabled, KeyID: k.keyID}}, out.Events)

	// The request's context ends a wait too (Vault's request timeout, a client gone).
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *logical.Response, 1)
	go func() {
		resp, _ := e.b.HandleRequest(ctx, &logical.Request{
			Operation: logical.ReadOperation, Path: "feed", Storage: e.storage,
			Data: map[string]interface{}{verifyapi.FieldCursor: out.Cursor, verifyapi.FieldWait: 60},
		})
		done <- resp
	}()
	require.Eventually(t, func() bool { return e.b.feed.Waiters() == 1 }, 10*time.Second, time.Millisecond)
	cancel()
	resp = <-done
	require.NotNil(t, resp)
	require.Empty(t, resp.Data[verifyapi.FieldEvents])

	// A short wait with nothing new returns empty after about that long.
	start = time.Now()
	empty := e.readFeed(out.Cursor, 1)
	require.Empty(t, empty.Events)
	require.GreaterOrEqual(t, time.Since(start), time.Second)
}

func TestFeedWaitBounds(t *testing.T) {
	e := newTestEnv(t)
	for _, bad := range []interface{}{61, "61", -1, "soon", "2m", []int{1}} {
		t.Run(fmt.Sprint(bad), func(t *testing.T) {
			e.mustFail(logical.ReadOperation, "feed", map[string]interface{}{verifyapi.FieldWait: bad}, verifyapi.FieldWait)
		})
	}
	for _, ok := range []interface{}{0, "0", "60", 60, "10s"} {
		// No cursor: a reset, answered at once whatever the wait.
		e.mustOK(logical.ReadOperation, "feed", map[string]interface{}{verifyapi.FieldWait: ok})
	}
}
