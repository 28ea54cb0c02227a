// Command clients measures what the second hop of a chained Check costs
// the caller with each way of making a unary gRPC call that a well-kept
// library offers: corsauthz's authorizer client (grpc-go, configured as
// corsauthz configures it), grpc-go's generated client with its defaults
// (the request decoded from its bytes first, as a client without
// corsauthz's raw codec must), and the same call over the standard library's
// HTTP/2 client (net/http with unencrypted HTTP/2 and the gRPC framing:
// a 5-byte message prefix, grpc-status in the trailers; what connect-go's
// gRPC mode does). Both send the same CheckRequest bytes and decode the
// CheckResponse, to the do-nothing server (cmd/loadbench/nothing) run as
// a child process, so that this process's CPU is the client's alone.
//
//	go run ./cmd/loadbench/clients [-n 40000] [-c 50] [-rounds 3]
//
// Run it from the module's root (it builds the do-nothing server). The
// figures are CPU per call of this process (user and system time, all its
// threads), the clients alternated within one run.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/policy"
)

func main() {
	n := flag.Int("n", 40000, "calls per client and round")
	c := flag.Int("c", 50, "concurrent callers")
	rounds := flag.Int("rounds", 3, "rounds, each measuring every client")
	flag.Parse()
	if err := run(*n, *c, *rounds); err != nil {
		log.Fatal(err)
	}
}

// call makes one Check with raw as the request's bytes.
type call func(ctx context.Context, raw []byte) error

func run(n, c, rounds int) error {
	addr, stop, err := startNothing()
	if err != nil {
		return err
	}
	defer stop()
	raw, err := proto.Marshal(checkRequest())
	if err != nil {
		return err
	}
	viaAuthorizer, closeAuthorizer, err := authorizerClient(addr)
	if err != nil {
		return err
	}
	defer closeAuthorizer()
	grpcGo, closeGRPC, err := grpcGoClient(addr)
	if err != nil {
		return err
	}
	defer closeGRPC()
	clients := []struct {
		name string
		call call
	}{
		{"corsauthz authorizer client (grpc-go)", viaAuthorizer},
		{"grpc-go, default options", grpcGo},
		{"net/http HTTP/2 client, gRPC framing", netHTTPClient(addr)},
	}
	total := make([]time.Duration, len(clients))
	for round := -1; round < rounds; round++ { // round -1 warms up
		for i, cl := range clients {
			d, err := measure(cl.call, raw, n, c)
			if err != nil {
				return fmt.Errorf("%s: %w", cl.name, err)
			}
			if round >= 0 {
				total[i] += d
			}
		}
	}
	fmt.Printf("%d concurrent callers, %d calls per client and round, %d rounds; CPU per call of the calling process:\n\n", c, n, rounds)
	fmt.Println("| client | CPU per call | ratio |")
	fmt.Println("| --- | ---: | ---: |")
	for i, cl := range clients {
		per := total[i] / time.Duration(rounds*n)
		fmt.Printf("| %s | %.1f µs | %.2f |\n", cl.name, float64(per)/1e3, float64(total[i])/float64(total[0]))
	}
	return nil
}

// measure makes n calls from c goroutines and returns the process CPU
// they took.
func measure(f call, raw []byte, n, c int) (time.Duration, error) {
	var wg sync.WaitGroup
	errs := make(chan error, c)
	start := processCPU()
	for i := range c {
		calls := n / c
		if i < n%c {
			calls++
		}
		wg.Go(func() {
			for range calls {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := f(ctx, raw)
				cancel()
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return processCPU() - start, <-errs
}

// authorizerClient calls through corsauthz's authorizer pool, as a
// chained Check does.
func authorizerClient(addr string) (call, func(), error) {
	p := authorizer.NewPool(nil, nil)
	cfg := policy.Authorizer{Name: "nothing", OnError: policy.OnErrorDeny, GRPC: &policy.GRPCAuthorizer{Address: addr, Timeout: time.Second}}
	if err := p.Sync([]policy.Authorizer{cfg}); err != nil {
		return nil, nil, err
	}
	return func(ctx context.Context, raw []byte) error {
		a := p.Ask(ctx, "nothing", &authorizer.Request{Raw: raw})
		if a.Result != authorizer.Allow {
			return fmt.Errorf("answer %v: %v", a.Result, a.Err)
		}
		return nil
	}, p.Close, nil
}

// grpcGoClient calls with grpc-go's ClientConn and its default options:
// what corsauthz's client adds to grpc-go, or saves.
func grpcGoClient(addr string) (call, func(), error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, err
	}
	client := authv3.NewAuthorizationClient(conn)
	return func(ctx context.Context, raw []byte) error {
		req := &authv3.CheckRequest{}
		if err := proto.Unmarshal(raw, req); err != nil { // the bytes a front end has, as a message
			return err
		}
		_, err := client.Check(ctx, req)
		return err
	}, func() { conn.Close() }, nil
}

// netHTTPClient calls over net/http's HTTP/2 client, one connection
// (the server allows 100 streams or more per connection; this caller
// keeps 50 in flight).
func netHTTPClient(addr string) call {
	tr := &http.Transport{Protocols: new(http.Protocols), HTTP2: &http.HTTP2Config{
		// The fixed windows of corsauthz's grpc-go client.
		MaxReceiveBufferPerConnection: 1 << 20, MaxReceiveBufferPerStream: 1 << 20,
	}}
	tr.Protocols.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: tr}
	url := "http://" + addr + authv3.Authorization_Check_FullMethodName
	return func(ctx context.Context, raw []byte) error {
		body := make([]byte, 5+len(raw))
		binary.BigEndian.PutUint32(body[1:5], uint32(len(raw)))
		copy(body[5:], raw)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header = http.Header{"Content-Type": {"application/grpc"}, "Te": {"trailers"}}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		msg, err := io.ReadAll(io.LimitReader(resp.Body, authorizer.MaxAnswerBytes+5))
		if err != nil {
			return err
		}
		if s := resp.Trailer.Get("Grpc-Status"); s != "0" {
			return fmt.Errorf("grpc-status %q", s)
		}
		if len(msg) < 5 || int(binary.BigEndian.Uint32(msg[1:5])) != len(msg)-5 {
			return errors.New("malformed message")
		}
		return proto.Unmarshal(msg[5:], &authv3.CheckResponse{})
	}
}

// checkRequest is an actual request as Envoy sends one.
func checkRequest() *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.0.0.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51234}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: "api.example.com", Path: "/v1/orders", Scheme: "https", Protocol: "HTTP/2",
			Headers: map[string]string{
				":authority": "api.example.com", ":method": "GET", ":path": "/v1/orders", ":scheme": "https",
				"origin": "https://app.example.com", "user-agent": "Mozilla/5.0 (X11; Linux x86_64)",
				"cookie": "session=0123456789abcdef", "accept": "application/json",
			},
		}},
	}}
}

// startNothing builds and starts the do-nothing server and returns its
// address and the function that stops it.
func startNothing() (string, func(), error) {
	dir, err := os.MkdirTemp("", "clients")
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, "nothing")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/loadbench/nothing").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("go build ./cmd/loadbench/nothing (run this from the module's root): %w\n%s", err, out)
	}
	cmd := exec.Command(bin)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		os.RemoveAll(dir)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if err != nil || !ok {
		stop()
		return "", nil, fmt.Errorf("the do-nothing server did not start: %q %v", line, err)
	}
	return addr, stop, nil
}

func processCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		panic(err)
	}
	return time.Duration(ts.Nano())
}
