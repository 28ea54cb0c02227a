package authorizer_test

import (
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/corsauthz/corsauthz/authorizer"
)

// FuzzHTTPAnswer: whatever bytes an HTTP authorizer answers, read as the
// client reads them and merged with a CORS decision, the outcome keeps
// every invariant (checkOutcome): no Access-Control-* header but
// corsauthz's, a direct answer's status in 400–599, no framing, hop-by-hop
// or X-Accel-* header, bounded headers and body, no panic.
func FuzzHTTPAnswer(f *testing.F) {
	for _, tc := range sanitationRows {
		if tc.rawAnswer != "" {
			f.Add([]byte(tc.rawAnswer), false)
		}
	}
	f.Add([]byte("HTTP/1.1 200 OK\r\nX-Auth-Request-User: alice\r\nAccess-Control-Allow-Origin: *\r\nContent-Length: 2\r\n\r\nok"), true)
	f.Add([]byte("HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\nX-Accel-Redirect: /x\r\n\r\n5\r\nlogin\r\n0\r\n\r\n"), false)
	cfg := httpAuthorizer("http://127.0.0.1:1/auth", time.Second)
	f.Fuzz(func(t *testing.T, raw []byte, failOpen bool) {
		d := decideFuzz(t)
		a := authorizer.ReadHTTPAnswer(cfg, raw)
		out := authorizer.Merge(&d, a, failOpen)
		checkOutcome(t, &out)
		if a.Result == authorizer.Deny && out.Pass {
			t.Errorf("a denial passed")
		}
	})
}

// FuzzGRPCAnswer: the same for a gRPC authorizer's CheckResponse, from
// any bytes that decode as one.
func FuzzGRPCAnswer(f *testing.F) {
	for _, tc := range sanitationRows {
		if tc.check != nil && len(tc.check.GetDeniedResponse().GetHeaders()) < 1000 {
			b, err := proto.Marshal(tc.check)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b, false)
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte, failOpen bool) {
		var resp authv3.CheckResponse
		if proto.Unmarshal(raw, &resp) != nil {
			return
		}
		d := decideFuzz(t)
		a := authorizer.AnswerOfCheck(&resp)
		out := authorizer.Merge(&d, a, failOpen)
		checkOutcome(t, &out)
		if a.Result == authorizer.Deny && out.Pass {
			t.Errorf("a denial passed")
		}
	})
}
