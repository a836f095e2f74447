// Command vault-plugin-secrets-apikey serves the apikey secrets engine to Vault.
//
// Run by hand with -version it prints the version it reports to Vault as RunningVersion
// (the one `make release` stamped) and exits, so that an operator can tell which version
// a binary is before registering it.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/plugin"

	apikey "github.com/vault-apikey/vault-plugin-secrets-apikey"
)

func main() {
	apiClientMeta := &api.PluginAPIClientMeta{}
	flags := apiClientMeta.FlagSet()
	// Vault never passes -version: it starts plugins with the catalog's arguments only.
	printVersion := flags.Bool("version", false, "print the version reported to Vault and exit")
	if err := flags.Parse(os.Args[1:]); err != nil {
		fatal(err)
	}
	if *printVersion {
		v, err := runningVersion(context.Background())
		if err != nil {
			fatal(err)
		}
		fmt.Println(v)
		return
	}

	// ServeMultiplex: one plugin process serves every mount of this plugin.
	err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: apikey.Factory,
		TLSProviderFunc:    api.VaultPluginTLSProvider(apiClientMeta.GetTLSConfig()),
	})
	if err != nil {
		fatal(err)
	}
}

// runningVersion builds a backend with the same factory Vault calls and asks it for the
// version it reports, rather than printing apikey.Version: what matters to an operator is
// what Vault will see.
func runningVersion(ctx context.Context) (string, error) {
	b, err := apikey.Factory(ctx, &logical.BackendConfig{
		Logger:      hclog.NewNullLogger(),
		System:      logical.StaticSystemView{},
		StorageView: &logical.InmemStorage{},
	})
	if err != nil {
		return "", err
	}
	versioner, ok := b.(logical.PluginVersioner)
	if !ok {
		return "", fmt.Errorf("the backend reports no version to Vault")
	}
	return versioner.PluginVersion().Version, nil
}

func fatal(err error) {
	hclog.New(&hclog.LoggerOptions{}).Error("plugin shutting down", "error", err)
	os.Exit(1)
}
