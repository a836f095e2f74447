//go:build unix

package vaulttest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEnvironDropsVaultAndGatewayVariables(t *testing.T) {
	env := Environ([]string{
		"PATH=/bin",
		"VAULT_ADDR=https://prod:8200",
		"VAULT_TOKEN=s.secret",
		"APIKEY_GATEWAY_UPSTREAM=http://elsewhere",
		"HOME=/home/me",
		"MY_VAULT_THING=kept", // only a prefix is dropped
	}, "HOME=/tmp/server", "VAULT_ADDR=http://127.0.0.1:1")
	require.Equal(t, []string{
		"PATH=/bin",
		"MY_VAULT_THING=kept",
		"HOME=/tmp/server",
		"VAULT_ADDR=http://127.0.0.1:1",
	}, env)
}

func TestEnvironWithoutExtra(t *testing.T) {
	require.Equal(t, []string{"A=1"}, Environ([]string{"A=1", "VAULT_NAMESPACE=x"}))
}

func TestExecutable(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "bin", "tool")
	require.NoError(t, os.MkdirAll(filepath.Dir(exe), 0o755))
	require.NoError(t, os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755))
	plain := filepath.Join(dir, "plain")
	require.NoError(t, os.WriteFile(plain, nil, 0o644))

	got, err := Executable(exe)
	require.NoError(t, err)
	require.Equal(t, exe, got)

	// A relative path that does not exist here is looked for under the given dirs.
	got, err = Executable(filepath.Join("bin", "tool"), filepath.Join(dir, "nowhere"), dir)
	require.NoError(t, err)
	require.Equal(t, exe, got)

	_, err = Executable(plain)
	require.ErrorContains(t, err, "not an executable file")
	_, err = Executable(dir)
	require.ErrorContains(t, err, "not an executable file")
	_, err = Executable(filepath.Join(dir, "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = Executable("")
	require.Error(t, err)
}

func TestExecutableFromEnv(t *testing.T) {
	t.Setenv("VAULTTEST_SOME_BIN", "")
	_, err := ExecutableFromEnv("VAULTTEST_SOME_BIN")
	require.EqualError(t, err, "VAULTTEST_SOME_BIN is not set")

	t.Setenv("VAULTTEST_SOME_BIN", "/nonexistent/bin")
	_, err = ExecutableFromEnv("VAULTTEST_SOME_BIN")
	require.ErrorContains(t, err, "VAULTTEST_SOME_BIN=/nonexistent/bin")
}

func TestFileSHA256AndCopyFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	require.NoError(t, os.WriteFile(src, []byte("abc"), 0o600))
	sum, err := FileSHA256(src)
	require.NoError(t, err)
	require.Equal(t, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", sum)

	dst := filepath.Join(dir, "dst")
	require.NoError(t, CopyFile(src, dst, 0o755))
	st, err := os.Stat(dst)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o755), st.Mode().Perm())
	sum2, err := FileSHA256(dst)
	require.NoError(t, err)
	require.Equal(t, sum, sum2)
}

func TestRandomHex(t *testing.T) {
	a, b := RandomHex(8), RandomHex(8)
	require.Len(t, a, 16)
	require.NotEqual(t, a, b)
}
