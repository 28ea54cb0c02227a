package server_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/corsauthz/corsauthz/internal/racedetector"
	th "github.com/corsauthz/corsauthz/internal/testharness"
	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// TestRefusedCheckNotCopied is finding 5 of issue 17: with authorizers
// configured the ext_authz fast path keeps a Check's wire bytes for a gRPC
// authorizer, and it cloned them before refusing the Check for size:
// 128 refused 80,000-header Checks at once peaked at 463 MB (156 MB
// without authorizers). A Check past a limit is now refused before
// anything is copied: with an authorizer configured, each costs a small
// part of its size. Not parallel: the measure is the process's.
func TestRefusedCheckNotCopied(t *testing.T) {
	racedetector.SkipMemoryMeasure(t)
	ta := th.StartTestAuthorizers(t)
	holder := policy.NewHolder(th.LoadEngine(t, fmt.Sprintf(th.AuthorizerConfig, ta.HTTPURL, ta.GRPCAddr)))
	ts := th.StartServer(t, holder, server.Options{})
	ctx := th.CtxTimeout(t)
	// Enough calls that the gRPC buffer pools refilling after a
	// collection (1 MiB, now and then) weigh little in the mean.
	const calls = 32
	for _, m := range hostileMessages() {
		if m.code != codes.InvalidArgument {
			continue // refused for its size, not for being unreadable
		}
		runtime.GC()
		if _, err := th.RawCheck(ctx, ts.Conn, m.data); status.Code(err) != m.code {
			t.Fatalf("%s: %v, want code %v", m.desc, err, m.code)
		}
		before := heapAllocs()
		for range calls {
			if _, err := th.RawCheck(ctx, ts.Conn, m.data); status.Code(err) != m.code {
				t.Fatalf("%s: %v, want code %v", m.desc, err, m.code)
			}
		}
		perCall := (heapAllocs() - before) / calls
		t.Logf("%s (%d bytes), authorizers configured: %d bytes allocated per call (client and server)", m.desc, len(m.data), perCall)
		if limit := uint64(len(m.data) / 4); perCall > limit {
			t.Errorf("%s: %d bytes allocated per refused call, want at most %d (a quarter of the message: it is not copied)", m.desc, perCall, limit)
		}
	}
	if ta.HTTPAsked.Load() != 0 || len(ta.GRPCRequests()) != 0 {
		t.Errorf("an authorizer was asked about a refused Check")
	}
}

// wideDenial is a gRPC authorizer that denies every request with n
// distinct headers (finding 6 of issue 17: 30,000 headers, under the
// 1 MiB message limit).
func wideDenial(t *testing.T, n int) string {
	t.Helper()
	headers := make([]*corev3.HeaderValueOption, n)
	for i := range headers {
		headers[i] = th.Set("x-h"+strconv.Itoa(i), "v")
	}
	resp := &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}, Headers: headers, Body: "no",
		}},
	}
	if size := proto.Size(resp); size >= 1<<20 {
		t.Fatalf("the denial is %d bytes, past the answer limit", size)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	authv3.RegisterAuthorizationServer(g, denyAll{resp})
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

type denyAll struct{ resp *authv3.CheckResponse }

func (d denyAll) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return d.resp, nil
}

// TestWideDenialLinear is finding 6 of issue 17: a gRPC authorizer's
// denial with 30,000 distinct headers cost 2.06 s of CPU on the HTTP
// listener (a quadratic merge) and ended in an EOF. It is an answer past
// the authorizer header limit: every front end answers 503 with the CORS
// headers, at about the cost of reading it.
func TestWideDenialLinear(t *testing.T) {
	addr := wideDenial(t, 30_000)
	cfg := fmt.Sprintf(`
authorizers:
  - name: wide
    grpc: {address: %s, timeout: 5s}
policies:
  - name: web
    authorizer: wide
    match: {hosts: [web.example.com]}
    allowed_origins: [https://app.example.com]
`, addr)
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, cfg)), server.Options{HTTPAddr: "127.0.0.1:0"})
	ctx := th.CtxTimeout(t)
	const calls = 10
	for _, fe := range []struct {
		desc string
		ask  func() (int, string, error)
	}{
		{desc: "ext_authz", ask: func() (int, string, error) {
			resp, err := ts.Authz().Check(ctx, th.CheckRequest("GET", "web.example.com", "/x", th.Hdrs{"origin": th.App}, ""))
			if err != nil {
				return 0, "", err
			}
			d := resp.GetDeniedResponse()
			acao := ""
			for _, h := range d.GetHeaders() {
				if strings.EqualFold(h.GetHeader().GetKey(), "access-control-allow-origin") {
					acao = h.GetHeader().GetValue()
				}
			}
			return int(d.GetStatus().GetCode()), acao, nil
		}},
		{desc: "HTTP listener", ask: func() (int, string, error) {
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+ts.Srv.HTTPAddr().String()+"/check", nil)
			req.Header.Set("X-Original-Method", "GET")
			req.Header.Set("X-Original-Host", "web.example.com")
			req.Header.Set("X-Original-URI", "/x")
			req.Header.Set("Origin", th.App)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return 0, "", err
			}
			resp.Body.Close()
			return resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"), nil
		}},
	} {
		if _, _, err := fe.ask(); err != nil {
			t.Fatalf("%s: %v", fe.desc, err)
		}
		cpu0, t0 := processCPU(), time.Now()
		for range calls {
			code, acao, err := fe.ask()
			if err != nil || code != 503 || acao != th.App {
				t.Fatalf("%s: %d, Access-Control-Allow-Origin %q, %v; want 503 with the CORS headers", fe.desc, code, acao, err)
			}
		}
		cpu := time.Duration(processCPU()-cpu0) / calls
		t.Logf("%s: a 30,000-header denial costs %s of CPU (authorizer, server and client), %s of time", fe.desc, cpu, time.Since(t0)/calls)
		if limit := 300 * time.Millisecond * racedetector.CPUFactor; cpu > limit {
			t.Errorf("%s: %s of CPU per call, want at most %s", fe.desc, cpu, limit)
		}
	}
}
