package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	th "github.com/corsauthz/corsauthz/internal/testharness"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// testCA signs certificates for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var lastSerial atomic.Int64

func nextSerial() *big.Int { return big.NewInt(lastSerial.Add(1)) }

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

func newCA(tb testing.TB, name string) *testCA {
	tb.Helper()
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and key for a server on 127.0.0.1 or a
// client, and the certificate's serial number.
func (ca *testCA) issue(tb testing.TB, name string, client bool, notAfter time.Time) (certPEM, keyPEM []byte, serial *big.Int) {
	tb.Helper()
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		tmpl.IPAddresses = nil
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		tmpl.SerialNumber
}

// replaceFile writes data beside path and renames it over path, as
// certificate tools and the kubelet do.
func replaceFile(tb testing.TB, path string, data []byte) {
	tb.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}

// tlsFiles are a server's certificate files in a temporary directory.
type tlsFiles struct {
	ca                          *testCA
	cert, key, clientCA         string
	clientCert, clientKey       []byte
	otherClient, otherClientKey []byte // signed by a CA the server does not trust
}

func newTLSFiles(tb testing.TB) *tlsFiles {
	tb.Helper()
	dir := tb.TempDir()
	ca, clientCA, otherCA := newCA(tb, "server CA"), newCA(tb, "client CA"), newCA(tb, "other CA")
	f := &tlsFiles{
		ca:       ca,
		cert:     filepath.Join(dir, "tls.crt"),
		key:      filepath.Join(dir, "tls.key"),
		clientCA: filepath.Join(dir, "client-ca.crt"),
	}
	certPEM, keyPEM, _ := ca.issue(tb, "corsauthz", false, time.Now().Add(24*time.Hour))
	replaceFile(tb, f.cert, certPEM)
	replaceFile(tb, f.key, keyPEM)
	replaceFile(tb, f.clientCA, clientCA.pem)
	f.clientCert, f.clientKey, _ = clientCA.issue(tb, "envoy", true, time.Now().Add(24*time.Hour))
	f.otherClient, f.otherClientKey, _ = otherCA.issue(tb, "intruder", true, time.Now().Add(24*time.Hour))
	return f
}

// dialTLS connects to addr trusting ca, with a client certificate when
// certPEM is set, and returns the health client's answer and the serial of
// the certificate the server presented.
func dialTLS(tb testing.TB, addr string, ca *testCA, certPEM, keyPEM []byte) (*big.Int, error) {
	tb.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if certPEM != nil {
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			tb.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return healthCheck(tb, addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
}

func healthCheck(tb testing.TB, addr string, creds grpc.DialOption) (*big.Int, error) {
	tb.Helper()
	conn, err := grpc.NewClient(addr, creds)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	var p peer.Peer
	_, err = healthpb.NewHealthClient(conn).Check(th.CtxTimeout(tb), &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
	if err != nil {
		return nil, err
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil, nil
	}
	return info.State.PeerCertificates[0].SerialNumber, nil
}

func TestTLS(t *testing.T) {
	t.Parallel()
	files := newTLSFiles(t)
	for _, tc := range []struct {
		desc     string
		clientCA bool
		dial     func(addr string) error
		wantCode codes.Code
	}{
		{
			desc:     "TLS: a TLS client is served",
			dial:     func(addr string) error { _, err := dialTLS(t, addr, files.ca, nil, nil); return err },
			wantCode: codes.OK,
		},
		{
			desc: "TLS: a plaintext client is refused",
			dial: func(addr string) error {
				_, err := healthCheck(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
				return err
			},
			wantCode: codes.Unavailable,
		},
		{
			desc:     "mutual TLS: a client with a certificate from the client CA is served",
			clientCA: true,
			dial: func(addr string) error {
				_, err := dialTLS(t, addr, files.ca, files.clientCert, files.clientKey)
				return err
			},
			wantCode: codes.OK,
		},
		{
			desc:     "mutual TLS: a client without a certificate is refused",
			clientCA: true,
			dial:     func(addr string) error { _, err := dialTLS(t, addr, files.ca, nil, nil); return err },
			wantCode: codes.Unavailable,
		},
		{
			desc:     "mutual TLS: a client with a certificate from another CA is refused",
			clientCA: true,
			dial: func(addr string) error {
				_, err := dialTLS(t, addr, files.ca, files.otherClient, files.otherClientKey)
				return err
			},
			wantCode: codes.Unavailable,
		},
		{
			desc:     "mutual TLS: a plaintext client is refused",
			clientCA: true,
			dial: func(addr string) error {
				_, err := healthCheck(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
				return err
			},
			wantCode: codes.Unavailable,
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			opts := &server.TLSOptions{CertFile: files.cert, KeyFile: files.key}
			if tc.clientCA {
				opts.ClientCAFile = files.clientCA
			}
			ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{TLS: opts})
			err := tc.dial(ts.Srv.GRPCAddr().String())
			if got := status.Code(err); got != tc.wantCode {
				t.Errorf("health Check: %v, want code %v", err, tc.wantCode)
			}
		})
	}
}

func TestTLSCertificateRotation(t *testing.T) {
	t.Parallel()
	files := newTLSFiles(t)
	var logs th.LogBuffer
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{
		Logger: logs.Logger(slog.LevelInfo),
		TLS: &server.TLSOptions{
			CertFile: files.cert, KeyFile: files.key, ClientCAFile: files.clientCA,
			ReloadInterval: 10 * time.Millisecond,
		},
	})
	addr := ts.Srv.GRPCAddr().String()
	first, err := dialTLS(t, addr, files.ca, files.clientCert, files.clientKey)
	if err != nil {
		t.Fatalf("before rotation: %v", err)
	}

	// A new pair, written as cert-manager or the kubelet would: each file
	// replaced whole. New connections get it.
	notAfter := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	certPEM, keyPEM, second := files.ca.issue(t, "corsauthz rotated", false, notAfter)
	replaceFile(t, files.key, keyPEM)
	replaceFile(t, files.cert, certPEM)
	th.WaitFor(t, "the rotated certificate to be served", func() bool {
		got, err := dialTLS(t, addr, files.ca, files.clientCert, files.clientKey)
		return err == nil && got.Cmp(second) == 0
	})
	_, body := ts.Get(t, "/metrics")
	if got := th.Metric(body, `corsauthz_tls_certificate_not_after_timestamp_seconds`); got != float64(notAfter.Unix()) {
		t.Errorf("certificate expiry metric = %v, want %v", got, notAfter.Unix())
	}

	// A key that does not match the certificate: the last good pair stays.
	_, otherKey, _ := files.ca.issue(t, "unrelated", false, notAfter)
	replaceFile(t, files.key, otherKey)
	th.WaitFor(t, "the failed reload to be counted", func() bool {
		_, _ = dialTLS(t, addr, files.ca, files.clientCert, files.clientKey)
		_, body := ts.Get(t, "/metrics")
		return th.Metric(body, `corsauthz_tls_certificate_reloads_total{result="failure"}`) == 1
	})
	got, err := dialTLS(t, addr, files.ca, files.clientCert, files.clientKey)
	if err != nil || got.Cmp(second) != 0 {
		t.Errorf("after a bad key: serial %v, %v; want the last good certificate %v", got, err, second)
	}
	_, body = ts.Get(t, "/metrics")
	if got := th.Metric(body, `corsauthz_tls_certificate_reloads_total{result="success"}`); got != 1 {
		t.Errorf("successful reloads = %v, want 1", got)
	}
	failed := logs.WithMsg(t, "TLS certificate reload failed: keeping the certificate in use")
	if len(failed) != 1 || !strings.Contains(failed[0]["error"].(string), "private key does not match public key") {
		t.Errorf("failure log: %v", failed)
	}
	if first.Cmp(second) == 0 {
		t.Errorf("the rotated certificate has the first one's serial")
	}
}

func TestTLSInvalidFiles(t *testing.T) {
	t.Parallel()
	files := newTLSFiles(t)
	missing := filepath.Join(t.TempDir(), "missing.crt")
	for _, tc := range []struct {
		desc string
		opts server.TLSOptions
		want string // prefix of New's error
	}{
		{"no key", server.TLSOptions{CertFile: files.cert}, "TLS needs both a certificate file and a key file"},
		{"missing certificate", server.TLSOptions{CertFile: missing, KeyFile: files.key}, "TLS certificate " + missing + " and key " + files.key + ": open " + missing},
		{"key for another certificate", server.TLSOptions{CertFile: files.cert, KeyFile: files.clientCA}, "TLS certificate " + files.cert + " and key " + files.clientCA + ": "},
		{"client CA without certificates", server.TLSOptions{CertFile: files.cert, KeyFile: files.key, ClientCAFile: files.key}, "TLS client CA " + files.key + ": no PEM certificate in it"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			srv, err := server.New(policy.NewHolder(nil), server.Options{
				GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Registry: prometheus.NewRegistry(), TLS: &tc.opts,
			})
			if err == nil {
				t.Fatalf("New succeeded (gRPC on %v)", srv.GRPCAddr())
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("New: %v\nwant a message starting %q", err, tc.want)
			}
		})
	}
}
