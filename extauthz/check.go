package extauthz

import (
	"cmp"
	"context"
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/decision"
	"github.com/corsauthz/corsauthz/internal/grpcfail"
	"github.com/corsauthz/corsauthz/internal/limits"
	"github.com/corsauthz/corsauthz/internal/tracing"
	"github.com/corsauthz/corsauthz/policy"
)

// ContextExtensionPolicy is the ext_authz context extension that names the
// policy for a route (set per route in Envoy), skipping the match rules.
const ContextExtensionPolicy = "cors_policy"

// Server serves the Envoy external-authorization API
// (envoy.service.auth.v3.Authorization) for a decision core. It only
// translates: it reads a CheckRequest into a policy.Request, has the core
// decide (and ask the policy's authorizer), and writes the outcome as a
// CheckResponse.
//
// Decisions are data: a preflight answer, a 403 or an authorizer's denial
// is a CheckResponse with a nil error. Check returns a gRPC error only when
// the core could not decide: a request without HTTP attributes or beyond
// the limits (InvalidArgument), a cors_policy that names no configured
// policy (FailedPrecondition), or no configuration (Unavailable).
//
// Responses may be shared between calls: treat them as read-only.
type Server struct {
	authv3.UnimplementedAuthorizationServer

	core *decision.Core
	// fixed holds the fast path's shared answers (wire_response.go).
	fixed fixedAnswers
}

var _ authv3.AuthorizationServer = (*Server)(nil)

// New returns a Server deciding with core.
func New(core *decision.Core) *Server { return &Server{core: core} }

// Check implements authv3.AuthorizationServer. A gRPC server built with
// [ServerOptions] and [Register] serves Check on a fast path that reads
// and writes the messages' wire form (fastpath.go) and answers the same,
// byte for byte.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	var r policy.Request
	if msg := readRequest(req, &r); msg != "" {
		return nil, s.refuse(ctx, msg)
	}
	if s.core.Tracing() {
		ctx = tracing.FromMetadata(ctx) // Envoy's span, from the call's metadata
	}
	out := s.core.Decide(ctx, decision.FrontEndExtAuthz, &r, typedSource{req})
	return checkResponse(&out)
}

// typedSource is a CheckRequest as an authorizer is told of it: a gRPC
// authorizer gets it as received.
type typedSource struct{ req *authv3.CheckRequest }

func (t typedSource) AuthorizerRequest(string) *authorizer.Request {
	return &authorizer.Request{Check: t.req}
}

// refuse logs and counts a request readRequest refused with msg, and
// returns the error Check answers.
func (s *Server) refuse(ctx context.Context, msg string) error {
	f := s.core.Refused(ctx, decision.FrontEndExtAuthz, msg)
	return grpcfail.Error(f)
}

// readRequest fills r from req and returns "" or, when req cannot be
// read, a message saying why. It never panics: every getter is nil-safe.
func readRequest(req *authv3.CheckRequest, r *policy.Request) string {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	if h == nil {
		return msgNoHTTP
	}
	r.Method, r.Host, r.Path = h.GetMethod(), h.GetHost(), h.GetPath()
	if msg := limits.CheckRequestLine(httpFields, len(r.Method), len(r.Host), len(r.Path)); msg != "" {
		return msg
	}
	raw := h.GetHeaderMap().GetHeaders()
	switch headers := h.GetHeaders(); {
	case len(headers) > limits.HeaderCount:
		return headerCountProblem("headers")
	case len(raw) > limits.HeaderCount:
		return headerCountProblem("header_map")
	case len(headers) > 0:
		// Envoy writes the keys in lower case.
		r.Origin, r.OriginPresent = headers["origin"]
		r.RequestMethod = headers["access-control-request-method"]
		r.RequestHeaders = headers["access-control-request-headers"]
		r.RequestPrivateNetwork = headers["access-control-request-private-network"]
		if msg := valueProblem("headers.", r); msg != "" {
			return msg
		}
	case len(raw) > 0:
		readHeaderMap(raw, r)
		if msg := valueProblem("header_map.", r); msg != "" {
			return msg
		}
	}
	r.Policy = attrs.GetContextExtensions()[ContextExtensionPolicy]
	return limits.TooLong("", policyField, len(r.Policy), limits.HeaderValueLen)
}

// policyField is where a CheckRequest names its policy.
const policyField = "attributes.context_extensions." + ContextExtensionPolicy

// valueProblem returns "" or the message for the first CORS header value
// of r longer than limits.HeaderValueLen; field is "headers." or
// "header_map.", where the values were read.
func valueProblem(field string, r *policy.Request) string {
	return cmp.Or(
		limits.TooLong(httpFields+field, "origin", len(r.Origin), limits.HeaderValueLen),
		limits.TooLong(httpFields+field, "access-control-request-method", len(r.RequestMethod), limits.HeaderValueLen),
		limits.TooLong(httpFields+field, "access-control-request-headers", len(r.RequestHeaders), limits.HeaderValueLen),
		limits.TooLong(httpFields+field, "access-control-request-private-network", len(r.RequestPrivateNetwork), limits.HeaderValueLen))
}

// msgNoHTTP is readRequest's message for a request without HTTP attributes.
const msgNoHTTP = "CheckRequest has no attributes.request.http: corsauthz decides on HTTP requests " +
	"(use Envoy's HTTP ext_authz filter, envoy.filters.http.ext_authz, not the network filter)"

// httpFields is where a CheckRequest holds method, host and path.
const httpFields = "attributes.request.http."

// headerCountProblem is readRequest's message for more than
// limits.HeaderCount entries in attributes.request.http.<field>. It says
// no count: the fast path stops reading at the first entry too many.
func headerCountProblem(field string) string {
	return fmt.Sprintf("attributes.request.http.%s has more than %d entries, the limit", field, limits.HeaderCount)
}

// readHeaderMap reads the header_map that Envoy sends instead of headers
// when encode_raw_headers is on: a list of (key, raw_value) pairs in which
// a header may repeat. Repeated values are joined with ",", as Envoy does
// in the headers map.
func readHeaderMap(raw []*corev3.HeaderValue, r *policy.Request) {
	for _, hv := range raw {
		key := hv.GetKey()
		var dst *string
		switch {
		case strings.EqualFold(key, "origin"):
			dst = &r.Origin
			r.OriginPresent = true
		case strings.EqualFold(key, "access-control-request-method"):
			dst = &r.RequestMethod
		case strings.EqualFold(key, "access-control-request-headers"):
			dst = &r.RequestHeaders
		case strings.EqualFold(key, "access-control-request-private-network"):
			dst = &r.RequestPrivateNetwork
		default:
			continue
		}
		v := hv.GetValue()
		if rv := hv.GetRawValue(); len(rv) > 0 {
			v = string(rv)
		}
		if *dst == "" {
			*dst = v
		} else {
			*dst += "," + v
		}
	}
}
