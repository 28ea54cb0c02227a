package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/corsauthz/corsauthz/decision"
	"github.com/corsauthz/corsauthz/internal/limits"
)

// DefaultTLSReloadInterval is how often, at most, the certificate files
// are checked for a change.
const DefaultTLSReloadInterval = 10 * time.Second

// TLSOptions turn on TLS, or mutual TLS, on the gRPC listener. The admin
// listener stays plain HTTP (on loopback by default).
type TLSOptions struct {
	// CertFile and KeyFile are the PEM server certificate (chain) and its
	// private key. Both are required.
	CertFile, KeyFile string
	// ClientCAFile, when set, is a PEM bundle of the CAs that sign client
	// certificates: every client must then present one that verifies
	// against it (tls.RequireAndVerifyClientCert).
	ClientCAFile string
	// ReloadInterval is how often, at most, the files are checked for a
	// change (default DefaultTLSReloadInterval). The check is made by the
	// next TLS handshake after the interval: it compares each file's
	// identity, size and modification time, and rereads all of them when
	// one changed. A pair that does not load (a key that does not match
	// the certificate, a file half written) is logged and counted, and the
	// certificate in use stays until the files change again.
	ReloadInterval time.Duration
}

// certReloader serves the TLS configuration of the gRPC listener from
// files, rereading them when they change (see TLSOptions.ReloadInterval).
type certReloader struct {
	opts    TLSOptions
	logger  *slog.Logger
	metrics *Metrics
	log     *decision.Core // refused handshakes go to its request log, rate-limited

	current   atomic.Pointer[tls.Config]
	nextCheck atomic.Int64 // UnixNano before which no check is made
	mu        sync.Mutex   // held by the one handshake that checks the files
	stamps    []os.FileInfo
}

func newCertReloader(opts TLSOptions, logger *slog.Logger, metrics *Metrics, core *decision.Core) (*certReloader, error) {
	if opts.CertFile == "" || opts.KeyFile == "" {
		return nil, errors.New("TLS needs both a certificate file and a key file")
	}
	if opts.ReloadInterval <= 0 {
		opts.ReloadInterval = DefaultTLSReloadInterval
	}
	c := &certReloader{opts: opts, logger: logger, metrics: metrics, log: core}
	c.stamps = c.stat()
	cfg, leaf, err := c.load()
	if err != nil {
		return nil, err
	}
	c.current.Store(cfg)
	c.metrics.tlsLoaded(leaf.NotAfter)
	c.nextCheck.Store(time.Now().Add(opts.ReloadInterval).UnixNano())
	return c, nil
}

// credentials are the gRPC transport credentials of the listener. A
// handshake that fails (no or an untrusted client certificate, not TLS at
// all) is logged, rate-limited, and counted.
func (c *certReloader) credentials() credentials.TransportCredentials {
	return handshakeObserver{
		TransportCredentials: credentials.NewTLS(&tls.Config{
			MinVersion:         tls.VersionTLS12,
			GetConfigForClient: c.configForClient,
		}),
		failed: c.handshakeFailed,
	}
}

func (c *certReloader) handshakeFailed(conn net.Conn, err error) {
	c.metrics.tlsHandshakeFailed()
	c.log.Log(context.Background(), slog.LevelWarn, "TLS handshake refused",
		slog.String("remote_addr", conn.RemoteAddr().String()), slog.String("error", limits.Cut(err.Error())))
}

// handshakeObserver tells failed server handshakes to failed.
type handshakeObserver struct {
	credentials.TransportCredentials
	failed func(net.Conn, error)
}

func (h handshakeObserver) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	out, info, err := h.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		h.failed(conn, err)
	}
	return out, info, err
}

func (h handshakeObserver) Clone() credentials.TransportCredentials {
	return handshakeObserver{TransportCredentials: h.TransportCredentials.Clone(), failed: h.failed}
}

func (c *certReloader) configForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	c.maybeReload(time.Now())
	return c.current.Load(), nil
}

// maybeReload rereads the files when the interval has passed and one of
// them changed. Only one handshake checks at a time; the others go on
// with the configuration in use.
func (c *certReloader) maybeReload(now time.Time) {
	if now.UnixNano() < c.nextCheck.Load() || !c.mu.TryLock() {
		return
	}
	defer c.mu.Unlock()
	c.nextCheck.Store(now.Add(c.opts.ReloadInterval).UnixNano())
	stamps := c.stat()
	if sameStamps(stamps, c.stamps) {
		return
	}
	c.stamps = stamps // a bad pair is not retried until the files change again
	cfg, leaf, err := c.load()
	if err != nil {
		c.metrics.tlsReloaded(false, time.Time{})
		c.logger.Error("TLS certificate reload failed: keeping the certificate in use",
			slog.String("cert_file", c.opts.CertFile), slog.String("error", err.Error()))
		return
	}
	c.current.Store(cfg)
	c.metrics.tlsReloaded(true, leaf.NotAfter)
	c.logger.Info("TLS certificate reloaded",
		slog.String("cert_file", c.opts.CertFile),
		slog.String("subject", leaf.Subject.String()),
		slog.Time("not_after", leaf.NotAfter))
}

func (c *certReloader) files() []string {
	files := []string{c.opts.CertFile, c.opts.KeyFile}
	if c.opts.ClientCAFile != "" {
		files = append(files, c.opts.ClientCAFile)
	}
	return files
}

// stat returns each file's FileInfo (nil when it cannot be read), through
// symlinks, as Kubernetes mounts Secrets.
func (c *certReloader) stat() []os.FileInfo {
	files := c.files()
	out := make([]os.FileInfo, len(files))
	for i, f := range files {
		out[i], _ = os.Stat(f)
	}
	return out
}

func sameStamps(a, b []os.FileInfo) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		switch {
		case a[i] == nil || b[i] == nil:
			if a[i] != b[i] {
				return false
			}
		case !os.SameFile(a[i], b[i]) || a[i].Size() != b[i].Size() || !a[i].ModTime().Equal(b[i].ModTime()):
			return false
		}
	}
	return true
}

// load reads the files and returns the TLS configuration they make, and
// the server certificate.
func (c *certReloader) load() (*tls.Config, *x509.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(c.opts.CertFile, c.opts.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("TLS certificate %s and key %s: %w", c.opts.CertFile, c.opts.KeyFile, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, nil, fmt.Errorf("TLS certificate %s: %w", c.opts.CertFile, err)
		}
	}
	// A certificate that is not valid now would have every handshake
	// fail: refused at start, and a rotation to it refused (the one in
	// use stays).
	if now := time.Now(); now.After(leaf.NotAfter) {
		return nil, nil, fmt.Errorf("TLS certificate %s expired at %s: renew it", c.opts.CertFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	} else if now.Before(leaf.NotBefore) {
		return nil, nil, fmt.Errorf("TLS certificate %s is not valid before %s: check the clock, or the certificate", c.opts.CertFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
	}
	if c.opts.ClientCAFile != "" {
		pem, err := os.ReadFile(c.opts.ClientCAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("TLS client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("TLS client CA %s: no PEM certificate in it", c.opts.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, leaf, nil
}
