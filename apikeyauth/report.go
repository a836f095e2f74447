package apikeyauth

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usagestats"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// reporter aggregates the answers served without a Vault call until the next usage
// report: per key, code, tag set and client network (/24, /48), a count of requests
// and of uses. It holds at most max groups; answers of new groups beyond that are
// dropped (and counted), so memory stays bounded however varied the traffic.
type reporter struct {
	max  int
	full chan struct{} // signalled when a group had to be dropped: report early

	mu      sync.Mutex
	groups  map[reportGroup]*reportCounts
	dropped int64
}

type reportGroup struct {
	keyID   string
	code    string
	tags    string // the tags joined by "\n" (they contain no line breaks)
	network netip.Prefix
}

type reportCounts struct {
	token    string
	tags     []string
	clientIP netip.Addr // the first address seen in the network
	count    int64
	uses     int64
}

func newReporter(max int) *reporter {
	return &reporter{max: max, full: make(chan struct{}, 1), groups: map[reportGroup]*reportCounts{}}
}

// add counts one answer; false when it was dropped because the report is full.
func (r *reporter) add(keyID, token, code string, tags []string, clientIP netip.Addr, uses int64) bool {
	g := reportGroup{keyID: keyID, code: code, tags: strings.Join(tags, "\n")}
	g.network, _ = usagestats.NetworkOf(clientIP)
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.groups[g]
	if c == nil {
		if len(r.groups) >= r.max {
			r.dropped++
			return false
		}
		c = &reportCounts{token: token, tags: slices.Clone(tags), clientIP: clientIP}
		r.groups[g] = c
	}
	c.count++
	c.uses += uses
	return true
}

func (r *reporter) kick() {
	select {
	case r.full <- struct{}{}:
	default:
	}
}

// take empties the reporter and returns its entries and how many answers were dropped.
func (r *reporter) take() ([]verifyapi.ReportEntry, int64) {
	r.mu.Lock()
	groups, dropped := r.groups, r.dropped
	r.groups, r.dropped = make(map[reportGroup]*reportCounts, len(groups)), 0
	r.mu.Unlock()
	entries := make([]verifyapi.ReportEntry, 0, len(groups))
	for g, c := range groups {
		e := verifyapi.ReportEntry{KeyID: g.keyID, ReportToken: c.token, Code: g.code, Count: c.count, Uses: c.uses, Tags: c.tags}
		if c.clientIP.IsValid() {
			e.ClientIP = c.clientIP.String()
		}
		entries = append(entries, e)
	}
	return entries, dropped
}

// putBack merges entries of a report that could not be sent into the next one, as far
// as there is room.
func (r *reporter) putBack(entries []verifyapi.ReportEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range entries {
		ip, _ := netip.ParseAddr(e.ClientIP)
		g := reportGroup{keyID: e.KeyID, code: e.Code, tags: strings.Join(e.Tags, "\n")}
		g.network, _ = usagestats.NetworkOf(ip)
		c := r.groups[g]
		if c == nil {
			if len(r.groups) >= r.max {
				r.dropped += e.Count
				continue
			}
			c = &reportCounts{token: e.ReportToken, tags: e.Tags, clientIP: ip}
			r.groups[g] = c
		}
		c.count += e.Count
		c.uses += e.Uses
	}
}

// reportLoop sends a report every reportInterval (sooner when the reporter is full)
// until the fleet is closed; close sends the last one.
func (f *fleet) reportLoop() {
	defer f.wg.Done()
	t := time.NewTicker(f.reportInterval)
	defer t.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-t.C:
		case <-f.reports.full:
		}
		_ = f.sendReport(f.ctx)
	}
}

// sendReport sends what was served since the last report. A report Vault did not
// answer is merged into the next one; one it refused (a 4xx) is dropped: sending it
// again would be refused again.
func (f *fleet) sendReport(ctx context.Context) error {
	entries, dropped := f.reports.take()
	if dropped > 0 {
		f.warn("usage report full: answers left out", slog.Int64("dropped", dropped))
	}
	if len(entries) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, f.m.verifyTimeout)
	defer cancel()
	start := time.Now()
	secret, err := f.client.Logical().WriteWithContext(ctx, f.reportPath, verifyapi.Report{Holder: f.holder, Entries: entries}.Data())
	var rejected int64
	switch {
	case err != nil:
		var re *api.ResponseError
		if !errors.As(err, &re) || re.StatusCode >= 500 {
			f.reports.putBack(entries)
		}
		err = fleetError(callReport, err)
	case secret == nil || secret.Data == nil:
		err = errors.New("usage/report: no answer (is the engine too old for Fleet?)")
	default:
		_, rejected, err = verifyapi.DecodeReportResponse(secret.Data)
	}
	f.observe(callReport, start, err)
	if err != nil {
		if !errors.Is(ctx.Err(), context.Canceled) {
			// (A report cut off by Close is put back and sent by Close.)
			f.warn("usage report failed", slog.Int("entries", len(entries)), slog.String("error", err.Error()))
		}
		return err
	}
	if rejected > 0 {
		// A key revoked since it was served, or a token of another mount secret.
		f.m.log.LogAttrs(ctx, slog.LevelDebug, "usage report entries rejected", slog.Int64("rejected", rejected))
	}
	return nil
}
