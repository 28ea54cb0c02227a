// Command nothinghttp is the reference point of `loadbench -http`: the
// cheapest possible HTTP authorization server, and the API behind NGINX.
// It is plain net/http with default settings, answering every request
// 200 with no body and no header of its own, without reading it.
//
//	nothinghttp [-addr 127.0.0.1:0]
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
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})}
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
