package authorizer

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/corsauthz/corsauthz/policy"
)

// Result is what an authorizer said.
type Result uint8

const (
	// Allow: 2xx from an HTTP authorizer, OK from a gRPC one.
	Allow Result = iota
	// Deny: any other status, or a gRPC denial.
	Deny
	// Error: unreachable, timed out, reset, too many calls in flight, or
	// an answer that is not one (garbage, a body past the limit).
	Error
)

var resultNames = [...]string{Allow: "allow", Deny: "deny", Error: "error"}

// String is the result's metric label: allow, deny or error.
func (r Result) String() string {
	if int(r) < len(resultNames) {
		return resultNames[r]
	}
	return "unknown"
}

// Answer is one authorizer's answer.
type Answer struct {
	Result Result
	// Err says why, for Error.
	Err error

	// Status, Headers and Body are an HTTP authorizer's denial (Status is
	// its HTTP status; Headers hold one entry per value, hop-by-hop
	// headers and Content-Length left out), or, for a gRPC authorizer's
	// denial, its denied_response read the same way.
	Status  int
	Headers []policy.Header
	Body    []byte

	// SetUpstream and RemoveUpstream are an HTTP authorizer's allow: the
	// upstream_headers its answer carried, to set on the request, and
	// those it did not, to remove from it.
	SetUpstream    []policy.Header
	RemoveUpstream []string

	// Check is a gRPC authorizer's CheckResponse, allow or deny.
	Check *authv3.CheckResponse
}

// Outcome is the final answer to the gateway for a request that asked an
// authorizer: what the front end writes in its own protocol.
type Outcome struct {
	// Result is the authorizer's, for logs and metrics (an Error with
	// on_error: allow passes).
	Result Result
	// Pass: the request goes on upstream.
	Pass bool

	// Status, Body and Headers are the direct answer when !Pass: the
	// authorizer's denial with the CORS headers merged in, or a 503.
	// When Pass, Headers are the CORS headers to add to the upstream's
	// response (Append: append to the upstream's value, else replace it).
	Status  int
	Body    []byte
	Headers []policy.Header

	// RequestHeaders are set on the request going upstream, replacing
	// any of the same name, and RemoveRequestHeaders removed from it.
	RequestHeaders       []policy.Header
	RemoveRequestHeaders []string

	// OK is a gRPC authorizer's ok_response, passed on in full (request
	// headers with their append actions, headers to remove, query
	// parameters, response headers), with its response headers that
	// clash with corsauthz's CORS headers removed; the CORS headers (in
	// Headers) are still to be added. A front end that speaks ext_authz
	// sends it on; another applies what it can express.
	OK *authv3.OkHttpResponse
	// DynamicMetadata is a gRPC authorizer's CheckResponse.dynamic_metadata.
	DynamicMetadata *structpb.Struct
}

// Body of the 503 answered when an authorizer fails.
const failureBody = "corsauthz: the authorization service could not be asked\n"

// Merge combines the CORS decision d (one that asks an authorizer: not a
// preflight, not a direct refusal) with the authorizer's answer, as
// contract §8 says:
//
//   - allowed: the request goes upstream with what the authorizer asked
//     for, and the response gets the CORS headers of d;
//   - denied: the answer is the authorizer's status, headers and body plus
//     the CORS headers of d, so that the page's script can read a 401;
//   - failed: a 503 with the CORS headers, never a pass, unless failOpen
//     (on_error: allow), when the request goes on with the CORS headers
//     only.
//
// On a name both set, corsauthz's CORS header wins; the Vary values of
// both are kept. A report_only decision adds no CORS header: report-only
// applies to CORS, never to authorization.
func Merge(d *policy.Decision, a *Answer, failOpen bool) Outcome {
	var cors []policy.Header
	if !d.ReportOnly {
		cors = d.AppendHeaders(make([]policy.Header, 0, policy.MaxHeaders))
	}
	out := Outcome{Result: a.Result}
	switch a.Result {
	case Allow:
		out.Pass = true
		out.Headers = cors
		out.RequestHeaders, out.RemoveRequestHeaders = a.SetUpstream, a.RemoveUpstream
		if a.Check != nil {
			out.DynamicMetadata = a.Check.GetDynamicMetadata()
			if ok := a.Check.GetOkResponse(); ok != nil {
				out.OK = withoutClashes(ok, cors)
			}
		}
	case Deny:
		out.Status = a.Status
		out.Headers = mergeHeaders(a.Headers, cors)
		out.Body = a.Body
		if a.Check != nil {
			out.DynamicMetadata = a.Check.GetDynamicMetadata()
		}
	default:
		if failOpen {
			out.Pass = true
			out.Headers = cors
			return out
		}
		out.Status = 503
		out.Headers = append(cors, policy.Header{Name: "Content-Type", Value: "text/plain; charset=utf-8"})
		out.Body = []byte(failureBody)
	}
	return out
}

// clashes reports whether an authorizer's header named name gives way to
// one of corsauthz's: any CORS header of the decision but Vary.
func clashes(name string, cors []policy.Header) bool {
	for _, h := range cors {
		if !h.Append && strings.EqualFold(h.Name, name) {
			return true
		}
	}
	return false
}

// mergeHeaders is a direct answer's headers: the authorizer's, less those
// corsauthz sets, then corsauthz's. The Vary values of both go in one Vary
// header, the authorizer's first.
func mergeHeaders(theirs, cors []policy.Header) []policy.Header {
	out := make([]policy.Header, 0, len(theirs)+len(cors))
	var vary []string
	for _, h := range theirs {
		switch {
		case strings.EqualFold(h.Name, policy.HeaderVary):
			vary = append(vary, h.Value)
		case clashes(h.Name, cors):
		default:
			out = append(out, h)
		}
	}
	for _, h := range cors {
		if h.Append && strings.EqualFold(h.Name, policy.HeaderVary) && len(vary) > 0 {
			h.Value = strings.Join(vary, ", ") + ", " + h.Value
			vary = nil
		}
		out = append(out, h)
	}
	if len(vary) > 0 { // corsauthz had no Vary of its own
		out = append(out, policy.Header{Name: policy.HeaderVary, Value: strings.Join(vary, ", "), Append: true})
	}
	return out
}

// withoutClashes returns ok, or a copy of it without the response headers
// corsauthz sets itself.
func withoutClashes(ok *authv3.OkHttpResponse, cors []policy.Header) *authv3.OkHttpResponse {
	add := ok.GetResponseHeadersToAdd()
	n := 0
	for _, o := range add {
		if clashes(o.GetHeader().GetKey(), cors) {
			n++
		}
	}
	if n == 0 {
		return ok
	}
	c := proto.Clone(ok).(*authv3.OkHttpResponse)
	kept := make([]*corev3.HeaderValueOption, 0, len(add)-n)
	for _, o := range c.GetResponseHeadersToAdd() {
		if !clashes(o.GetHeader().GetKey(), cors) {
			kept = append(kept, o)
		}
	}
	c.ResponseHeadersToAdd = kept
	return c
}

// deniedFromGRPC reads a gRPC authorizer's denial as an HTTP answer: its
// denied_response status (403 when none, as Envoy does), headers and body.
func deniedFromGRPC(resp *authv3.CheckResponse, a *Answer) {
	d := resp.GetDeniedResponse()
	a.Status = int(d.GetStatus().GetCode())
	if a.Status == 0 {
		a.Status = 403
	}
	for _, o := range d.GetHeaders() {
		v := o.GetHeader().GetValue()
		if raw := o.GetHeader().GetRawValue(); len(raw) > 0 {
			v = string(raw)
		}
		a.Headers = append(a.Headers, policy.Header{Name: o.GetHeader().GetKey(), Value: v, Append: appends(o)})
	}
	if b := d.GetBody(); b != "" {
		a.Body = []byte(b)
	}
}

// appends reports whether a header option adds an entry rather than
// replacing one (the deprecated append, when set, wins, as in Envoy).
func appends(o *corev3.HeaderValueOption) bool {
	if b := o.GetAppend(); b != nil {
		return b.GetValue()
	}
	return o.GetAppendAction() == corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
}
