// Command nothinghttp is the reference point of `loadbench -http`: the
// cheapest possible HTTP authorization server, and the API behind NGINX.
// By default it is plain net/http with default settings, answering every
// request 200 with no body and no header of its own, without reading it.
//
//	nothinghttp [-addr 127.0.0.1:0] [-same-answer]
//
// With -same-answer it runs with corsauthz's HTTP listener settings
// (httpauthz.NewServer: timeouts, header limit) and writes, without
// deciding anything, the answer corsauthz gives loadbench's requests: 204
// with the preflight's CORS headers when X-Forwarded-Method is OPTIONS,
// else 200 with the actual request's. Against it, corsauthz's extra CPU is
// the cost of reading and deciding alone; against the default, also that
// of its server settings and of its longer answer.
//
// It prints "listening on ADDR" on stdout once it accepts connections and
// stops on SIGTERM or SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os/signal"
	"syscall"

	"github.com/corsauthz/corsauthz/httpauthz"
)

// The answers corsauthz gives loadbench's requests (its api policy, the
// origin https://app.example.com); loadbench checks they are the same.
var (
	preflightAnswer = http.Header{
		"Access-Control-Allow-Origin":      {"https://app.example.com"},
		"Access-Control-Allow-Credentials": {"true"},
		"Access-Control-Allow-Methods":     {"PUT"},
		"Access-Control-Allow-Headers":     {"authorization,content-type"},
		"Access-Control-Max-Age":           {"600"},
		"Vary":                             {"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"},
	}
	actualAnswer = http.Header{
		"Access-Control-Allow-Origin":      {"https://app.example.com"},
		"Access-Control-Allow-Credentials": {"true"},
		"Access-Control-Expose-Headers":    {"X-Request-Id"},
		"Vary":                             {"Origin"},
	}
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	sameAnswer := flag.Bool("same-answer", false, "corsauthz's server settings and answers, without deciding")
	flag.Parse()
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	srv := &http.Server{Handler: h}
	if *sameAnswer {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			answer, status := actualAnswer, http.StatusOK
			if r.Header.Get("X-Forwarded-Method") == http.MethodOptions {
				answer, status = preflightAnswer, http.StatusNoContent
			}
			out := w.Header()
			for name, v := range answer {
				out[name] = v
			}
			w.WriteHeader(status)
		})
		srv = httpauthz.NewServer(h, nil, nil)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	fmt.Printf("listening on %s\n", lis.Addr())
	if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
		log.Print(err)
	}
}
