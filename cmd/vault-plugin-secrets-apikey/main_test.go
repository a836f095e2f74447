package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// stampedVersion is what the tests stamp: not the default in version.go, so that a build
// that ignored -ldflags would be caught.
const stampedVersion = "v9.8.7-test"

// repoRoot is the module root, two levels above this package (go test runs in the
// package's directory).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(root, "go.mod"))
	return root
}

// release runs scripts/release.sh, the script behind `make release`, for this machine's
// platform only and without SBOMs (the integration suite makes those), into a temp dir.
func release(t *testing.T, version string) (dist string, out string, err error) {
	t.Helper()
	root := repoRoot(t)
	dist = filepath.Join(t.TempDir(), "dist")
	cmd := exec.Command(filepath.Join(root, "scripts", "release.sh"), version)
	cmd.Env = append(os.Environ(),
		"DIST="+dist,
		"PLATFORMS="+runtime.GOOS+"/"+runtime.GOARCH,
		"SBOM=0",
	)
	b, err := cmd.CombinedOutput()
	return dist, string(b), err
}

// The release build stamps VERSION into the plugin, and the plugin reports it as the
// RunningVersion of the backend Vault gets from apikey.Factory (main's -version asks that
// backend, not the variable).
func TestReleaseStampsRunningVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the release binaries")
	}
	dist, out, err := release(t, stampedVersion)
	require.NoError(t, err, "scripts/release.sh: %s", out)

	suffix := "_" + stampedVersion + "_" + runtime.GOOS + "_" + runtime.GOARCH
	plugin := filepath.Join(dist, "vault-plugin-secrets-apikey"+suffix)
	// Every command under cmd/ is released, the gateway included, stamped too.
	gateway := filepath.Join(dist, "apikey-gateway"+suffix)
	require.FileExists(t, gateway)
	got, err := exec.Command(gateway, "-version").Output()
	require.NoError(t, err)
	require.Equal(t, stampedVersion, strings.TrimSpace(string(got)))

	got, err = exec.Command(plugin, "-version").Output()
	require.NoError(t, err)
	require.Equal(t, stampedVersion, strings.TrimSpace(string(got)))

	// SHA256SUMS lists every other file of dist/ with its digest, in sha256sum's format.
	sums := readSums(t, filepath.Join(dist, "SHA256SUMS"))
	entries, err := os.ReadDir(dist)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		if e.Name() != "SHA256SUMS" {
			names = append(names, e.Name())
		}
	}
	require.ElementsMatch(t, names, keys(sums))
	for _, name := range names {
		require.Equal(t, fileSHA256(t, filepath.Join(dist, name)), sums[name], name)
	}
}

// A version that is not vX.Y.Z[-pre] is refused before anything is built.
func TestReleaseRejectsBadVersion(t *testing.T) {
	for _, v := range []string{"", "1.2.3", "v1.2", "v1.2.3+meta", "latest"} {
		_, out, err := release(t, v)
		require.Error(t, err, "VERSION=%q was accepted: %s", v, out)
		require.Contains(t, out, "VERSION", "VERSION=%q", v)
		require.NotContains(t, out, "release: vault-plugin-secrets-apikey_", "VERSION=%q built something", v)
	}
}

// A binary stamped by hand with a bad version refuses to start, saying why, rather than
// reporting that version to Vault.
func TestBadStampRefusesToStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin")
	}
	modulePath, err := exec.Command("go", "list", "-m").Output()
	require.NoError(t, err)
	bin := filepath.Join(t.TempDir(), "plugin")
	build := exec.Command("go", "build", "-trimpath", "-o", bin,
		"-ldflags", "-X "+strings.TrimSpace(string(modulePath))+".Version=9.8.7", ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	b, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", b)

	out, err := exec.Command(bin, "-version").CombinedOutput()
	require.Error(t, err, "a plugin stamped 9.8.7 started: %s", out)
	require.Contains(t, string(out), `version "9.8.7"`)
	require.Contains(t, string(out), "is not a semantic version")
}

func readSums(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sha256sum's text mode: 64 hex digits, two spaces, the file name.
		digest, name, ok := strings.Cut(sc.Text(), "  ")
		require.True(t, ok, "SHA256SUMS line %q", sc.Text())
		require.Len(t, digest, 64)
		sums[name] = digest
	}
	require.NoError(t, sc.Err())
	return sums
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
