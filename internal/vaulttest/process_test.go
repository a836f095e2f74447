//go:build unix

package vaulttest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// startShell runs script with sh in a process group of its own, logging to dir/sh.log.
func startShell(t *testing.T, c Cleaner, script string) *Process {
	t.Helper()
	p, err := StartProcess(ProcessSpec{
		Name:    "sh",
		Bin:     "/bin/sh",
		Args:    []string{"-c", script},
		Env:     Environ(os.Environ()),
		LogPath: filepath.Join(t.TempDir(), "sh.log"),
	}, c)
	require.NoError(t, err)
	return p
}

// alive reports whether pid exists and is not a zombie waiting for its parent.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return syscall.Kill(pid, 0) == nil // no /proc (not Linux)
	}
	// The state follows the parenthesised command name.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// waitForPID reads the pid a script wrote to path.
func waitForPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(path)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	}, 10*time.Second, 10*time.Millisecond)
	return pid
}

func TestKillTakesTheWholeProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	// The background sleep stands for a plugin process the server started.
	p := startShell(t, t, "sleep 300 & echo $! > "+pidFile+"; wait")
	child := waitForPID(t, pidFile)
	require.True(t, alive(child))

	p.Kill()
	require.False(t, p.Running())
	require.False(t, alive(child), "the child in the group survived Kill")
	p.Kill() // idempotent
}

func TestStopIsGracefulWhenTheProcessExits(t *testing.T) {
	p := startShell(t, t, "trap 'exit 0' TERM; while :; do sleep 0.05; done")
	time.Sleep(100 * time.Millisecond) // let the trap be set
	require.NoError(t, p.Stop(10*time.Second))
	require.False(t, p.Running())
}

func TestStopKillsAProcessThatIgnoresSIGTERM(t *testing.T) {
	p := startShell(t, t, "trap '' TERM; while :; do sleep 0.05; done")
	time.Sleep(100 * time.Millisecond)
	err := p.Stop(200 * time.Millisecond)
	require.ErrorContains(t, err, "did not exit within 200ms of SIGTERM")
	require.False(t, p.Running())
}

func TestProcessExitCodeAndLog(t *testing.T) {
	p := startShell(t, t, "echo first run; exit 3")
	<-p.Exited()
	require.Equal(t, 3, p.ExitCode())
	require.NotNil(t, p.State())
	log := p.LogText()
	require.True(t, strings.HasPrefix(log, "==== "), log)
	require.Contains(t, log, ": sh -c echo first run; exit 3\n")
	require.Equal(t, "first run", p.LogTail(1))
}

func TestLogSinceStartIsTheLastRun(t *testing.T) {
	text := "==== t1: vault server\nold error: address already in use\n==== t2: vault server\nnew line\n"
	require.Equal(t, "==== t2: vault server\nnew line\n", sinceLastStart(text))
	require.Equal(t, "no header\n", sinceLastStart("no header\n"))
	require.Equal(t, "b\nc", tail("a\nb\nc\n", 2))
	require.Equal(t, "a", tail("a", 5))
}

func TestStartProcessRegistersItsKill(t *testing.T) {
	var c Cleanups
	p := startShell(t, &c, "sleep 300")
	require.True(t, p.Running())
	c.Run()
	require.False(t, p.Running(), "Run killed the process")

	_, err := StartProcess(ProcessSpec{Name: "x", Bin: "/bin/true", LogPath: filepath.Join(t.TempDir(), "x.log")}, nil)
	require.Error(t, err, "a process nobody cleans up is refused")
}

func TestCleanupsRunOnceLastFirst(t *testing.T) {
	var c Cleanups
	var order []int
	for i := 1; i <= 3; i++ {
		c.Cleanup(func() { order = append(order, i) })
	}
	c.Run()
	c.Run()
	require.Equal(t, []int{3, 2, 1}, order)
	// Registered after Run (a start that raced with the end): runs at once.
	c.Cleanup(func() { order = append(order, 4) })
	require.Equal(t, []int{3, 2, 1, 4}, order)
}

func TestCleanupsKillNowDoesNotWait(t *testing.T) {
	var c Cleanups
	defer c.Run()
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	p := startShell(t, &c, "trap '' TERM; sleep 300 & echo $! > "+pidFile+"; wait")
	child := waitForPID(t, pidFile)
	c.KillNow()
	select {
	case <-p.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("KillNow did not kill the process")
	}
	require.Eventually(t, func() bool { return !alive(child) }, 10*time.Second, 10*time.Millisecond)
}
