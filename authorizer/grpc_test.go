package authorizer_test

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/policy"
)

func option(name, value string, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: name, Value: value}, AppendAction: action}
}

// TestGRPCMerge: a gRPC authorizer's ok_response is passed on in full
// (less the response headers corsauthz sets itself), its denials with
// their status, headers and body plus the CORS headers.
func TestGRPCMerge(t *testing.T) {
	t.Parallel()
	meta, _ := structpb.NewStruct(map[string]any{"user": "alice"})
	okResponse := &authv3.OkHttpResponse{
		Headers:                 []*corev3.HeaderValueOption{option("x-user", "alice", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD), option("x-tag", "a", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)},
		HeadersToRemove:         []string{"x-client-user"},
		QueryParametersToSet:    []*corev3.QueryParameter{{Key: "user", Value: "alice"}},
		QueryParametersToRemove: []string{"token"},
		ResponseHeadersToAdd: []*corev3.HeaderValueOption{
			option("access-control-allow-origin", "*", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
			option("vary", "Cookie", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD),
			option("x-served-by", "opa", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
		},
	}
	okMerged := proto.Clone(okResponse).(*authv3.OkHttpResponse)
	okMerged.ResponseHeadersToAdd = okMerged.ResponseHeadersToAdd[1:] // only corsauthz speaks CORS
	corsAllowed := map[string][]string{
		"Access-Control-Allow-Origin":      {"https://app.example.com"},
		"Access-Control-Allow-Credentials": {"true"},
		"Access-Control-Expose-Headers":    {"X-Request-Id"},
		"Vary":                             {"Origin"},
	}
	tests := []struct {
		desc    string
		resp    *authv3.CheckResponse
		err     error
		want    authorizer.Outcome
		headers map[string][]string
	}{
		{
			desc: "OK: the whole ok_response and the dynamic metadata",
			resp: &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: okResponse}, DynamicMetadata: meta},
			want: authorizer.Outcome{Result: authorizer.Allow, Pass: true, OK: okMerged, DynamicMetadata: meta,
				RequestHeaders:       []policy.Header{{Name: "x-user", Value: "alice"}, {Name: "x-tag", Value: "a", Append: true}},
				RemoveRequestHeaders: []string{"x-client-user"},
				ResponseHeaders:      []policy.Header{{Name: "vary", Value: "Cookie", Append: true}, {Name: "x-served-by", Value: "opa"}},
			}, headers: corsAllowed,
		},
		{
			desc: "OK without ok_response, without status (Envoy reads it as OK)",
			resp: &authv3.CheckResponse{},
			want: authorizer.Outcome{Result: authorizer.Allow, Pass: true}, headers: corsAllowed,
		},
		{
			desc: "denied 401 with headers and a body",
			resp: &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.Unauthenticated)}, HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
				Headers: []*corev3.HeaderValueOption{
					option("www-authenticate", "Bearer", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
					option("access-control-allow-credentials", "false", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
					option("vary", "Authorization", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD),
				},
				Body: `{"error":"no token"}`,
			}}},
			want: authorizer.Outcome{Result: authorizer.Deny, Status: 401, Body: []byte(`{"error":"no token"}`)},
			headers: map[string][]string{
				"Access-Control-Allow-Origin":      {"https://app.example.com"},
				"Access-Control-Allow-Credentials": {"true"},
				"Access-Control-Expose-Headers":    {"X-Request-Id"},
				"Vary":                             {"Authorization, Origin"},
				"Www-Authenticate":                 {"Bearer"},
			},
		},
		{
			desc: "denied without denied_response: 403, as Envoy",
			resp: &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)}},
			want: authorizer.Outcome{Result: authorizer.Deny, Status: 403}, headers: corsAllowed,
		},
		{
			desc: "a gRPC error is a failure: 503",
			err:  status.Error(codes.Internal, "boom"),
			want: authorizer.Outcome{Result: authorizer.Error, Status: 503, Body: []byte("corsauthz: the authorization service could not be asked\n")},
			headers: map[string][]string{
				"Access-Control-Allow-Origin":      {"https://app.example.com"},
				"Access-Control-Allow-Credentials": {"true"},
				"Access-Control-Expose-Headers":    {"X-Request-Id"},
				"Vary":                             {"Origin"},
				"Content-Type":                     {"text/plain; charset=utf-8"},
			},
		},
	}
	d := decide(t, "creds.example.com", "https://app.example.com")
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			addr, _ := startGRPC(t, func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) { return tc.resp, tc.err })
			c := newClient(t, grpcAuthorizer(addr, 2*time.Second))
			a := c.Ask(context.Background(), &authorizer.Request{Check: checkRequest("GET", "creds.example.com", "/v1/x", nil)})
			got := authorizer.Merge(&d, a, false)
			gotHeaders := headerMap(got.Headers)
			got.Headers = nil
			if !proto.Equal(got.OK, tc.want.OK) || !proto.Equal(got.DynamicMetadata, tc.want.DynamicMetadata) {
				t.Errorf("OK = %v, DynamicMetadata = %v\nwant %v, %v", got.OK, got.DynamicMetadata, tc.want.OK, tc.want.DynamicMetadata)
			}
			got.OK, got.DynamicMetadata, tc.want.OK, tc.want.DynamicMetadata = nil, nil, nil, nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Merge = %+v\nwant %+v (answer err: %v)", got, tc.want, a.Err)
			}
			if !reflect.DeepEqual(gotHeaders, tc.headers) {
				t.Errorf("headers = %v\nwant %v", gotHeaders, tc.headers)
			}
		})
	}
}

// TestGRPCPassesRequestAsReceived: the typed CheckRequest arrives whole,
// and wire bytes arrive unchanged, a field unknown to corsauthz included.
func TestGRPCPassesRequestAsReceived(t *testing.T) {
	t.Parallel()
	addr, g := startGRPC(t, func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{}, nil
	})
	c := newClient(t, grpcAuthorizer(addr, 2*time.Second))
	req := checkRequest("POST", "creds.example.com", "/v1/x?y=1", map[string]string{"authorization": "Bearer t"})
	if a := c.Ask(context.Background(), &authorizer.Request{Check: req}); a.Result != authorizer.Allow {
		t.Fatalf("typed: %v %v", a.Result, a.Err)
	}
	raw, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	raw = protowire.AppendTag(raw, 999, protowire.BytesType) // a field from a newer Envoy
	raw = protowire.AppendString(raw, "future")
	if a := c.Ask(context.Background(), &authorizer.Request{Raw: raw}); a.Result != authorizer.Allow {
		t.Fatalf("raw: %v %v", a.Result, a.Err)
	}
	got := g.requests()
	if len(got) != 2 {
		t.Fatalf("%d requests, want 2", len(got))
	}
	if diff := cmpDiff(req, got[0]); diff != "" {
		t.Errorf("typed request changed on the way: %s", diff)
	}
	back, err := proto.MarshalOptions{Deterministic: true}.Marshal(got[1])
	if err != nil {
		t.Fatal(err)
	}
	var again authv3.CheckRequest
	if err := proto.Unmarshal(raw, &again); err != nil {
		t.Fatal(err)
	}
	want, _ := proto.MarshalOptions{Deterministic: true}.Marshal(&again)
	if string(back) != string(want) || len(got[1].ProtoReflect().GetUnknown()) == 0 {
		t.Errorf("raw request changed on the way (unknown fields: %q)", got[1].ProtoReflect().GetUnknown())
	}
}

func cmpDiff(a, b proto.Message) string {
	if proto.Equal(a, b) {
		return ""
	}
	return "got " + prototext(b) + ", want " + prototext(a)
}

// TestGRPCFailures: every way a gRPC authorizer can fail is an Error.
func TestGRPCFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc string
		addr func(t *testing.T) string
	}{
		{desc: "connection refused", addr: refusedAddr},
		{desc: "hangs past the timeout", addr: func(t *testing.T) string {
			addr, _ := startGRPC(t, func(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			})
			return addr
		}},
		{desc: "answers garbage", addr: func(t *testing.T) string {
			return rawServer(t, func(c net.Conn) {
				c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\nnot gRPC at all"))
				time.Sleep(50 * time.Millisecond)
			})
		}},
		{desc: "resets the connection", addr: func(t *testing.T) string {
			return rawServer(t, func(c net.Conn) { c.Read(make([]byte, 64)); resetConn(c) })
		}},
		{desc: "accepts and never answers", addr: func(t *testing.T) string {
			return rawServer(t, func(c net.Conn) { c.Read(make([]byte, 1<<16)); time.Sleep(time.Second) })
		}},
		{desc: "answers Unavailable", addr: func(t *testing.T) string {
			addr, _ := startGRPC(t, func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return nil, status.Error(codes.Unavailable, "down")
			})
			return addr
		}},
		{desc: "a denial body past the limit", addr: func(t *testing.T) string {
			addr, _ := startGRPC(t, func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: 7}, HttpResponse: &authv3.CheckResponse_DeniedResponse{
					DeniedResponse: &authv3.DeniedHttpResponse{Body: string(make([]byte, authorizer.MaxBodyBytes+1))}}}, nil
			})
			return addr
		}},
	}
	d := decide(t, "creds.example.com", "https://app.example.com")
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			c := newClient(t, grpcAuthorizer(tc.addr(t), 200*time.Millisecond))
			start := time.Now()
			a := c.Ask(context.Background(), &authorizer.Request{Check: checkRequest("GET", "creds.example.com", "/v1/x", nil)})
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Errorf("Ask took %s: the timeout did not fire", elapsed)
			}
			if a.Result != authorizer.Error || a.Err == nil {
				t.Fatalf("Ask = %v, %v; want an Error", a.Result, a.Err)
			}
			t.Logf("error: %v", a.Err)
			if out := authorizer.Merge(&d, a, false); out.Pass || out.Status != 503 {
				t.Errorf("Merge = %+v, want a 503", out)
			}
		})
	}
}

func prototext(m proto.Message) string { return fmt.Sprint(m) }
