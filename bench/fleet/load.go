//go:build unix

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// newHTTPClient is a keep-alive client for conns concurrent requests per host: every
// worker keeps its connection, nothing is compressed, HTTP/1.1, as a service calling a
// gateway would (bench/load's client).
func newHTTPClient(conns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        8 * conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
		},
		Timeout: 30 * time.Second,
	}
}

// get sends GET base/bench with key (none if "") as a bearer token, reads the whole
// answer, and returns its status.
func get(ctx context.Context, c *http.Client, base, key string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/bench", nil)
	if err != nil {
		return 0, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

// target is what a throughput row sends: GET url/bench with key.
type target struct {
	url string
	key string
}

// result is one throughput row's measurement.
type result struct {
	n        int // requests started in the measured window and answered 200
	sent     int // every request sent, warm-up included (for calls per request)
	errs     int
	firstErr string
	elapsed  time.Duration
	lat      []time.Duration // sorted by finish
}

func (r result) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.n) / r.elapsed.Seconds()
}

// pct is the p-th percentile (0 < p ≤ 100) of the latencies, nearest rank.
func (r result) pct(p float64) time.Duration { return percentile(r.lat, p) }

// percentile of sorted, nearest rank; 0 for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// loader measures throughput rows at a fixed concurrency (closed loop), as bench/load.
type loader struct {
	client *http.Client
	conc   int
	warmup time.Duration
	dur    time.Duration
	rounds int
}

// runInterleaved measures rows that are compared with each other: after a warm-up of
// l.warmup each, they take turns in l.rounds segments of l.dur/l.rounds, so that a
// change of background load during the set affects all of them alike.
func (l *loader) runInterleaved(ctx context.Context, targets []target) ([]result, error) {
	res := make([]result, len(targets))
	for i, tg := range targets {
		if err := l.segment(ctx, tg, l.warmup, 0, &res[i], false); err != nil {
			return nil, err
		}
	}
	seg := l.dur / time.Duration(l.rounds)
	for range l.rounds {
		for i, tg := range targets {
			if err := l.segment(ctx, tg, 0, seg, &res[i], true); err != nil {
				return nil, err
			}
		}
	}
	for i := range res {
		slices.Sort(res[i].lat)
		res[i].n = len(res[i].lat)
	}
	return res, nil
}

// segment sends tg from l.conc workers for warm, then for measured; into gets every
// request in sent, and with record the latencies of requests started in the measured
// window and the time from its start to the last answer.
func (l *loader) segment(ctx context.Context, tg target, warm, measured time.Duration, into *result, record bool) error {
	start := time.Now()
	t0 := start.Add(warm)
	end := t0.Add(measured)
	type workerOut struct {
		lat      []time.Duration
		sent     int
		errs     int
		firstErr string
		last     time.Time
	}
	outs := make([]workerOut, l.conc)
	var wg sync.WaitGroup
	for w := range l.conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := &outs[w]
			for ctx.Err() == nil {
				began := time.Now()
				if !began.Before(end) {
					return
				}
				status, err := get(ctx, l.client, tg.url, tg.key)
				took := time.Since(began)
				out.sent++
				if began.Before(t0) || !record {
					continue
				}
				out.last = began.Add(took)
				if err == nil && status == http.StatusOK {
					out.lat = append(out.lat, took)
					continue
				}
				if ctx.Err() != nil {
					return
				}
				out.errs++
				if out.firstErr == "" {
					if err != nil {
						out.firstErr = err.Error()
					} else {
						out.firstErr = fmt.Sprintf("status %d", status)
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	var last time.Time
	for _, o := range outs {
		into.sent += o.sent
		into.lat = append(into.lat, o.lat...)
		into.errs += o.errs
		if into.firstErr == "" {
			into.firstErr = o.firstErr
		}
		if o.last.After(last) {
			last = o.last
		}
	}
	if record && last.After(t0) {
		into.elapsed += last.Sub(t0)
	}
	return nil
}

// probe sends one request and checks its status.
func probe(ctx context.Context, c *http.Client, base, key string, want int) error {
	status, err := get(ctx, c, base, key)
	if err != nil {
		return err
	}
	if status != want {
		return fmt.Errorf("GET %s/bench answered %d, want %d", base, status, want)
	}
	return nil
}

// counts are the answers of a hammer or a paced load, by kind.
type counts struct {
	mu          sync.Mutex
	ok          int64
	tooMany     int64
	unavailable int64
	other       int64
	okAtFirst   int64 // ok answers when the first 429 came; -1 before
	lastOK      time.Time
	samples     []string
}

func newCounts() *counts { return &counts{okAtFirst: -1, lastOK: time.Now()} }

func (c *counts) add(status int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case err == nil && status == http.StatusOK:
		c.ok++
		c.lastOK = time.Now()
	case err == nil && status == http.StatusTooManyRequests:
		c.tooMany++
		if c.okAtFirst < 0 {
			c.okAtFirst = c.ok
		}
	case err == nil && status == http.StatusServiceUnavailable:
		c.unavailable++
	default:
		c.other++
		if len(c.samples) < 3 {
			c.samples = append(c.samples, fmt.Sprintf("%d %v", status, err))
		}
	}
}

func (c *counts) snapshot() (ok, tooMany, okAtFirst int64, lastOK time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ok, c.tooMany, c.okAtFirst, c.lastOK
}

func (c *counts) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := fmt.Sprintf("%d 200, %d 429, %d 503, %d other", c.ok, c.tooMany, c.unavailable, c.other)
	if len(c.samples) > 0 {
		s += " (" + strings.Join(c.samples, "; ") + ")"
	}
	return s
}
