package httpauthz

import (
	"crypto/tls"
	"log"
	"net/http"
	"time"

	"github.com/corsauthz/corsauthz/internal/limits"
	"github.com/corsauthz/corsauthz/policy"
)

// Server timeouts. A gateway sends its check request's headers at once
// and reads the answer at once; a client slower than this is not a
// gateway, and its connection is closed rather than held.
const (
	ReadHeaderTimeout = 3 * time.Second
	// ReadTimeout bounds reading a whole request in NewServer's server;
	// Server reads no body, and bounds writing each answer with it,
	// from the end of the handler.
	ReadTimeout = 5 * time.Second
	// WriteTimeout (NewServer's) runs from the end of the request's headers to the end
	// of the answer, so it covers the authorizer's call: it is longer
	// than the longest authorizer timeout a configuration may set, or an
	// answer held up by a slow authorizer would be cut off (an EOF at the
	// gateway instead of the authorizer's answer or a 503).
	WriteTimeout = policy.MaxAuthorizerTimeout + 5*time.Second
	// IdleTimeout is longer than NGINX's upstream keepalive_timeout (60 s
	// by default) and Envoy's idle_timeout (1 h, but Envoy tolerates a
	// closed connection), so that NGINX closes idle connections first and
	// never sends on one the listener is closing.
	IdleTimeout = 2 * time.Minute
)

// NewServer returns a net/http server for h with the listener's limits,
// for a Handler served by net/http (corsauthz serves it with Server):
// h behind strict timeouts, headers bounded by limits.HTTPHeaderBytes
// (past which net/http answers 431 itself), HTTP/1.1 only (the gateways that ask
// over HTTP speak it; a single protocol keeps the limits simple), OPTIONS
// * handed to h as any other request. tlsConfig, when not nil, serves
// HTTPS (wrap the listener with tls.NewListener); errorLog receives
// net/http's own messages (bad TLS handshakes and the like).
func NewServer(h http.Handler, tlsConfig *tls.Config, errorLog *log.Logger) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	return &http.Server{
		Handler:                      h,
		TLSConfig:                    tlsConfig,
		ReadHeaderTimeout:            ReadHeaderTimeout,
		ReadTimeout:                  ReadTimeout,
		WriteTimeout:                 WriteTimeout,
		IdleTimeout:                  IdleTimeout,
		MaxHeaderBytes:               limits.HTTPHeaderBytes,
		DisableGeneralOptionsHandler: true,
		Protocols:                    &protocols,
		ErrorLog:                     errorLog,
	}
}
