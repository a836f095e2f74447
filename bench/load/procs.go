//go:build unix

package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// cleanups are run once, last registered first: on a normal return from run, on an
// error, and on a second Ctrl-C (which does not wait for anything else).
var cleanups struct {
	sync.Mutex
	fns []func()
	ran bool
}

func atCleanup(fn func()) {
	cleanups.Lock()
	defer cleanups.Unlock()
	cleanups.fns = append(cleanups.fns, fn)
}

func runCleanups() {
	cleanups.Lock()
	defer cleanups.Unlock()
	if cleanups.ran {
		return
	}
	cleanups.ran = true
	for i := len(cleanups.fns) - 1; i >= 0; i-- {
		cleanups.fns[i]()
	}
}

// proc is a child process in its own process group, so that stopping it also stops
// whatever it started (Vault's plugin processes).
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	once    sync.Once
}

func startProc(name, bin string, args, env []string, logPath string) (*proc, error) {
	logF, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout = logF
	cmd.Stderr = logF
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		logF.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	liveGroups.Store(cmd.Process.Pid, true)
	go func() {
		_ = cmd.Wait()
		logF.Close()
		close(p.exited)
	}()
	atCleanup(p.stop)
	return p, nil
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the process group, waits up to 5s, then SIGKILLs the group
// (plugin processes a server left behind included).
func (p *proc) stop() {
	p.once.Do(func() {
		pgid := p.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
		}
		if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			fmt.Fprintf(os.Stderr, "load: killing %s (process group %d): %v\n", p.name, pgid, err)
		}
		<-p.exited
		liveGroups.Delete(pgid)
	})
}

// liveGroups holds the process group ids of children not yet stopped.
var liveGroups sync.Map

// killAllNow SIGKILLs every child's process group without waiting for anything: the
// second Ctrl-C.
func killAllNow() {
	liveGroups.Range(func(k, _ any) bool {
		_ = syscall.Kill(-k.(int), syscall.SIGKILL)
		return true
	})
}

// logTail returns the last n lines of the process's log.
func (p *proc) logTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago; with pair, port+1
// is free too (a Vault dev server also listens on port+1 for cluster traffic).
func freePort(pair bool) (int, error) {
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if !pair {
			ln.Close()
			return port, nil
		}
		ln2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1))
		ln.Close()
		if err == nil {
			ln2.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free port pair on 127.0.0.1")
}

// childEnv is the harness's environment without anything that would point a child at
// another Vault or change the gateway's flags, plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VAULT_") || strings.HasPrefix(kv, "APIKEY_GATEWAY_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}
