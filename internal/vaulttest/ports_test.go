//go:build unix

package vaulttest

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFreePortIsListenable(t *testing.T) {
	p, err := FreePort()
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	require.NoError(t, err)
	require.NoError(t, l.Close())
}

func TestFreePortPairIsConsecutiveAndListenable(t *testing.T) {
	p, cp, err := FreePortPair()
	require.NoError(t, err)
	require.Equal(t, p+1, cp)
	for _, port := range []int{p, cp} {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		require.NoError(t, err)
		require.NoError(t, l.Close())
	}
}
