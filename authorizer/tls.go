package authorizer

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"google.golang.org/grpc/credentials"

	"github.com/corsauthz/corsauthz/policy"
)

// fileTLS is gRPC transport security read from files at each handshake:
// the CA bundle (the system's roots when none is named), the client
// certificate and key when named. A gRPC authorizer keeps one connection
// and handshakes again only to reconnect, so reading three small files
// then costs nothing, and a rotated certificate (cert-manager, a
// Kubernetes Secret) is used from the next connection on, without a
// reload. A file that cannot be read fails the handshake, and so the
// calls (503), with an error naming the file.
type fileTLS struct {
	cfg policy.TLSClient
}

func (f *fileTLS) config() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.cfg.ServerName}
	if f.cfg.CAFile != "" {
		roots, err := policy.LoadTLSRoots(f.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls ca_file: %w", err)
		}
		c.RootCAs = roots
	}
	if f.cfg.CertFile != "" {
		pair, err := policy.LoadTLSKeyPair(f.cfg.CertFile, f.cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

// ClientHandshake implements credentials.TransportCredentials.
func (f *fileTLS) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c, err := f.config()
	if err != nil {
		return nil, nil, err
	}
	return credentials.NewTLS(c).ClientHandshake(ctx, authority, conn)
}

// ServerHandshake implements credentials.TransportCredentials; a client
// never serves.
func (f *fileTLS) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, fmt.Errorf("authorizer TLS credentials are for clients only")
}

// Info implements credentials.TransportCredentials.
func (f *fileTLS) Info() credentials.ProtocolInfo {
	return credentials.NewTLS(&tls.Config{ServerName: f.cfg.ServerName}).Info()
}

// Clone implements credentials.TransportCredentials.
func (f *fileTLS) Clone() credentials.TransportCredentials { c := *f; return &c }

// OverrideServerName implements credentials.TransportCredentials (a
// deprecated method gRPC no longer calls).
func (f *fileTLS) OverrideServerName(name string) error {
	f.cfg.ServerName = name
	return nil
}
