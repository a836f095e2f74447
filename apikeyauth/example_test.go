package apikeyauth_test

import (
	"fmt"
	"log"
	"net/http"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/apikeyauth"
)

// Protecting an existing handler: the Vault client comes from VAULT_ADDR, VAULT_TOKEN
// (a token with the verifier policy), VAULT_CACERT and friends.
func Example() {
	orders := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := apikeyauth.IdentityFrom(r.Context())
		fmt.Fprintf(w, "orders for %s (key %s)\n", id.Name, id.KeyID)
	})

	auth, err := apikeyauth.New(apikeyauth.Config{}) // mount "apikey", 5s cache
	if err != nil {
		log.Fatal(err)
	}
	http.Handle("GET /orders", auth.Require("orders:read")(orders))
	// log.Fatal(http.ListenAndServe(":8080", nil))
}

// Usage tags: every verify call carries region=eu, and route=<the ServeMux pattern>
// ("GET_/orders/{id}" for the handler below), so the engine counts each key's uses per
// route. The export handler adds a tag of its own.
func ExampleConfig_routeTag() {
	orders := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})

	auth, err := apikeyauth.New(apikeyauth.Config{Tags: []string{"region=eu"}, RouteTag: "route"})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /orders/{id}", auth.Require("orders:read")(orders))
	mux.Handle("GET /orders/export", auth.RequireTagged([]string{"feature=export"}, "orders:read")(orders))
	// log.Fatal(http.ListenAndServe(":8080", mux))
}
