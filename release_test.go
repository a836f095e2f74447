package apikey

import (
	"context"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"
)

// The default must pass the check init applies, or every unstamped build would panic.
func TestVersionDefaultIsValid(t *testing.T) {
	require.NoError(t, checkVersion(Version))
}

func TestCheckVersion(t *testing.T) {
	for _, v := range []string{"v0.1.0", "v1.2.3", "v10.20.30", "v1.2.3-rc.1", "v9.8.7-test", "v1.0.0-alpha-2"} {
		require.NoError(t, checkVersion(v), v)
	}
	for _, v := range []string{"", "1.2.3", "v1.2", "v1", "V1.2.3", "v1.2.3+build.5", "v1.2.3-", "v1.2.3 ", "v1.2.3\n", "dev", "v1.2.3-rc_1"} {
		err := checkVersion(v)
		require.Error(t, err, "%q", v)
		require.Contains(t, err.Error(), "is not a semantic version")
	}
}

// What Vault reads as RunningVersion is what the backend built by Factory reports; it must
// be Version, the value -ldflags stamps (cmd/vault-plugin-secrets-apikey's tests check the
// stamping itself and integration/release_test.go what a real Vault shows).
func TestFactoryReportsVersion(t *testing.T) {
	b, err := Factory(context.Background(), logical.TestBackendConfig())
	require.NoError(t, err)
	versioner, ok := b.(logical.PluginVersioner)
	require.True(t, ok, "the backend does not implement logical.PluginVersioner")
	require.Equal(t, Version, versioner.PluginVersion().Version)
}
