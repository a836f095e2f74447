//go:build unix

package vaulttest

import (
	"errors"
	"net"
	"strconv"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. Another process
// may take it before the caller's child listens on it: callers retry a start that failed
// with "address already in use" (StartDev, StartRaft and StartGateway do).
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FreePortPair returns a free port p whose p+1 is free too: Vault's cluster listener
// defaults to the API port + 1, and a dev server always uses that.
func FreePortPair() (int, int, error) {
	for range 50 {
		l1, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, err
		}
		p := l1.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		_ = l1.Close()
		if err != nil {
			continue
		}
		_ = l2.Close()
		return p, p + 1, nil
	}
	return 0, 0, errors.New("no free pair of ports on 127.0.0.1")
}
