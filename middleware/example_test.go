package middleware_test

import (
	"context"
	"fmt"
	"log"
	"net/http"

	"github.com/corsauthz/corsauthz/middleware"
)

// A gateway that puts corsauthz in front of its API: the configuration in
// force in the corsauthz at 127.0.0.1:9001 is received over xDS and every
// request is decided in process.
func ExampleMiddleware_Wrap() {
	api := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "orders") })

	cors, err := middleware.New(context.Background(), middleware.Options{Address: "127.0.0.1:9001"})
	if err != nil {
		log.Fatal(err)
	}
	defer cors.Close()
	log.Fatal(http.ListenAndServe(":8080", cors.Wrap(api)))
}
