// Package vaulttest starts and stops the real processes that the integration suite, the
// soak and the load harness run against: Vault dev servers, single-node and clustered
// Raft servers, the plugin registered as an operator would, and the apikey-gateway.
//
// It is the one harness for every suite that needs a real Vault (integration/, the soak
// in integration/soak_test.go, bench/load, and any later suite: dashboard, proxies,
// multi-gateway). A new suite uses it instead of starting processes of its own, so that
// port selection, environment cleaning, readiness checks and process clean-up stay in one
// place.
//
// What it offers:
//
//   - Server: a Vault server in a directory of its own (plugin directory with copies of
//     the plugin binaries, log, Raft data, init output, HOME), on free 127.0.0.1 ports,
//     started in dev mode (StartDev) or with integrated storage (StartRaft, or
//     StartWithConfig for a cluster node with a config of the caller's), with Init,
//     Unseal, Stop, StartAgain, Kill, port holding across restarts, the real `vault` CLI
//     (CLI), and RegisterPlugin / EnablePlugin / WaitPluginReady.
//   - Gateway: the apikey-gateway binary on free ports, started once /healthz answers;
//     StartGateways for several replicas of one deployment (fleet mode), and
//     Gateway.Metrics / ParseMetrics for a scrape of its metrics listener.
//   - Process: any child in a process group of its own, so that stopping it also stops
//     what it started (Vault's plugin processes).
//   - FreePort, FreePortPair, Environ (the environment without VAULT_* and
//     APIKEY_GATEWAY_*), Executable and ExecutableFromEnv, FileSHA256, CopyFile, Poll.
//   - StartNginx, StartCaddy, StartGatewayWithGRPC, ProxyBinary, RenderDocsConfig: the
//     real proxies with the configs of docs/proxies (forward auth); StartDashboard.
//   - Promtool, RunPromtool, CheckMetrics: Prometheus's promtool ($PROMTOOL or PATH)
//     for the metrics exposition and the alert rules.
//
// Nothing here fails a test: every function returns an error, and callers decide (tests
// wrap them with t.Fatal, the load harness prints and exits). Everything started is
// killed, process group and all, through the Cleaner the caller passes: a *testing.T
// (its Cleanup method) in tests, a *Cleanups in programs, which runs them on exit and
// can kill every process at once on a second Ctrl-C. Servers and gateways stop by
// themselves this way even when a test fails or the caller panics; on Linux a child also
// gets SIGKILL when the process that started it dies.
//
// The package keeps no package-level state and does not import testing or the Vault
// server module; it talks to Vault through github.com/hashicorp/vault/api and the vault
// binary.
package vaulttest
