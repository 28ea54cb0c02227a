package middleware_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corsauthz/corsauthz/middleware"
	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// ExampleMiddleware_Wrap puts the middleware in front of an API: corsauthz
// (here in the same process, on a loopback port) publishes its policies,
// and the middleware decides each request in process with them.
// examples/middleware is the same as a whole program.
func ExampleMiddleware_Wrap() {
	e, _, err := policy.Load("example.yaml", []byte(`
policies:
  - name: api
    allowed_origins: [https://app.example.com]
default_policy: api
`))
	if err != nil {
		log.Fatal(err)
	}
	corsauthz, err := server.New(policy.NewHolder(e), server.Options{GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", HTTPAddr: "", Registry: prometheus.NewRegistry()})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- corsauthz.Serve(ctx) }()
	defer func() { stop(); <-done }()

	cors, err := middleware.New(context.Background(), middleware.Options{Address: corsauthz.GRPCAddr().String()})
	if err != nil {
		log.Fatal(err)
	}
	defer cors.Close()
	api := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "orders") })
	handler := cors.Wrap(api) // serve it with http.ListenAndServe("127.0.0.1:8080", handler)

	r := httptest.NewRequest(http.MethodGet, "http://api.example.com/orders", nil)
	r.Header.Set("Origin", "https://app.example.com")
	w := httptest.NewRecorder()
	handler.ServeHTTP(w, r)
	fmt.Println(w.Code, w.Header().Get("Access-Control-Allow-Origin"), strings.TrimSpace(w.Body.String()))
	// Output: 200 https://app.example.com orders
}
