//go:build unix

package vaulttest

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeEnv makes the test binary act as a stand-in for a child the harness starts, so
// that StartGateway and the CLI wrapper can be tested without Vault or the gateway.
const fakeEnv = "VAULTTEST_FAKE"

func TestMain(m *testing.M) {
	switch os.Getenv(fakeEnv) {
	case "":
		os.Exit(m.Run())
	case "gateway":
		fakeGateway()
	case "cli":
		fakeCLI()
	}
	os.Exit(3)
}

// fakeGateway serves /healthz on -listen (and -metrics-listen) and prints its
// environment. With FAKE_BUSY_MARKER set, its first start fails like a gateway whose
// port was taken meanwhile.
func fakeGateway() {
	fs := flag.NewFlagSet("fake-gateway", flag.ExitOnError)
	listen := fs.String("listen", "", "")
	metrics := fs.String("metrics-listen", "", "")
	fs.String("upstream", "", "")
	_ = fs.Parse(os.Args[1:])
	if marker := os.Getenv("FAKE_BUSY_MARKER"); marker != "" {
		if _, err := os.Stat(marker); err != nil {
			_ = os.WriteFile(marker, nil, 0o600)
			fmt.Println("listen tcp " + *listen + ": bind: address already in use")
			os.Exit(1)
		}
	}
	if os.Getenv("FAKE_EXIT") != "" {
		fmt.Println("fake gateway: refusing to start")
		os.Exit(4)
	}
	for _, kv := range os.Environ() {
		fmt.Println("env", kv)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(fakeMetrics)) })
	if *metrics != "" {
		ml, err := net.Listen("tcp", *metrics)
		if err != nil {
			os.Exit(5)
		}
		go func() { _ = http.Serve(ml, mux) }()
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		os.Exit(5)
	}
	_ = http.Serve(l, mux)
}

// fakeMetrics is what the fake gateway serves at /metrics.
const fakeMetrics = `# HELP fake_calls_total Calls.
# TYPE fake_calls_total counter
fake_calls_total{call="verify"} 3
fake_calls_total{call="feed"} 2
fake_up 1
`

// fakeCLI prints its arguments and environment and exits with FAKE_CLI_EXIT's status.
func fakeCLI() {
	fmt.Println("args", strings.Join(os.Args[1:], " "))
	fmt.Println("home", os.Getenv("HOME"), "addr", os.Getenv("VAULT_ADDR"), "token", os.Getenv("VAULT_TOKEN"), "namespace", os.Getenv("VAULT_NAMESPACE"))
	if code := os.Getenv("FAKE_CLI_EXIT"); code != "" {
		fmt.Fprintln(os.Stderr, "fake vault: failing on purpose")
		var n int
		_, _ = fmt.Sscan(code, &n)
		os.Exit(n)
	}
	os.Exit(0)
}

// selfBin is the test binary, which acts as the fake named by VAULTTEST_FAKE.
func selfBin(t *testing.T) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(p)
}
