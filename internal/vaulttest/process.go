//go:build unix

package vaulttest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Cleaner registers a function to run when the caller is done with what it started.
// *testing.T and *testing.B satisfy it with their Cleanup method; programs use a
// *Cleanups.
type Cleaner interface {
	Cleanup(fn func())
}

// Cleanups is the Cleaner of a program (the load harness), where there is no testing.T:
// Run runs the registered functions once, last registered first, and KillNow kills every
// process started with it without waiting (a second Ctrl-C). The zero value is ready.
type Cleanups struct {
	mu    sync.Mutex
	fns   []func()
	procs []*Process
	ran   bool
}

// Cleanup registers fn. After Run it runs fn at once: whatever starts late (a process
// that was starting while the program was interrupted) is still cleaned up.
func (c *Cleanups) Cleanup(fn func()) {
	c.mu.Lock()
	if c.ran {
		c.mu.Unlock()
		fn()
		return
	}
	c.fns = append(c.fns, fn)
	c.mu.Unlock()
}

// track remembers p for KillNow; StartProcess calls it when its Cleaner is a *Cleanups.
func (c *Cleanups) track(p *Process) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.procs = append(c.procs, p)
}

// Run runs the registered functions, last registered first; only the first call does.
func (c *Cleanups) Run() {
	c.mu.Lock()
	if c.ran {
		c.mu.Unlock()
		return
	}
	c.ran = true
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// KillNow sends SIGKILL to the process group of every process started with c and does
// not wait for anything: for a program that must exit right now.
func (c *Cleanups) KillNow() {
	c.mu.Lock()
	procs := append([]*Process(nil), c.procs...)
	c.mu.Unlock()
	for _, p := range procs {
		p.KillNow()
	}
}

// ProcessSpec says what StartProcess runs.
type ProcessSpec struct {
	Name    string   // for messages and the log header
	Bin     string   // executable
	Args    []string // arguments
	Env     []string // the whole environment (see Environ)
	Dir     string   // working directory ("" = the caller's)
	LogPath string   // stdout and stderr are appended here
}

// Process is a child process in a process group of its own, so that killing the group
// also kills what the child started (Vault's plugin processes).
type Process struct {
	Name    string
	LogPath string

	cmd    *exec.Cmd
	exited chan struct{}
}

// StartProcess starts spec in a new process group with its output appended to
// spec.LogPath after a header line ("==== <time>: <name> <args>"), and registers its
// Kill with cleaner, so that it never outlives the caller's clean-up.
func StartProcess(spec ProcessSpec, cleaner Cleaner) (*Process, error) {
	if cleaner == nil {
		return nil, errors.New("vaulttest: StartProcess needs a Cleaner")
	}
	logF, err := os.OpenFile(spec.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	// The header marks each start in a log that is appended to across restarts
	// (Server.LogSinceStart looks for it).
	fmt.Fprintf(logF, "==== %s: %s %s\n", time.Now().Format(time.RFC3339Nano), spec.Name, strings.Join(spec.Args, " "))
	cmd := exec.Command(spec.Bin, spec.Args...)
	cmd.Env = spec.Env
	cmd.Dir = spec.Dir
	cmd.Stdout = logF
	cmd.Stderr = logF
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		logF.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", spec.Name, filepath.Base(spec.Bin), err)
	}
	p := &Process{Name: spec.Name, LogPath: spec.LogPath, cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logF.Close()
		close(p.exited)
	}()
	if c, ok := cleaner.(*Cleanups); ok {
		c.track(p)
	}
	cleaner.Cleanup(p.Kill)
	return p, nil
}

// Pid is the process id, which is also its process group id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed once the process has exited and been reaped.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// State is the exit state, nil while the process runs.
func (p *Process) State() *os.ProcessState {
	if p.Running() {
		return nil
	}
	return p.cmd.ProcessState
}

// ExitCode is the exit status, -1 while the process runs or if a signal ended it.
func (p *Process) ExitCode() int {
	if st := p.State(); st != nil {
		return st.ExitCode()
	}
	return -1
}

// Signal sends sig to the process itself (not its group): what an operator's kill or
// a service manager does first.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Stop sends SIGTERM to the process and waits up to timeout for it to exit, then kills
// its whole group (see Kill). The error says that it had to be killed.
func (p *Process) Stop(timeout time.Duration) error {
	_ = p.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-p.exited:
	case <-time.After(timeout):
		err = fmt.Errorf("%s did not exit within %s of SIGTERM; killed it", p.Name, timeout)
	}
	p.Kill()
	return err
}

// Kill sends SIGKILL to the process group, waits for the process to be reaped, and
// makes sure that nothing of the group is left: plugin processes are reparented when
// the server dies but stay in its group. Safe to call more than once.
func (p *Process) Kill() {
	pgid := p.Pid()
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		time.Sleep(50 * time.Millisecond)
	}
}

// KillNow sends SIGKILL to the process group and returns without waiting.
func (p *Process) KillNow() { _ = syscall.Kill(-p.Pid(), syscall.SIGKILL) }

// LogText is the whole log ("" if it cannot be read).
func (p *Process) LogText() string { return readText(p.LogPath) }

// LogTail is the last n lines of the log.
func (p *Process) LogTail(n int) string { return tail(readText(p.LogPath), n) }

// LogSinceStart is the log written since the process started (from its header line).
func (p *Process) LogSinceStart() string { return sinceLastStart(readText(p.LogPath)) }

// sinceLastStart is text from its last start header on: a log is appended to across
// restarts, and only the current run's lines say why that run failed.
func sinceLastStart(text string) string {
	if i := strings.LastIndex(text, "\n==== "); i >= 0 {
		return text[i+1:]
	}
	return text
}

func readText(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// tail is the last n lines of text, without a trailing newline.
func tail(text string, n int) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
