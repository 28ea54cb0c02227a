// Command middleware serves a Go HTTP API with CORS decided by corsauthz,
// through the middleware package: the program docs/go-and-caddy.md shows.
// Usage: middleware [CORSAUTHZ_ADDR [LISTEN_ADDR]]
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"

	"github.com/corsauthz/corsauthz/middleware"
)

func main() {
	corsauthzAddr, listen := "127.0.0.1:9001", "127.0.0.1:8080"
	if len(os.Args) > 2 {
		corsauthzAddr, listen = os.Args[1], os.Args[2]
	}
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "api %s %s\n", r.Method, r.URL.Path) // your API
	})
	cors, err := middleware.New(context.Background(), middleware.Options{Address: corsauthzAddr})
	if err != nil {
		log.Fatal(err)
	}
	defer cors.Close()
	log.Fatal(http.ListenAndServe(listen, cors.Wrap(api)))
}
