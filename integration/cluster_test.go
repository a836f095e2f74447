//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/vaulttest"
)

// Cluster is a Vault HA cluster with integrated storage (raft) on loopback: every node
// has its own data dir, ports and plugin directory (holding the same plugin binary), and
// retry_join stanzas naming every other node. It is initialised once (1 key share) and
// every node is unsealed with the shared key.
type Cluster struct {
	Nodes     []*Server
	RootToken string
	UnsealKey string

	mu   sync.Mutex
	down map[*Server]bool // killed and not yet restarted
}

// clusterPerfMultiplier scales raft's timing (heartbeat/election timeouts are about
// 1 s × this). 1 is what Vault recommends for production; 2 keeps leadership stable on a
// busy 2-core test machine while failover stays a few seconds.
const clusterPerfMultiplier = 2

// StartCluster starts an n-node raft cluster, initialises node 0, unseals every node,
// waits until all n are healthy voters, and registers and enables the plugin at
// "apikey" (the catalog and mount table are replicated; each node's plugin_directory
// has its own copy of the binary).
func StartCluster(t *testing.T, n int) *Cluster {
	t.Helper()
	require.GreaterOrEqual(t, n, 1)
	c := &Cluster{down: map[*Server]bool{}}
	began := time.Now()
	for i := 0; i < n; i++ {
		s := newServer(t, false)
		// Hold every node's ports until the configs naming them are written and the
		// node starts, so that PickPorts does not hand out one twice.
		require.NoError(t, s.PickPorts())
		s.HoldPorts()
		c.Nodes = append(c.Nodes, s)
	}
	for i, s := range c.Nodes {
		require.NoError(t, os.WriteFile(s.ConfigPath, []byte(c.nodeConfig(i)), 0o600))
	}
	for _, s := range c.Nodes {
		c.startNode(t, s, func(h *api.HealthResponse) bool { return true })
	}

	// Initialise node 0 and make it the active node.
	// (Init checks that there is one unseal key and a root token.)
	first := c.Nodes[0]
	out, err := first.Init(context.Background())
	require.NoError(t, err)
	c.RootToken, c.UnsealKey = first.RootToken, first.UnsealKey
	for _, s := range c.Nodes[1:] {
		require.NoError(t, s.SetInit(out))
	}
	first.Unseal(t)
	t.Logf("cluster: node0 initialised and active after %s", time.Since(began).Round(time.Millisecond))

	// New servers become voters after autopilot's stabilization time (10 s by default);
	// shorten it so that the cluster is ready sooner.
	first.Eventually(t, startTimeout, func() error {
		_, err := first.Client.Logical().Write("sys/storage/raft/autopilot/configuration", map[string]interface{}{
			"server_stabilization_time": "2s",
		})
		return err
	})

	// The others join through retry_join once they are unsealed with the shared key.
	errs := make([]error, len(c.Nodes))
	var wg sync.WaitGroup
	for i, s := range c.Nodes[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i+1] = c.unsealNode(s, true)
		}()
	}
	wg.Wait()
	// (The server logs are dumped by the cleanup of a failed test.)
	require.NoError(t, errors.Join(errs...))
	t.Logf("cluster: all nodes unsealed after %s", time.Since(began).Round(time.Millisecond))
	c.WaitHealthy(t, startTimeout)
	t.Logf("cluster: %d healthy voters after %s", n, time.Since(began).Round(time.Millisecond))

	// Registered once, on the active node: the catalog is replicated, so every node
	// must have the very same binary (same sha256) in its own plugin directory.
	for _, s := range c.Nodes {
		sum, err := vaulttest.FileSHA256(filepath.Join(s.PluginDir, pluginName))
		require.NoError(t, err)
		require.Equal(t, pluginSHA256, sum, "plugin binary of %s", s.Addr)
	}
	first.RegisterPlugin(t)
	first.EnablePlugin(t, "apikey")
	return c
}

func (c *Cluster) nodeConfig(i int) string {
	var storageExtra strings.Builder
	fmt.Fprintf(&storageExtra, "  performance_multiplier = %d\n", clusterPerfMultiplier)
	for j, o := range c.Nodes {
		if j != i {
			fmt.Fprintf(&storageExtra, "  retry_join {\n    leader_api_addr = %q\n  }\n", o.Addr)
		}
	}
	return c.Nodes[i].RaftConfig(fmt.Sprintf("node%d", i), storageExtra.String())
}

// startNode starts s with its config on its (held) ports and waits until it answers
// health with ok.
func (c *Cluster) startNode(t *testing.T, s *Server, ok func(*api.HealthResponse) bool) {
	t.Helper()
	if err := s.StartWithConfig(context.Background(), ok); err != nil {
		t.Fatalf("vault node %s did not start: %v", s.Addr, err)
	}
}

// joinWaitMsg is what a node started with retry_join logs (every 2 s) once it has
// fetched the leader's challenge and waits for the unseal key.
const joinWaitMsg = "waiting for unseal keys to be supplied"

// joinedMsg is what a node logs when its join completed.
const joinedMsg = "successfully joined the raft cluster"

// unsealNode unseals s with the shared unseal key and waits until it is unsealed and
// part of the cluster. A node that is joining (joining=true, its first start) takes the
// key only after retry_join has fetched the leader's challenge: Vault 1.21 has a short
// window in every join attempt in which a submitted key sends the node into a state it
// does not leave ("failed to create cipher: crypto/aes: invalid key size 0"), so the key
// is submitted right after the node logs that it waits for it (the next attempt is 2 s
// later), and again only after a later such log line.
func (c *Cluster) unsealNode(s *Server, joining bool) error {
	cfg := api.DefaultConfig()
	cfg.Address = s.Addr
	cfg.Timeout = 10 * time.Second
	cfg.MaxRetries = 0
	cl, err := api.NewClient(cfg)
	if err != nil {
		return err
	}
	cl.ClearToken()
	deadline := time.Now().Add(startTimeout)
	submittedAt := 0    // waiting-for-key messages seen when the key was last submitted
	submittedJoins := 0 // completed joins seen when the key was last submitted
	var last error
	for ; time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		st, err := cl.Sys().SealStatus()
		if err != nil {
			last = err
			continue
		}
		if !st.Sealed {
			break
		}
		if joining {
			// A key submitted while the join was still running may be dropped when it
			// completes; the node then logs no more waits, so a completed join since the
			// last submission allows one more.
			log := s.LogSinceStart()
			n, joins := strings.Count(log, joinWaitMsg), strings.Count(log, joinedMsg)
			if !st.Initialized || n == 0 || (n <= submittedAt && joins <= submittedJoins) {
				last = fmt.Errorf("%s: waiting for retry_join to fetch the challenge (initialized=%v, %d waits logged)", s.Addr, st.Initialized, n)
				continue
			}
			submittedAt, submittedJoins = n, joins
		}
		st, err = cl.Sys().Unseal(c.UnsealKey)
		switch {
		case err != nil:
			last = fmt.Errorf("unseal %s: %w", s.Addr, err)
		case st.Sealed:
			last = fmt.Errorf("%s still sealed (progress %d/%d)", s.Addr, st.Progress, st.T)
		default:
			last = nil
		}
	}
	for ; time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		h, err := cl.Sys().Health()
		if err == nil && h.Initialized && !h.Sealed {
			return nil
		}
		last = err
		if err == nil {
			last = fmt.Errorf("%s: initialized=%v sealed=%v", s.Addr, h.Initialized, h.Sealed)
		}
	}
	return fmt.Errorf("node %s not unsealed within %s: %v", s.Addr, startTimeout, last)
}

// healthClient is an unauthenticated client for s with a short timeout and no retries,
// for polling health, seal status and leadership.
func healthClient(t *testing.T, s *Server) *api.Client {
	t.Helper()
	cl := fastClient(t, s.Addr, "", 5*time.Second)
	return cl
}

// fastClient is an API client with the given timeout, no automatic retries and a
// connection pool big enough for concurrent load (the default keeps 3 idle connections
// per host, so 16 goroutines would open and close connections all the time).
func fastClient(t *testing.T, addr, token string, timeout time.Duration) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = addr
	cfg.Timeout = timeout
	cfg.MaxRetries = 0
	if tr, ok := cfg.HttpClient.Transport.(*http.Transport); ok {
		tr.MaxIdleConnsPerHost = 64
	}
	cl, err := api.NewClient(cfg)
	require.NoError(t, err)
	cl.ClearNamespace()
	if token == "" {
		cl.ClearToken()
	} else {
		cl.SetToken(token)
	}
	return cl
}

// Up returns the nodes that have not been killed.
func (c *Cluster) Up() []*Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	var up []*Server
	for _, s := range c.Nodes {
		if !c.down[s] {
			up = append(up, s)
		}
	}
	return up
}

// activeNow returns the node that reports itself active right now (nil if none).
func (c *Cluster) activeNow(t *testing.T) *Server {
	t.Helper()
	for _, s := range c.Up() {
		h, err := healthClient(t, s).Sys().Health()
		if err == nil && h.Initialized && !h.Sealed && !h.Standby {
			return s
		}
	}
	return nil
}

// Active waits for an active node among the running ones and returns it.
func (c *Cluster) Active(t *testing.T) *Server {
	t.Helper()
	var active *Server
	eventually(t, startTimeout, func() error {
		if active = c.activeNow(t); active == nil {
			return errors.New("no active node")
		}
		return nil
	})
	return active
}

// Index is the position of s in Nodes (node<index> is its raft node_id).
func (c *Cluster) Index(s *Server) int {
	for i, n := range c.Nodes {
		if n == s {
			return i
		}
	}
	return -1
}

// Kill kills s with SIGKILL, its whole process group (server and plugin processes) at
// once, like a machine that dies, and keeps its ports for its restart.
func (c *Cluster) Kill(t *testing.T, s *Server) time.Time {
	t.Helper()
	c.mu.Lock()
	c.down[s] = true
	c.mu.Unlock()
	killed := time.Now() // SIGKILL goes out right away; kill then waits for the exit
	s.Kill()
	s.HoldPorts()
	return killed
}

// Restart starts a killed node again with the same config and data dir, unseals it with
// the shared key and waits until it is a member of the cluster again.
func (c *Cluster) Restart(t *testing.T, s *Server) {
	t.Helper()
	c.startNode(t, s, func(h *api.HealthResponse) bool { return h.Initialized })
	require.NoError(t, c.unsealNode(s, false))
	c.mu.Lock()
	delete(c.down, s)
	c.mu.Unlock()
}

// WaitHealthy waits until the raft configuration has every node as a voter, autopilot
// reports every server healthy, and every running node is unsealed with one of them
// active (ha-status lists every node, so the standbys reach the active node).
func (c *Cluster) WaitHealthy(t *testing.T, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() error { return c.healthy(t) })
}

func (c *Cluster) healthy(t *testing.T) error {
	active := c.activeNow(t)
	if active == nil {
		return errors.New("no active node")
	}
	cl := fastClient(t, active.Addr, c.RootToken, 10*time.Second)
	voters, err := raftVoters(cl)
	if err != nil {
		return err
	}
	if len(voters) != len(c.Nodes) {
		return fmt.Errorf("raft voters %v, want %d", voters, len(c.Nodes))
	}
	st, err := cl.Sys().RaftAutopilotState()
	if err != nil {
		return fmt.Errorf("autopilot state: %w", err)
	}
	if st == nil || !st.Healthy || len(st.Voters) != len(c.Nodes) {
		return fmt.Errorf("autopilot: %v", st)
	}
	for id, srv := range st.Servers {
		if !srv.Healthy {
			return fmt.Errorf("autopilot: server %s not healthy: %v", id, srv)
		}
	}
	ha, err := cl.Sys().HAStatus()
	if err != nil {
		return fmt.Errorf("ha-status: %w", err)
	}
	if len(ha.Nodes) != len(c.Nodes) {
		return fmt.Errorf("ha-status lists %d nodes, want %d", len(ha.Nodes), len(c.Nodes))
	}
	for _, s := range c.Nodes {
		h, err := healthClient(t, s).Sys().Health()
		if err != nil {
			return fmt.Errorf("%s: %w", s.Addr, err)
		}
		if h.Sealed {
			return fmt.Errorf("%s is sealed", s.Addr)
		}
	}
	return nil
}

// raftVoters lists the node_ids of the voters in sys/storage/raft/configuration.
func raftVoters(cl *api.Client) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sec, err := cl.Logical().ReadWithContext(ctx, "sys/storage/raft/configuration")
	if err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	if sec == nil || sec.Data == nil {
		return nil, errors.New("raft configuration: empty response")
	}
	config, _ := sec.Data["config"].(map[string]interface{})
	servers, _ := config["servers"].([]interface{})
	var voters []string
	for _, e := range servers {
		m, _ := e.(map[string]interface{})
		if v, _ := m["voter"].(bool); v {
			id, _ := m["node_id"].(string)
			voters = append(voters, id)
		}
	}
	return voters, nil
}
