package authorizer_test

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/internal/testpki"
	"github.com/corsauthz/corsauthz/policy"
)

// startTLSGRPC serves an ext_authz server that allows, over TLS with
// pki's server certificate (requiring a client certificate when asked),
// and reports the client certificate's name of each call.
func startTLSGRPC(t *testing.T, pki *testpki.PKI, requireClient bool) (string, chan string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	clients := make(chan string, 16)
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(pki.ServerTLS(requireClient))))
	authv3.RegisterAuthorizationServer(s, &grpcAuthz{check: func(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		name := ""
		if p, ok := peer.FromContext(ctx); ok {
			if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
				name = ti.State.PeerCertificates[0].Subject.CommonName
			}
		}
		select {
		case clients <- name:
		default:
		}
		return &authv3.CheckResponse{}, nil
	}})
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String(), clients
}

// TestGRPCTLS asks real TLS gRPC authorizers with certificates made for
// the test: the CA from ca_file, the server's name checked, a client
// certificate presented when configured; every mismatch is a failure,
// never a plain-text call.
func TestGRPCTLS(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "authz", "opa.test")
	other := testpki.New(t, "other", "opa.test")
	plainAddr, _ := startGRPC(t, func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{}, nil
	})
	tlsAddr, _ := startTLSGRPC(t, pki, false)
	mtlsAddr, clientNames := startTLSGRPC(t, pki, true)
	_, port, _ := net.SplitHostPort(tlsAddr)
	tests := []struct {
		desc       string
		addr       string
		tls        *policy.TLSClient
		wantErr    string // "": allowed
		wantClient string
	}{
		{desc: "ca_file, the address's IP in the certificate", addr: tlsAddr, tls: &policy.TLSClient{CAFile: pki.CAFile}},
		{desc: "ca_file and server_name", addr: "localhost:" + port, tls: &policy.TLSClient{CAFile: pki.CAFile, ServerName: "opa.test"}},
		{desc: "server_name not in the certificate", addr: tlsAddr, tls: &policy.TLSClient{CAFile: pki.CAFile, ServerName: "wrong.test"}, wantErr: "certificate"},
		{desc: "another CA", addr: tlsAddr, tls: &policy.TLSClient{CAFile: other.CAFile}, wantErr: "certificate"},
		{desc: "tls: {}: system roots, which do not hold the test CA", addr: tlsAddr, tls: &policy.TLSClient{}, wantErr: "certificate"},
		{desc: "client certificate presented", addr: mtlsAddr, tls: &policy.TLSClient{CAFile: pki.CAFile, CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile}, wantClient: "authz-client"},
		// With TLS 1.3 the server refuses the client's certificate after
		// the client's side of the handshake is done: the call sees a
		// connection closed, or the server's alert.
		{desc: "client certificate required, none configured", addr: mtlsAddr, tls: &policy.TLSClient{CAFile: pki.CAFile}, wantErr: "Unavailable"},
		{desc: "client certificate from another CA", addr: mtlsAddr, tls: &policy.TLSClient{CAFile: pki.CAFile, CertFile: other.ClientCertFile, KeyFile: other.ClientKeyFile}, wantErr: "Unavailable"},
		{desc: "TLS to a plain-text server", addr: plainAddr, tls: &policy.TLSClient{CAFile: pki.CAFile}, wantErr: "Unavailable"},
		{desc: "plain text to a TLS server", addr: tlsAddr, tls: nil, wantErr: "Unavailable"},
		{desc: "ca_file missing where the call is made", addr: tlsAddr, tls: &policy.TLSClient{CAFile: pki.CAFile + ".missing"}, wantErr: "ca_file"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			cfg := grpcAuthorizer(tc.addr, 5*time.Second) // loading the system roots takes a while on a loaded machine
			cfg.GRPC.TLS = tc.tls
			c := newClient(t, cfg)
			a := c.Ask(context.Background(), &authorizer.Request{Check: checkRequest("GET", "creds.example.com", "/v1/x", nil)})
			if tc.wantErr != "" {
				if a.Result != authorizer.Error || !strings.Contains(a.Err.Error(), tc.wantErr) {
					t.Fatalf("result %v, error %v; want an Error saying %q", a.Result, a.Err, tc.wantErr)
				}
				t.Logf("error: %v", a.Err)
				return
			}
			if a.Result != authorizer.Allow {
				t.Fatalf("result %v (%v)", a.Result, a.Err)
			}
			if tc.wantClient != "" {
				if got := <-clientNames; got != tc.wantClient {
					t.Errorf("client certificate %q, want %q", got, tc.wantClient)
				}
			}
		})
	}
}

// TestGRPCTLSFilesReadAtHandshake: the files are read when a connection
// is made, so a CA bundle that appears after the client was built is
// used by its next connection.
func TestGRPCTLSFilesReadAtHandshake(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "authz", "opa.test")
	addr, _ := startTLSGRPC(t, pki, false)
	caFile := t.TempDir() + "/ca.pem"
	cfg := grpcAuthorizer(addr, 2*time.Second)
	cfg.GRPC.TLS = &policy.TLSClient{CAFile: caFile}
	c := newClient(t, cfg)
	ask := func() *authorizer.Answer {
		return c.Ask(context.Background(), &authorizer.Request{Check: checkRequest("GET", "creds.example.com", "/v1/x", nil)})
	}
	if a := ask(); a.Result != authorizer.Error {
		t.Fatalf("without the CA file: %v", a.Result)
	}
	ca, err := os.ReadFile(pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	// gRPC waits before reconnecting (backoff from 1 s); a call meanwhile
	// fails fast.
	deadline := time.Now().Add(10 * time.Second)
	var a *authorizer.Answer
	for a = ask(); a.Result != authorizer.Allow && time.Now().Before(deadline); a = ask() {
		time.Sleep(200 * time.Millisecond)
	}
	if a.Result != authorizer.Allow {
		t.Errorf("with the CA file written: %v (%v)", a.Result, a.Err)
	}
}
