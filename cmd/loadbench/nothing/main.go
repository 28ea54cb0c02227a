// Command nothing is the reference point of cmd/loadbench: the cheapest
// possible ext_authz server. It is plain grpc-go with default options: the
// generated service registration, the standard proto codec decoding the
// whole CheckRequest, and a Check that answers an empty OK without looking
// at it. Reflection is registered as on corsauthz, so both are called the
// same way.
//
//	nothing [-addr 127.0.0.1:0] [-cpuprofile FILE]
//
// It prints "listening on ADDR" on stdout once it accepts connections and
// stops on SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
)

type nothing struct {
	authv3.UnimplementedAuthorizationServer
}

// Check answers OK: the request was decoded by grpc-go's proto codec, and
// is not read.
func (nothing) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: 0}}, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file until the server stops")
	flag.Parse()

	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, nothing{})
	reflection.Register(s)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		s.Stop()
	}()
	fmt.Printf("listening on %s\n", lis.Addr())
	if err := s.Serve(lis); err != nil {
		log.Print(err)
	}
}
