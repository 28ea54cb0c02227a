package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"strings"

	"github.com/corsauthz/corsauthz/decision"
	"github.com/corsauthz/corsauthz/httpauthz"
	"github.com/corsauthz/corsauthz/internal/limits"
)

// DefaultHTTPAddr is the address of the HTTP authorization listener that
// `corsauthz serve` uses unless told otherwise. The zero Options have no
// HTTP listener.
const DefaultHTTPAddr = "127.0.0.1:9003"

// httpTLSConfig is the TLS configuration of the HTTP listener: the gRPC
// listener's certificate (and client CA), reloaded the same way.
func (c *certReloader) httpTLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: c.configForClient}
}

// httpListenerLog is the HTTP listener's log of its own messages (TLS
// handshake failures, errors accepting connections): each a warning, cut
// (limits.Cut), within the request log's rate limit, since a client can
// cause one per connection. A refused TLS handshake is also counted in
// corsauthz_tls_handshake_failures_total, as the gRPC listener's are.
func httpListenerLog(core *decision.Core, metrics *Metrics) func(string) {
	return func(msg string) {
		// httpauthz.Server words it as net/http does: "http: TLS
		// handshake error from ADDR: ERR".
		if strings.HasPrefix(msg, "http: TLS handshake error") {
			metrics.tlsHandshakeFailed()
		}
		core.Log(context.Background(), slog.LevelWarn, "HTTP listener: "+limits.Cut(msg), slog.String("listener", "http"))
	}
}

// limitHTTPConnections puts the cap on the HTTP listener's connections
// (httpauthz.LimitConnections): open ones are counted in
// corsauthz_http_connections, refused ones in
// corsauthz_http_connections_refused_total and logged within the request
// log's rate limit.
func (s *Server) limitHTTPConnections(l net.Listener, tlsConfig *tls.Config, max int) net.Listener {
	max = cmp.Or(max, httpauthz.DefaultMaxConnections)
	return httpauthz.LimitConnections(l, tlsConfig, httpauthz.ConnLimits{
		Max: max,
		Refused: func() {
			s.metrics.httpConnectionRefused()
			s.core.Log(context.Background(), slog.LevelWarn, "HTTP listener: connection refused: too many connections open; answering 503",
				slog.String("listener", "http"), slog.Int("limit", max))
		},
		Opened: func() { s.metrics.httpConnections(1) },
		Closed: func() { s.metrics.httpConnections(-1) },
	})
}
