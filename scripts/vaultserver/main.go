// Command vault is a Vault server built from the Go module proxy, for development and
// tests only. Vault is BUSL-1.1: this module is separate from the plugin's module so the
// plugin never links Vault itself.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
