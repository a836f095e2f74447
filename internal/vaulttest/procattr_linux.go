//go:build linux

package vaulttest

import "syscall"

// procAttr puts a child in a process group of its own (so that its group, plugin
// processes included, can be killed at once) and has the kernel kill it if the process
// that started it dies without cleaning up (a crashed or SIGKILLed test binary).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
