//go:build integration

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/vaulttest"
)

// releaseVersion differs from version.go's default, so that a build that ignored the
// stamp would be caught.
const releaseVersion = "v9.8.7-test"

// TestReleaseVersionReportedToVault builds the release artifacts for this machine's
// platform with scripts/release.sh (what `make release` runs), then installs the plugin
// from them as the README tells an operator to: checksum from SHA256SUMS, registered with
// -sha256. Vault must see the stamped version: it refuses another -version, catalogs the
// plugin under the stamped one when none is given, and the mount runs it.
func TestReleaseVersionReportedToVault(t *testing.T) {
	dist := runRelease(t, releaseVersion)
	suffix := "_" + releaseVersion + "_" + runtime.GOOS + "_" + runtime.GOARCH
	artifact := pluginName + suffix

	sums := readSHA256SUMS(t, filepath.Join(dist, "SHA256SUMS"))
	for _, name := range []string{
		artifact, artifact + ".cdx.json",
		"apikey-gateway" + suffix, "apikey-gateway" + suffix + ".cdx.json",
	} {
		require.Contains(t, sums, name, "SHA256SUMS")
		got, err := vaulttest.FileSHA256(filepath.Join(dist, name))
		require.NoError(t, err)
		require.Equal(t, sums[name], got, "SHA256SUMS entry of %s", name)
	}
	checkSBOM(t, filepath.Join(dist, artifact+".cdx.json"), "github.com/hashicorp/vault/sdk")
	checkSBOM(t, filepath.Join(dist, "apikey-gateway"+suffix+".cdx.json"), "")

	s := StartDevServer(t)
	// A name of its own: the catalog entry of the harness's plugin stays untouched.
	name := pluginName + "-release"
	require.NoError(t, vaulttest.CopyFile(filepath.Join(dist, artifact), filepath.Join(s.PluginDir, name), 0o755))
	sha := sums[artifact]

	// Vault starts the plugin to compare versions: a -version the binary does not report
	// is refused, naming the one it does.
	ce := s.CLIFail(t, s.RootToken, "plugin", "register", "-sha256="+sha, "-version=v0.1.0", "secret", name)
	require.Contains(t, ce.Stderr, "plugin version mismatch")
	require.Contains(t, ce.Stderr, releaseVersion)

	// Without -version, Vault catalogs the plugin under the version the plugin reports.
	s.MustCLI(t, s.RootToken, "plugin", "register", "-sha256="+sha, "secret", name)
	// `vault plugin info -format=json` prints the catalog entry itself, not a secret.
	var info struct {
		Name    string `json:"name"`
		SHA256  string `json:"sha256"`
		Version string `json:"version"`
	}
	out := s.MustCLI(t, s.RootToken, "plugin", "info", "-format=json", "-version="+releaseVersion, "secret", name)
	require.NoError(t, json.Unmarshal([]byte(out), &info), "vault plugin info: %s", out)
	require.Equal(t, name, info.Name)
	require.Equal(t, sha, info.SHA256)
	require.Equal(t, releaseVersion, info.Version)

	sec, err := s.Client.Logical().ReadWithData("sys/plugins/catalog/secret/"+name,
		map[string][]string{"version": {releaseVersion}})
	require.NoError(t, err)
	require.NotNil(t, sec)
	require.Equal(t, releaseVersion, sec.Data["version"])

	// The mount runs the stamped binary and shows its version as the running one.
	s.MustCLI(t, s.RootToken, "secrets", "enable", "-path=released", name)
	s.WaitPluginReady(t, "released")
	var mounts map[string]struct {
		Type                 string `json:"type"`
		PluginVersion        string `json:"plugin_version"`
		RunningPluginVersion string `json:"running_plugin_version"`
		RunningSHA256        string `json:"running_sha256"`
	}
	out = s.MustCLI(t, s.RootToken, "secrets", "list", "-detailed", "-format=json")
	require.NoError(t, json.Unmarshal([]byte(out), &mounts), "vault secrets list: %s", out)
	m, ok := mounts["released/"]
	require.True(t, ok, "no released/ mount in %s", out)
	require.Equal(t, name, m.Type)
	require.Equal(t, releaseVersion, m.PluginVersion)
	require.Equal(t, releaseVersion, m.RunningPluginVersion)
	require.Equal(t, sha, m.RunningSHA256)
}

// runRelease runs scripts/release.sh for this machine's platform into a temp dir and
// returns the directory.
func runRelease(t *testing.T, version string) string {
	t.Helper()
	// Two builds and two SBOMs; the first SBOM also builds the pinned cyclonedx-gomod.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	dist := filepath.Join(t.TempDir(), "dist")
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "release.sh"), version)
	cmd.Env = append(os.Environ(), "DIST="+dist, "PLATFORMS="+runtime.GOOS+"/"+runtime.GOARCH)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "scripts/release.sh %s: %s", version, out)
	t.Logf("scripts/release.sh %s: %s", version, time.Since(start).Round(time.Second))
	return dist
}

// readSHA256SUMS parses sha256sum's text format: digest, two spaces, file name.
func readSHA256SUMS(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		digest, name, ok := strings.Cut(sc.Text(), "  ")
		require.True(t, ok, "SHA256SUMS line %q", sc.Text())
		require.Len(t, digest, 64, "SHA256SUMS line %q", sc.Text())
		sums[name] = digest
	}
	require.NoError(t, sc.Err())
	return sums
}

// checkSBOM checks that path is a CycloneDX JSON SBOM of this module's command that lists
// the modules linked in, wantModule among them when it is set.
func checkSBOM(t *testing.T, path, wantModule string) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var bom struct {
		BOMFormat string `json:"bomFormat"`
		Metadata  struct {
			Component struct {
				Name string `json:"name"`
			} `json:"component"`
		} `json:"metadata"`
		Components []struct {
			Name string `json:"name"`
		} `json:"components"`
	}
	require.NoError(t, json.Unmarshal(b, &bom), path)
	require.Equal(t, "CycloneDX", bom.BOMFormat, path)
	require.Equal(t, "github.com/vault-apikey/vault-plugin-secrets-apikey", bom.Metadata.Component.Name, path)
	require.NotEmpty(t, bom.Components, path)
	if wantModule != "" {
		var names []string
		for _, c := range bom.Components {
			names = append(names, c.Name)
		}
		require.Contains(t, names, wantModule, path)
	}
}
