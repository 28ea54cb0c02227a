// Command caddy is Caddy with its standard modules and corsauthz's
// http.handlers.corsauthz, as `xcaddy build --with
// github.com/corsauthz/corsauthz/integrations/caddy` generates it, so that
// this repository builds a Caddy with the module from its own source:
//
//	cd integrations/caddy && go build -o caddy ./cmd/caddy
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// plug in Caddy modules here
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/corsauthz/corsauthz/integrations/caddy"
)

func main() {
	caddycmd.Main()
}
