//go:build linux

package main

import "syscall"

// procAttr puts a child in its own process group and kills it if the harness dies
// without cleaning up (kill -9).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
