package apikeyauth

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/grantpool"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// grantLoop renews grants at half their TTL, or at once when one runs low, until the
// fleet is closed.
func (f *fleet) grantLoop() {
	defer f.wg.Done()
	t := time.NewTicker(f.tick)
	defer t.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-t.C:
		case <-f.pool.Kick():
		}
		f.renewDue(f.ctx)
	}
}

// renewDue makes the renewals (and releases of idle grants) due now, a few at a time.
func (f *fleet) renewDue(ctx context.Context) {
	due := f.pool.Due(f.m.now())
	if len(due) == 0 {
		return
	}
	work := make(chan grantpool.Renewal)
	var wg sync.WaitGroup
	for range min(renewWorkers, len(due)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range work {
				_ = f.renew(ctx, r)
			}
		}()
	}
	for _, r := range due {
		work <- r
	}
	close(work)
	wg.Wait()
}

// renew makes one grants/renew call for r and applies the answer to the pool. Errors
// are logged and returned (Close reports them); the grant stays usable until its
// deadline and is tried again shortly.
func (f *fleet) renew(ctx context.Context, r grantpool.Renewal) error {
	ctx, cancel := context.WithTimeout(ctx, f.m.verifyTimeout)
	defer cancel()
	req := verifyapi.RenewRequest{
		GrantID: r.GrantID,
		Want:    verifyapi.GrantRequest{Holder: f.holder, Uses: r.WantUses, Rate: r.WantRate},
		Unused:  r.Unused,
		Release: r.Release,
	}
	sent := f.m.now()
	start := time.Now()
	secret, err := f.client.Logical().WriteWithContext(ctx, f.renewPath, req.Data())
	var resp verifyapi.RenewResponse
	switch {
	case err != nil:
		err = fleetError(callRenew, err)
	case secret == nil || secret.Data == nil:
		err = errors.New("grants/renew: no answer (is the engine too old for Fleet?)")
	default:
		resp, err = verifyapi.DecodeRenewResponse(secret.Data)
	}
	f.observe(callRenew, start, err)
	now := f.m.now()
	if err != nil {
		if !r.Release {
			f.pool.RenewFailed(r.KeyID, r.GrantID, now)
		}
		if !errors.Is(ctx.Err(), context.Canceled) {
			// (Not when the loops are being stopped: Close releases what is left.)
			f.warn("grant renewal failed", slog.String("key_id", r.KeyID), slog.Bool("release", r.Release), slog.String("error", err.Error()))
		}
		return err
	}
	if r.Release {
		return nil
	}
	if !resp.Renewed {
		f.pool.Renewed(r.KeyID, r.GrantID, nil, now)
		return nil
	}
	g := toPoolGrant(resp.Grant, sent)
	f.pool.Renewed(r.KeyID, r.GrantID, &g, now)
	return nil
}
