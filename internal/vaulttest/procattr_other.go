//go:build unix && !linux

package vaulttest

import "syscall"

// procAttr puts a child in a process group of its own (Pdeathsig is Linux-only).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
