//go:build unix

package vaulttest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakePromtool writes a shell script standing in for promtool into dir and returns its
// path.
func fakePromtool(t *testing.T, dir, script string) string {
	t.Helper()
	p := filepath.Join(dir, "promtool")
	require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755))
	return p
}

func TestPromtoolFromEnvOrPath(t *testing.T) {
	dir := t.TempDir()
	fake := fakePromtool(t, dir, "exit 0")

	t.Run("PROMTOOL wins", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		t.Setenv(PromtoolEnv, fake)
		got, err := Promtool()
		require.NoError(t, err)
		require.Equal(t, fake, got)
	})
	t.Run("PROMTOOL relative to a dir", func(t *testing.T) {
		t.Setenv(PromtoolEnv, "promtool")
		got, err := Promtool(filepath.Join(dir, "nowhere"), dir)
		require.NoError(t, err)
		require.Equal(t, fake, got)
	})
	t.Run("PROMTOOL wrong is an error, not a fallback to PATH", func(t *testing.T) {
		t.Setenv("PATH", dir)
		t.Setenv(PromtoolEnv, filepath.Join(dir, "missing"))
		_, err := Promtool()
		require.ErrorContains(t, err, "PROMTOOL="+filepath.Join(dir, "missing"))
		require.ErrorContains(t, err, "apt-get install")
	})
	t.Run("PATH", func(t *testing.T) {
		t.Setenv("PATH", dir)
		t.Setenv(PromtoolEnv, "")
		got, err := Promtool()
		require.NoError(t, err)
		require.Equal(t, fake, got)
	})
	t.Run("missing says how to install it", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		t.Setenv(PromtoolEnv, "")
		_, err := Promtool()
		require.ErrorContains(t, err, "promtool (Prometheus) is needed by this test and was not found")
		require.ErrorContains(t, err, "apt-get install --no-install-recommends prometheus")
		require.ErrorContains(t, err, "PROMTOOL=/path/to/promtool")
	})
}

func TestRunPromtool(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()

	echo := fakePromtool(t, t.TempDir(), `echo "args $*"; pwd; cat; echo oops >&2`)
	out, err := RunPromtool(ctx, echo, dir, []byte("from stdin\n"), "check", "rules", "x.yml")
	require.NoError(t, err)
	require.Equal(t, "args check rules x.yml\n"+dir+"\nfrom stdin\noops\n", out)

	failing := fakePromtool(t, t.TempDir(), `echo "FAILED: bad rule"; exit 1`)
	out, err = RunPromtool(ctx, failing, "", nil, "test", "rules", "t.yml")
	require.Equal(t, "FAILED: bad rule\n", out)
	var pe *PromtoolError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, 1, pe.ExitCode)
	require.Equal(t, []string{"test", "rules", "t.yml"}, pe.Args)
	require.ErrorContains(t, err, "promtool test rules t.yml: exit 1\nFAILED: bad rule")
}

func TestCheckMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	exposition := []byte("# HELP a_total A.\n# TYPE a_total counter\na_total 1\n")

	// Reads the exposition from stdin and says nothing: passes.
	quiet := fakePromtool(t, t.TempDir(), `test "$*" = "check metrics" || exit 9; cat >/dev/null`)
	require.NoError(t, CheckMetrics(ctx, quiet, exposition))

	// Lint findings fail even with exit status 0 (older promtool versions).
	lint := fakePromtool(t, t.TempDir(), `cat >/dev/null; echo 'a counter metrics should have "_total" suffix'`)
	err := CheckMetrics(ctx, lint, exposition)
	require.ErrorContains(t, err, `should have "_total" suffix`)

	// Parse errors exit non-zero.
	bad := fakePromtool(t, t.TempDir(), `cat >/dev/null; echo 'error while linting: text format parsing error' >&2; exit 1`)
	err = CheckMetrics(ctx, bad, exposition)
	var pe *PromtoolError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, 1, pe.ExitCode)
	require.Contains(t, pe.Output, "text format parsing error")
}
