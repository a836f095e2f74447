// Command vault-plugin-secrets-apikey serves the apikey secrets engine to Vault.
package main

import (
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/plugin"

	apikey "github.com/vault-apikey/vault-plugin-secrets-apikey"
)

func main() {
	apiClientMeta := &api.PluginAPIClientMeta{}
	flags := apiClientMeta.FlagSet()
	if err := flags.Parse(os.Args[1:]); err != nil {
		fatal(err)
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

func fatal(err error) {
	hclog.New(&hclog.LoggerOptions{}).Error("plugin shutting down", "error", err)
	os.Exit(1)
}
