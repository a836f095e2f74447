//go:build unix

package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// newHTTPClient is a keep-alive client for conc concurrent requests to one host: every
// worker keeps its connection (MaxIdleConnsPerHost = conc), nothing is compressed and
// HTTP/1.1 is used, as a service talking to Vault or a gateway would.
func newHTTPClient(conc int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        4 * conc,
			MaxIdleConnsPerHost: conc,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
		},
		Timeout: 30 * time.Second,
	}
}

// request describes the requests of one row.
type request struct {
	method string
	url    string
	header http.Header
	// bodies: each request sends one of them, chosen at random; none: no body.
	bodies [][]byte
	want   int // expected status
	// onBody, if set, sees the body of every response with the expected status (warm-up
	// included), from many goroutines at once; it must copy what it keeps.
	onBody func([]byte)
}

// result is one row's measurement.
type result struct {
	n        int // requests started inside the measured window and answered as expected
	errs     int
	firstErr string
	elapsed  time.Duration
	lat      []time.Duration // sorted
	cpu      cpuUse          // CPU time during the measured segments
}

func (r result) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.n) / r.elapsed.Seconds()
}

// pct is the p-th percentile (0 < p ≤ 100) of the latencies, nearest rank.
func (r result) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(float64(len(r.lat))*p/100+0.999999) - 1
	i = max(0, min(i, len(r.lat)-1))
	return r.lat[i]
}

type loader struct {
	client *http.Client
	conc   int
	warmup time.Duration
	dur    time.Duration
	rounds int // segments each row of an interleaved set is measured in
}

// run measures one row: l.warmup unrecorded, then l.dur recorded.
func (l *loader) run(ctx context.Context, req request) (result, error) {
	var res result
	if err := l.segment(ctx, req, l.warmup, 0, nil); err != nil {
		return result{}, err
	}
	if err := l.segment(ctx, req, 0, l.dur, &res); err != nil {
		return result{}, err
	}
	res.finish()
	return res, nil
}

// runInterleaved measures rows that are compared with each other: after a warm-up of
// l.warmup each, they take turns in l.rounds segments of l.dur/l.rounds, so that a change
// of background load during the set affects all of them alike.
func (l *loader) runInterleaved(ctx context.Context, reqs []request) ([]result, error) {
	res := make([]result, len(reqs))
	for _, req := range reqs {
		if err := l.segment(ctx, req, l.warmup, 0, nil); err != nil {
			return nil, err
		}
	}
	rounds := max(1, l.rounds)
	seg := l.dur / time.Duration(rounds)
	for range rounds {
		for i, req := range reqs {
			if err := l.segment(ctx, req, 0, seg, &res[i]); err != nil {
				return nil, err
			}
		}
	}
	for i := range res {
		res[i].finish()
	}
	return res, nil
}

func (r *result) finish() {
	slices.Sort(r.lat)
	r.n = len(r.lat)
}

// segment sends req from l.conc workers for warm (not recorded), then for measured,
// adding to into: the latencies of requests started in the measured window, and the time
// from its start until the last of them was answered.
func (l *loader) segment(ctx context.Context, req request, warm, measured time.Duration, into *result) error {
	var before cpuSample
	var cpuOK bool
	if into != nil {
		before, cpuOK = cpuNow()
	}
	start := time.Now()
	t0 := start.Add(warm)
	end := t0.Add(measured)
	type workerOut struct {
		lat      []time.Duration
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
			rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), uint64(w)))
			var buf bytes.Buffer
			for ctx.Err() == nil {
				began := time.Now()
				if !began.Before(end) {
					return
				}
				var body []byte
				if len(req.bodies) > 0 {
					body = req.bodies[rng.IntN(len(req.bodies))]
				}
				status, err := l.do(ctx, req, body, &buf)
				took := time.Since(began)
				ok := err == nil && status == req.want
				if ok && req.onBody != nil {
					req.onBody(buf.Bytes())
				}
				if began.Before(t0) {
					continue
				}
				out.last = began.Add(took)
				if ok {
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
						out.firstErr = fmt.Sprintf("status %d: %.200s", status, strings.TrimSpace(buf.String()))
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	if into == nil {
		return nil
	}
	var last time.Time
	for _, o := range outs {
		into.lat = append(into.lat, o.lat...)
		into.errs += o.errs
		if into.firstErr == "" {
			into.firstErr = o.firstErr
		}
		if o.last.After(last) {
			last = o.last
		}
	}
	if last.After(t0) {
		into.elapsed += last.Sub(t0)
	}
	if after, ok := cpuNow(); ok && cpuOK {
		into.cpu.add(before, after, time.Since(start))
	}
	return nil
}

// do sends one request and reads the whole response body into buf.
func (l *loader) do(ctx context.Context, req request, body []byte, buf *bytes.Buffer) (int, error) {
	var rd *bytes.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	var hr *http.Request
	var err error
	if rd != nil {
		hr, err = http.NewRequestWithContext(ctx, req.method, req.url, rd)
	} else {
		hr, err = http.NewRequestWithContext(ctx, req.method, req.url, nil)
	}
	if err != nil {
		return 0, err
	}
	hr.Header = req.header.Clone()
	resp, err := l.client.Do(hr)
	if err != nil {
		return 0, err
	}
	buf.Reset()
	_, err = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

// probe sends one request and checks its status and that the body contains want.
func (l *loader) probe(ctx context.Context, req request, want string) error {
	var body []byte
	if len(req.bodies) > 0 {
		body = req.bodies[0]
	}
	var buf bytes.Buffer
	status, err := l.do(ctx, req, body, &buf)
	if err != nil {
		return err
	}
	if status != req.want || !strings.Contains(buf.String(), want) {
		return fmt.Errorf("%s %s: status %d (want %d), body %.300q (want it to contain %q)",
			req.method, req.url, status, req.want, buf.String(), want)
	}
	return nil
}

// issueUntil runs conc workers that each repeat req until n responses were counted (n ≤ 0:
// no limit) or the deadline passes, calling onBody for each expected response. It
// returns how many were answered as expected.
func (l *loader) issueUntil(ctx context.Context, req request, conc, n int, deadline time.Time) (int, int, string, error) {
	var (
		mu       sync.Mutex
		started  int
		done     int
		errs     int
		firstErr string
		wg       sync.WaitGroup
	)
	claim := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if n > 0 && started >= n {
			return false
		}
		started++
		return true
	}
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			for ctx.Err() == nil && time.Now().Before(deadline) && claim() {
				status, err := l.do(ctx, req, nil, &buf)
				mu.Lock()
				if err == nil && status == req.want {
					done++
					mu.Unlock()
					req.onBody(buf.Bytes())
					continue
				}
				started-- // retried by whoever claims next
				errs++
				if firstErr == "" {
					if err != nil {
						firstErr = err.Error()
					} else {
						firstErr = fmt.Sprintf("status %d: %.200s", status, strings.TrimSpace(buf.String()))
					}
				}
				tooMany := errs > 100 && errs > done
				mu.Unlock()
				if tooMany {
					return
				}
			}
		}()
	}
	wg.Wait()
	return done, errs, firstErr, ctx.Err()
}
