package main

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/apikeyauth"
)

// metrics are the gateway's Prometheus metrics. They implement apikeyauth.Observer. A
// registry of their own (not the global one) keeps tests independent.
type metrics struct {
	registry       *prometheus.Registry
	requests       *prometheus.CounterVec
	verifyDuration *prometheus.HistogramVec
	cacheLookups   *prometheus.CounterVec
	upstreamErrors prometheus.Counter
	vaultCalls     *prometheus.CounterVec
}

var (
	_ apikeyauth.Observer      = (*metrics)(nil)
	_ apikeyauth.FleetObserver = (*metrics)(nil)
)

// outcomes returns every requests_total outcome, pre-declared so that dashboards see
// zeros instead of missing series: verify's codes, the middleware's own, the gateway's.
func outcomes() []string {
	return append(apikeyauth.VerifyCodes(),
		apikeyauth.CodeMissing, apikeyauth.CodeRefused, apikeyauth.CodeUnavailable,
		apikeyauth.CodeCanceled, apikeyauth.CodeTooManyFailures,
		outcomeBadPath, outcomeBadMethod, outcomeUpgradeRefused, outcomeBodyTooLarge,
		outcomeNoRoute, outcomeMethodNotAllowed, outcomeAuthDisabled,
		outcomeUntrustedProxy, outcomeBadForwardAuth, outcomeOverrideRefused,
	)
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apikey_gateway_requests_total",
			Help: "Requests by outcome: the verify code (VALID, NOT_FOUND, ...), MISSING, VERIFY_UNAVAILABLE, or a routing refusal.",
		}, []string{"outcome"}),
		verifyDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "apikey_gateway_verify_duration_seconds",
			Help:    "Latency of verify calls to Vault (cache misses only), by result (ok: Vault answered; error: it did not).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5ms .. ~4s
		}, []string{"result"}),
		cacheLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apikey_gateway_cache_lookups_total",
			Help: "Verify cache lookups, by result (hit or miss).",
		}, []string{"result"}),
		upstreamErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "apikey_gateway_upstream_errors_total",
			Help: "Requests that could not be forwarded to the upstream (answered 502).",
		}),
		vaultCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apikey_gateway_vault_calls_total",
			Help: "Calls to Vault by kind: verify, and with -fleet renew (grants/renew), feed (change feed polls) and report (usage/report); failed ones included.",
		}, []string{"call"}),
	}
	for _, c := range apikeyauth.FleetCalls() {
		m.vaultCalls.WithLabelValues(c)
	}
	for _, o := range outcomes() {
		m.requests.WithLabelValues(o)
	}
	m.cacheLookups.WithLabelValues("hit")
	m.cacheLookups.WithLabelValues("miss")
	m.verifyDuration.WithLabelValues("ok")
	m.verifyDuration.WithLabelValues("error")
	m.registry.MustRegister(m.requests, m.verifyDuration, m.cacheLookups, m.upstreamErrors, m.vaultCalls,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// handler serves the metrics at /metrics, for the -metrics-listen listener only: it is
// not part of the gateway's public handler.
func (m *metrics) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	return mux
}

// Decision counts one request. The middleware only reports known codes (others as
// REFUSED), so the label set stays bounded.
func (m *metrics) Decision(code string) { m.requests.WithLabelValues(code).Inc() }

func (m *metrics) CacheLookup(hit bool) {
	if hit {
		m.cacheLookups.WithLabelValues("hit").Inc()
	} else {
		m.cacheLookups.WithLabelValues("miss").Inc()
	}
}

func (m *metrics) VerifyCall(elapsed time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.verifyDuration.WithLabelValues(result).Observe(elapsed.Seconds())
}

// FleetCall counts one call to Vault. The middleware reports only the kinds of
// apikeyauth.FleetCalls, so the label set stays bounded.
func (m *metrics) FleetCall(call string, _ time.Duration, _ error) {
	m.vaultCalls.WithLabelValues(call).Inc()
}
