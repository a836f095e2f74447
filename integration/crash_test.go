//go:build integration

package integration

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"
)

// TestPluginCrash: while goroutines verify keys against a dev server, the plugin process
// is killed with SIGKILL. Vault starts it again on the next request; verify resumes
// (requests failing in the restart window are counted), no key is lost, a key revoked
// before the crash stays NOT_FOUND and a disabled one DISABLED.
func TestPluginCrash(t *testing.T) {
	t.Parallel()
	s := Setup(t)
	_, err := s.Client.Logical().Write("apikey/roles/app", map[string]interface{}{
		"scopes": "orders:read", "ttl": "1h", "max_ttl": "24h",
	})
	require.NoError(t, err)
	var live []issued
	for i := 0; i < 30; i++ {
		live = append(live, issueAPI(t, s.Client, "apikey", "app", nil))
	}
	revoked := issueAPI(t, s.Client, "apikey", "app", nil)
	require.NoError(t, s.Client.Sys().Revoke(revoked.LeaseID))
	disabled := issueAPI(t, s.Client, "apikey", "app", nil)
	_, err = s.Client.Logical().Write("apikey/keys/"+disabled.KeyID, map[string]interface{}{"disabled": true})
	require.NoError(t, err)
	for _, k := range live {
		requireCode(t, s.Client, "apikey", k.Key, codeValid)
	}
	requireCode(t, s.Client, "apikey", revoked.Key, codeNotFound)
	requireCode(t, s.Client, "apikey", disabled.Key, codeDisabled)

	expect := map[string]string{revoked.Key: codeNotFound, disabled.Key: codeDisabled}
	for _, k := range live {
		expect[k.Key] = codeValid
	}
	load := startVerifyLoad(t, fastClient(t, s.Addr, s.RootToken, 30*time.Second), "apikey", expect, 8)

	load.waitOK(t, 200, time.Minute)
	r := crashPlugin(t, s, load, time.Minute)
	load.waitOK(t, load.ok.Load()+200, time.Minute)
	load.stop()

	t.Logf("plugin crash: killed pid %v; first VALID verify %s after the kill; plugin back as pid %v; failed verify requests: %d of the load, %d of the probe",
		r.killed, r.recovery.Round(time.Millisecond), r.restarted, load.errors(), r.failed)
	t.Logf("plugin crash: verify load: %s", load)
	require.Zero(t, load.wrong.Load(), "wrong verify answers: %v", load.wrongSamples())
	require.Zero(t, load.errorsBefore(r.killedAt), "verify failed before the crash")
	require.Zero(t, load.errorsAfter(r.killedAt.Add(r.recovery+30*time.Second)), "verify still failing 30 s after it had recovered")

	// No key is lost; the revoked key stays revoked, the disabled one disabled.
	for _, k := range live {
		requireCode(t, s.Client, "apikey", k.Key, codeValid)
	}
	requireCode(t, s.Client, "apikey", revoked.Key, codeNotFound)
	requireCode(t, s.Client, "apikey", disabled.Key, codeDisabled)
	// The restarted plugin issues, rotates and revokes.
	k := issueAPI(t, s.Client, "apikey", "app", nil)
	requireCode(t, s.Client, "apikey", k.Key, codeValid)
	sec, err := s.Client.Logical().Write("apikey/creds/app/rotate", map[string]interface{}{"key_id": live[0].KeyID})
	require.NoError(t, err)
	requireCode(t, s.Client, "apikey", str(t, sec.Data, "api_key"), codeValid)
	requireCode(t, s.Client, "apikey", live[0].Key, codeExpired)
	require.NoError(t, s.Client.Sys().Revoke(k.LeaseID))
	requireCode(t, s.Client, "apikey", k.Key, codeNotFound)
}

// crashResult describes one plugin kill.
type crashResult struct {
	killed    []int
	restarted []int
	killedAt  time.Time
	recovery  time.Duration // kill → first VALID verify
	failed    int           // verify requests of the probe that failed meanwhile
}

// crashPlugin kills the plugin processes of s with SIGKILL and waits until a verify of a
// live key answers VALID again and the plugin runs as a new process. probe supplies a key
// that must verify VALID.
func crashPlugin(t *testing.T, s *Server, probe keySource, timeout time.Duration) crashResult {
	t.Helper()
	pids := pluginPIDs(t, s)
	require.NotEmpty(t, pids, "no plugin process of %s found under %s", s.Addr, s.PluginDir)
	for _, pid := range pids {
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL), "killing plugin pid %d", pid)
	}
	r := crashResult{killed: pids, killedAt: time.Now()}
	c := fastClient(t, s.Addr, s.RootToken, 10*time.Second)
	deadline := r.killedAt.Add(timeout)
	for {
		key := probe.liveKey()
		res, err := tryVerify(c, "apikey", key)
		if err == nil && res.Code == codeValid {
			r.recovery = time.Since(r.killedAt)
			break
		}
		if err == nil {
			t.Fatalf("after the plugin crash a live key verified %s", res.Code)
		}
		r.failed++
		if time.Now().After(deadline) {
			t.Fatalf("verify did not recover within %s of the plugin crash: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	eventually(t, timeout, func() error {
		r.restarted = pluginPIDs(t, s)
		for _, p := range r.restarted {
			for _, old := range pids {
				if p == old {
					return fmt.Errorf("plugin pid %d still there", p)
				}
			}
		}
		if len(r.restarted) == 0 {
			return errors.New("no plugin process")
		}
		return nil
	})
	return r
}

// keySource hands out a key that is live (VALID) right now.
type keySource interface{ liveKey() string }

// pluginPIDs lists the processes running the plugin binary from s's plugin directory
// (each server has its own), found through /proc/<pid>/exe.
func pluginPIDs(t *testing.T, s *Server) []int {
	t.Helper()
	want, err := filepath.EvalSymlinks(filepath.Join(s.PluginDir, pluginName))
	require.NoError(t, err)
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && exe == want {
			pids = append(pids, pid)
		}
	}
	return pids
}

// verifyLoad runs goroutines that verify keys with known answers in a loop.
type verifyLoad struct {
	c      *api.Client
	mount  string
	keys   []string
	expect map[string]string
	live   []string

	done  chan struct{}
	wg    sync.WaitGroup
	ok    atomic.Int64
	wrong atomic.Int64

	mu      sync.Mutex
	errTime []time.Time
	errMsgs []string
	samples []string
}

// startVerifyLoad starts n goroutines verifying keys of expect (key → code) at random.
// They stop with stop() (also in t.Cleanup).
func startVerifyLoad(t *testing.T, c *api.Client, mount string, expect map[string]string, n int) *verifyLoad {
	t.Helper()
	l := &verifyLoad{c: c, mount: mount, expect: expect, done: make(chan struct{})}
	for k, code := range expect {
		l.keys = append(l.keys, k)
		if code == codeValid {
			l.live = append(l.live, k)
		}
	}
	require.NotEmpty(t, l.live)
	for i := 0; i < n; i++ {
		l.wg.Add(1)
		go l.run()
	}
	t.Cleanup(l.stop)
	return l
}

func (l *verifyLoad) run() {
	defer l.wg.Done()
	for {
		select {
		case <-l.done:
			return
		default:
		}
		key := l.keys[rand.IntN(len(l.keys))]
		res, err := tryVerify(l.c, l.mount, key)
		switch {
		case err != nil:
			l.mu.Lock()
			l.errTime = append(l.errTime, time.Now())
			if len(l.errMsgs) < 3 {
				l.errMsgs = append(l.errMsgs, strings.Join(strings.Fields(err.Error()), " "))
			}
			l.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		case res.Code != l.expect[key] || res.Valid != (res.Code == codeValid):
			l.wrong.Add(1)
			l.mu.Lock()
			if len(l.samples) < 10 {
				l.samples = append(l.samples, fmt.Sprintf("%s: %s valid=%v, want %s", key[:8], res.Code, res.Valid, l.expect[key]))
			}
			l.mu.Unlock()
		default:
			l.ok.Add(1)
		}
	}
}

func (l *verifyLoad) liveKey() string { return l.live[rand.IntN(len(l.live))] }

func (l *verifyLoad) stop() {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	l.wg.Wait()
}

// waitOK waits until n verifies have answered as expected in total.
func (l *verifyLoad) waitOK(t *testing.T, n int64, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() error {
		if got := l.ok.Load(); got < n {
			return fmt.Errorf("%d verifies answered right, waiting for %d (%d failed)", got, n, l.errors())
		}
		return nil
	})
}

func (l *verifyLoad) errors() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.errTime)
}

func (l *verifyLoad) errorsBefore(ts time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.errTime {
		if e.Before(ts) {
			n++
		}
	}
	return n
}

func (l *verifyLoad) errorsAfter(ts time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.errTime {
		if e.After(ts) {
			n++
		}
	}
	return n
}

func (l *verifyLoad) wrongSamples() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.samples...)
}

func (l *verifyLoad) String() string {
	l.mu.Lock()
	msgs := strings.Join(l.errMsgs, " | ")
	l.mu.Unlock()
	return fmt.Sprintf("%d answered as expected, %d failed requests, %d wrong answers (first failures: %s)", l.ok.Load(), l.errors(), l.wrong.Load(), msgs)
}
