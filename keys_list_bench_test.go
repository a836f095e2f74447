package apikey

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// benchListKeys is how many key records the list benchmarks page through.
const benchListKeys = 100_000

// newListBenchEnv is a mount holding benchListKeys key records in memory: ten roles
// r0..r9 in turn, and one key in a hundred last used 200 days ago (the rest an hour ago).
// The records go straight to storage, which is much faster than issuing 100k keys.
func newListBenchEnv(b *testing.B) (*backend, logical.Storage) {
	b.Helper()
	ctx := context.Background()
	config := logical.TestBackendConfig()
	config.StorageView = &logical.InmemStorage{}
	config.System = testSystemView()
	raw, err := Factory(ctx, config)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for i := range benchListKeys {
		lastUsed := now.Add(-time.Hour)
		if i%100 == 0 {
			lastUsed = now.Add(-200 * 24 * time.Hour)
		}
		k := &keyEntry{
			KeyID:         testKeyID(i),
			Hash:          make([]byte, 32),
			Role:          fmt.Sprintf("r%d", i%10),
			Name:          fmt.Sprintf("key-%d", i),
			Scopes:        []string{"orders:read", "orders:write"},
			Metadata:      map[string]string{"team": fmt.Sprintf("t%d", i%7)},
			IssueMetadata: map[string]string{},
			TTL:           time.Hour,
			MaxTTL:        24 * time.Hour,
			CreatedAt:     now.Add(-300 * 24 * time.Hour),
			ExpiresAt:     now.Add(30 * 24 * time.Hour),
			UseCount:      42,
			LastUsedAt:    lastUsed,
		}
		entry, err := logical.StorageEntryJSON(keyPrefix+k.KeyID, k)
		if err != nil {
			b.Fatal(err)
		}
		if err := config.StorageView.Put(ctx, entry); err != nil {
			b.Fatal(err)
		}
	}
	return raw.(*backend), config.StorageView
}

// BenchmarkKeysListPage measures one page of keys/ over 100k key records, each page
// listing and sorting every key_id (Vault's storage has no paged List).
func BenchmarkKeysListPage(b *testing.B) {
	mount, storage := newListBenchEnv(b)
	ctx := context.Background()
	cases := []struct {
		name string
		data map[string]interface{}
	}{
		{"no filter limit=100", map[string]interface{}{"limit": "100"}},
		{"no filter limit=1000", map[string]interface{}{"limit": "1000"}},
		{"role 10% limit=100", map[string]interface{}{"role": "r3", "limit": "100"}},
		{"unused_for 1% limit=100", map[string]interface{}{"unused_for": "90d", "limit": "100"}},
		{"no match full scan budget", map[string]interface{}{"role": "nobody", "limit": "100"}},
		{"complete list no filter (vault list)", map[string]interface{}{}},
		{"no filter limit=100 mid-list", map[string]interface{}{"limit": "100", "after": testKeyID(benchListKeys / 2)}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			var listed int
			b.ReportAllocs()
			for b.Loop() {
				resp, err := mount.HandleRequest(ctx, &logical.Request{
					Operation: logical.ListOperation,
					Path:      "keys/",
					Data:      tc.data,
					Storage:   storage,
				})
				if err != nil || resp.IsError() {
					b.Fatalf("list: %v %v", err, resp.Error())
				}
				keys, _ := resp.Data["keys"].([]string)
				listed = len(keys)
			}
			b.ReportMetric(float64(listed), "keys/page")
		})
	}
}
