package httpauthz

import (
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/corsauthz/corsauthz/internal/limits"
	"github.com/corsauthz/corsauthz/policy"
)

// Header names the handler reads, in Go's canonical form.
const (
	headerForwardedMethod = "X-Forwarded-Method"
	headerOriginalMethod  = "X-Original-Method"
	headerForwardedHost   = "X-Forwarded-Host"
	headerOriginalHost    = "X-Original-Host"
	headerForwardedURI    = "X-Forwarded-Uri"
	headerOriginalURI     = "X-Original-Uri"
	// HeaderPolicy names the policy to apply, as Envoy's cors_policy
	// context extension does.
	HeaderPolicy = "X-Corsauthz-Policy"
)

// RequestError is a request the handler refuses to decide: a 431 for one
// past the limits, a 400 for one it cannot read. Message is one line and
// quotes nothing the client sent.
type RequestError struct {
	Status  int
	Message string
}

func (e *RequestError) Error() string { return fmt.Sprintf("%d: %s", e.Status, e.Message) }

func badRequest(format string, args ...any) *RequestError {
	return &RequestError{Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

func tooLarge(format string, args ...any) *RequestError {
	return &RequestError{Status: http.StatusRequestHeaderFieldsTooLarge, Message: fmt.Sprintf(format, args...)}
}

// The headers the handler reads, by index into readNames.
const (
	hForwardedMethod = iota
	hOriginalMethod
	hForwardedHost
	hOriginalHost
	hForwardedURI
	hOriginalURI
	hPolicy
	hOrigin
	hRequestMethod
	hRequestHeaders
	hRequestPrivateNetwork
	hForwardedProto
	nRead
)

// readNames are the names of the headers the handler reads, canonical.
var readNames = [nRead]string{
	hForwardedMethod:       headerForwardedMethod,
	hOriginalMethod:        headerOriginalMethod,
	hForwardedHost:         headerForwardedHost,
	hOriginalHost:          headerOriginalHost,
	hForwardedURI:          headerForwardedURI,
	hOriginalURI:           headerOriginalURI,
	hPolicy:                HeaderPolicy,
	hOrigin:                policy.HeaderOrigin,
	hRequestMethod:         policy.HeaderRequestMethod,
	hRequestHeaders:        policy.HeaderRequestHeaders,
	hRequestPrivateNetwork: policy.HeaderRequestPrivateNetwork,
	hForwardedProto:        headerForwardedProto,
}

// checkRequest is a check request as the handler reads it, whichever
// server parsed it: net/http (stdRequest) or the listener's own
// (wireRequest).
type checkRequest interface {
	method() string
	// requestURI is the request target as sent.
	requestURI() string
	// host is the Host header, or the authority of an absolute target.
	host() string
	// lineCount is the number of header lines.
	lineCount() int
	// get returns the first value of readNames[i] and how many lines
	// carry it.
	get(i int) (string, int)
	// joined returns every line of readNames[i] joined with ",".
	joined(i int) string
	// sent reports whether a header is sent, name in any case.
	sent(name string) bool
}

// stdRequest is a request net/http parsed.
type stdRequest struct{ r *http.Request }

func (s stdRequest) method() string     { return s.r.Method }
func (s stdRequest) requestURI() string { return s.r.RequestURI }
func (s stdRequest) host() string       { return s.r.Host }

func (s stdRequest) lineCount() int {
	n := 0
	for _, vs := range s.r.Header {
		n += len(vs)
	}
	return n
}

func (s stdRequest) get(i int) (string, int) {
	vs := s.r.Header[readNames[i]]
	if len(vs) == 0 {
		return "", 0
	}
	return vs[0], len(vs)
}

func (s stdRequest) sent(name string) bool { return len(s.r.Header.Values(name)) > 0 }

func (s stdRequest) joined(i int) string { return strings.Join(s.r.Header[readNames[i]], ",") }

// readRequest fills dst from r, following the precedence of the package
// documentation, or says why r cannot be decided. prefix is
// Options.PathPrefix without its trailing "/".
func readRequest(r checkRequest, prefix string, dst *policy.Request) *RequestError {
	if n := r.lineCount(); n > limits.HeaderCount {
		return tooLarge("the request has %d header lines, more than the limit of %d", n, limits.HeaderCount)
	}
	var err *RequestError
	pick := func(names ...int) string {
		for _, i := range names {
			v, e := single(r, i)
			if e != nil && err == nil {
				err = e
			}
			if v != "" {
				return v
			}
		}
		return ""
	}
	dst.Method = pick(hForwardedMethod, hOriginalMethod)
	if dst.Method == "" {
		dst.Method = r.method()
	}
	dst.Host = pick(hForwardedHost, hOriginalHost)
	if dst.Host == "" {
		dst.Host = r.host()
	}
	dst.Path = pick(hForwardedURI, hOriginalURI)
	dst.Policy = pick(hPolicy)
	dst.Origin = pick(hOrigin)
	// An empty Origin is still an Origin (docs/configuration-and-decisions.md): Envoy's
	// http_service forwards one as it came; NGINX cannot send one.
	_, origins := r.get(hOrigin)
	dst.OriginPresent = origins > 0
	dst.RequestMethod = pick(hRequestMethod)
	dst.RequestPrivateNetwork = pick(hRequestPrivateNetwork)
	// A list: lines of it are joined, as Envoy joins them.
	dst.RequestHeaders = r.joined(hRequestHeaders)
	if err != nil {
		return err
	}

	switch {
	case dst.Path != "":
		if !strings.HasPrefix(dst.Path, "/") {
			return badRequest("the original path (X-Forwarded-Uri or X-Original-URI) does not start with /")
		}
	default:
		path, e := ownPath(r.requestURI(), prefix)
		if e != nil {
			return e
		}
		dst.Path = path
	}
	if dst.Host == "" {
		return badRequest("the request names no host: send Host, X-Forwarded-Host or X-Original-Host")
	}
	return checkValues(dst)
}

// single returns the value of the header readNames[i] ("" when absent),
// or an error when it is sent more than once: a repeated single-valued
// header is not a gateway's, and no line of it is more to be trusted than
// the others.
func single(r checkRequest, i int) (string, *RequestError) {
	v, n := r.get(i)
	if n <= 1 {
		return v, nil
	}
	return "", badRequest("the header %s is sent %d times: send it once", readNames[i], n)
}

// ownPath is the request's own path and query with prefix removed.
func ownPath(requestURI, prefix string) (string, *RequestError) {
	if !strings.HasPrefix(requestURI, "/") {
		return "", badRequest("the request target is not a path (send the original path in X-Forwarded-Uri or X-Original-URI)")
	}
	rest, ok := strings.CutPrefix(requestURI, prefix)
	if !ok || (rest != "" && rest[0] != '/' && rest[0] != '?') {
		return "", badRequest("the request path does not start with the path prefix %q", prefix)
	}
	if rest == "" || rest[0] == '?' {
		rest = "/" + rest
	}
	return rest, nil
}

// checkValues refuses a request whose values are past the limits or not
// UTF-8 (which no browser's request is, and no log line should carry).
func checkValues(r *policy.Request) *RequestError {
	for _, f := range [...]struct {
		name  string
		value string
		limit int
	}{
		{"method", r.Method, limits.MethodLen},
		{"host", r.Host, limits.HostLen},
		{"path", r.Path, limits.PathLen},
		{policy.HeaderOrigin, r.Origin, limits.HeaderValueLen},
		{policy.HeaderRequestMethod, r.RequestMethod, limits.HeaderValueLen},
		{policy.HeaderRequestHeaders, r.RequestHeaders, limits.HeaderValueLen},
		{policy.HeaderRequestPrivateNetwork, r.RequestPrivateNetwork, limits.HeaderValueLen},
		{HeaderPolicy, r.Policy, limits.HeaderValueLen},
	} {
		if len(f.value) > f.limit {
			return tooLarge("the %s is %d bytes long, more than the limit of %d", f.name, len(f.value), f.limit)
		}
		if !utf8.ValidString(f.value) {
			return badRequest("the %s is not valid UTF-8", f.name)
		}
	}
	return nil
}
