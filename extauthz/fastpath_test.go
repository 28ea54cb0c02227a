package extauthz_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"testing"

	"github.com/corsauthz/corsauthz/extauthz"
	th "github.com/corsauthz/corsauthz/internal/testharness"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// startStandard serves Authz the standard way, the generated service
// registration and the standard codec, and returns a client connection.
func startStandard(tb testing.TB, holder *policy.Holder) *grpc.ClientConn {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, extauthz.New(th.NewCore(tb, holder, nil)))
	var wg sync.WaitGroup
	wg.Go(func() { _ = s.Serve(lis) })
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		conn.Close()
		s.Stop()
		wg.Wait()
	})
	return conn
}

// fastPathInputs are serialized requests for the comparison: the table
// tests' requests and refusals, a browser's preflight, broken messages,
// and generated ones.
func fastPathInputs(tb testing.TB) [][]byte {
	tb.Helper()
	var inputs [][]byte
	for _, tc := range checkErrorCases {
		data, err := proto.Marshal(tc.req)
		if err != nil {
			tb.Fatal(err)
		}
		inputs = append(inputs, data)
	}
	for _, seed := range wireSeeds(tb) {
		inputs = append(inputs, seed, seed[:len(seed)*2/3])
	}
	// A user-agent that is not UTF-8, which proto.Marshal would refuse to
	// write: written valid, then broken.
	withBadUA := browserPreflight()
	withBadUA.Attributes.Request.Http.Headers["user-agent"] = "Mozilla/5.0 <mark>"
	bad, err := proto.Marshal(withBadUA)
	if err != nil {
		tb.Fatal(err)
	}
	bad = bytes.Replace(bad, []byte("<mark>"), []byte("\xff\xfe<ma"), 1)
	inputs = append(inputs, bad, nil, []byte{0x0c}, []byte{0x0a, 0x05})
	for i := range 200 {
		g := &wireGen{r: rand.New(rand.NewPCG(uint64(i), 7))}
		inputs = append(inputs, g.checkRequest())
	}
	return inputs
}

// TestFastPath checks, over gRPC, that the server's fast path answers every
// input exactly as Authz.Check served the standard way: the same bytes, or
// the same gRPC status and message. For the inputs that are CheckRequests,
// the answer also unmarshals to a message proto.Equal to what Authz.Check
// returns in process.
func TestFastPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		desc   string
		engine *policy.Engine
	}{
		{"configured", th.LoadEngine(t, th.Config)},
		{"no configuration", nil},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			holder := policy.NewHolder(tc.engine)
			fast := th.StartServer(t, holder, server.Options{})
			std := startStandard(t, holder)
			inProcess := extauthz.New(th.NewCore(t, holder, nil))
			ctx := th.CtxTimeout(t)
			var answered, refused int
			for _, in := range fastPathInputs(t) {
				got, gotErr := th.RawCheck(ctx, fast.Conn, in)
				want, wantErr := th.RawCheck(ctx, std, in)
				if status.Code(gotErr) != status.Code(wantErr) || status.Convert(gotErr).Message() != status.Convert(wantErr).Message() {
					t.Fatalf("input %q:\nfast path error %v\nstandard error  %v", in, gotErr, wantErr)
				}
				if wantErr != nil {
					refused++
					continue
				}
				answered++
				if !bytes.Equal(got, want) {
					t.Fatalf("input %q:\nfast path answer %x\nstandard answer  %x", in, got, want)
				}
				req := &authv3.CheckRequest{}
				if err := proto.Unmarshal(in, req); err != nil {
					t.Fatalf("input %q answered, but proto.Unmarshal fails: %v", in, err)
				}
				wantMsg, err := inProcess.Check(context.Background(), req)
				if err != nil {
					t.Fatalf("input %q answered over gRPC, refused in process: %v", in, err)
				}
				gotMsg := &authv3.CheckResponse{}
				if err := proto.Unmarshal(got, gotMsg); err != nil {
					t.Fatalf("answer %x does not unmarshal: %v", got, err)
				}
				th.AssertProtoEqual(t, gotMsg, wantMsg)
			}
			if tc.engine != nil && (answered < 50 || refused < 10) {
				t.Errorf("%d inputs answered, %d refused: want a mix", answered, refused)
			}
		})
	}
}

// TestFastPathCheckCases runs the ext_authz table through the raw codec:
// the bytes on the wire are the expected CheckResponse's.
func TestFastPathCheckCases(t *testing.T) {
	t.Parallel()
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{})
	// Twice: the second time, answers that depend only on the policy are
	// the shared ones encoded the first time.
	for _, tc := range append(slices.Clone(checkCases), checkCases...) {
		in, err := proto.Marshal(tc.req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := th.RawCheck(th.CtxTimeout(t), ts.Conn, in)
		if err != nil {
			t.Fatalf("%s: %v", tc.desc, err)
		}
		want, err := proto.Marshal(tc.want)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\ngot  %x\nwant %x", tc.desc, got, want)
		}
	}
}

// TestFastPathInterceptor: with a unary interceptor, Check is served the
// standard way and the interceptor sees the typed messages.
func TestFastPathInterceptor(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []any
	intercept := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		mu.Lock()
		seen = append(seen, req, resp)
		mu.Unlock()
		return resp, err
	}
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{
		GRPCServerOptions: []grpc.ServerOption{grpc.UnaryInterceptor(intercept)},
	})
	tc := checkCases[6] // an allowed preflight
	got, err := ts.Authz().Check(th.CtxTimeout(t), tc.req)
	if err != nil {
		t.Fatal(err)
	}
	th.AssertProtoEqual(t, got, tc.want)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("the interceptor saw %d messages, want 2", len(seen))
	}
	if _, ok := seen[0].(*authv3.CheckRequest); !ok {
		t.Errorf("the interceptor saw a %T request, want *authv3.CheckRequest", seen[0])
	}
	if resp, ok := seen[1].(*authv3.CheckResponse); !ok {
		t.Errorf("the interceptor saw a %T response, want *authv3.CheckResponse", seen[1])
	} else {
		th.AssertProtoEqual(t, resp, tc.want)
	}
}

// TestFastPathReflection: reflection still describes the service, so
// tools such as grpcurl and ghz find the method and its messages.
func TestFastPathReflection(t *testing.T) {
	t.Parallel()
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{})
	stream, err := reflectionpb.NewServerReflectionClient(ts.Conn).ServerReflectionInfo(th.CtxTimeout(t))
	if err != nil {
		t.Fatal(err)
	}
	err = stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: authv3.Authorization_ServiceDesc.ServiceName},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Errorf("reflection has no file for %s: %v", authv3.Authorization_ServiceDesc.ServiceName, resp)
	}
}

// BenchmarkCheckGRPC measures a whole Check over gRPC on loopback, client
// included, with the fast path and served the standard way.
func BenchmarkCheckGRPC(b *testing.B) {
	holder := policy.NewHolder(th.LoadEngine(b, th.Config))
	req, err := proto.Marshal(browserPreflight())
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		conn func() *grpc.ClientConn
	}{
		{"fast_path", func() *grpc.ClientConn { return th.StartServer(b, holder, server.Options{}).Conn }},
		{"standard", func() *grpc.ClientConn { return startStandard(b, holder) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			conn := bc.conn()
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := th.RawCheck(ctx, conn, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
