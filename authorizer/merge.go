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
	// Deny: any other final status, or a gRPC denial.
	Deny
	// Error: unreachable, timed out, reset, a static header's value
	// missing, or an answer that is not one (garbage, 1xx, a body or
	// headers past the limits). The gateway answers 503 (on_error: deny).
	Error
	// Refused: the request was refused before the authorizer was asked
	// (a forward_path authorizer and a path that holds an encoded "/" or
	// "\"): the gateway answers Status (400) with the CORS headers; it is
	// the client's request that is wrong, not the authorizer.
	Refused
	// Overloaded: too many calls waiting or in flight already (see
	// MaxPending), answered at once without asking the authorizer: a
	// failure like Error (503, or a pass under on_error: allow), counted
	// apart so that an operator tells a saturated corsauthz from a broken
	// authorizer.
	Overloaded
)

var resultNames = [...]string{Allow: "allow", Deny: "deny", Error: "error", Refused: "refused", Overloaded: "overloaded"}

// String is the result's metric label: allow, deny, error, refused or
// overloaded.
func (r Result) String() string {
	if int(r) < len(resultNames) {
		return resultNames[r]
	}
	return "unknown"
}

// Failed reports whether r is a failure to get an answer (Error or
// Overloaded): what on_error decides.
func (r Result) Failed() bool { return r != Allow && r != Deny && r != Refused }

// Answer is one authorizer's answer, as read from the wire: Merge makes
// it safe to send (see Merge).
type Answer struct {
	Result Result
	// Err says why, for Error and Overloaded. Its text never holds the
	// request's query or a static header's value.
	Err error

	// Status, Headers and Body are an HTTP authorizer's denial (Status is
	// its HTTP status; Headers hold one entry per value, in name order),
	// or, for a gRPC authorizer's denial, its denied_response read the
	// same way (Status 403 when it has none, as Envoy does); for Refused,
	// the status and one-line body the gateway answers.
	Status  int
	Headers []policy.Header
	Body    []byte

	// SetUpstream and RemoveUpstream are an HTTP authorizer's allow: the
	// upstream_headers its answer carried, to set on the request, and
	// those it did not, to remove from it. A failure of an HTTP
	// authorizer names them all in RemoveUpstream, for on_error: allow.
	SetUpstream    []policy.Header
	RemoveUpstream []string

	// Check is a gRPC authorizer's CheckResponse, allow or deny, as it
	// came.
	Check *authv3.CheckResponse
}

// Outcome is the final answer to the gateway for a request that asked an
// authorizer: what the front end writes in its own protocol. Request and
// response are never mixed up: RequestHeaders and RemoveRequestHeaders
// only ever change the request going upstream, Headers and
// ResponseHeaders only ever the response.
//
// A front end that does not speak ext_authz writes a pass as: the request
// goes upstream with RequestHeaders set (Append: added to the request's
// own value) and RemoveRequestHeaders removed; the upstream's response
// gets Headers (corsauthz's, replacing the upstream's) then
// ResponseHeaders (the authorizer's). An ext_authz front end sends
// OkHTTPResponse instead, which holds the same with the authorizer's
// exact append actions and query parameters.
type Outcome struct {
	// Result is the authorizer's, for logs and metrics (an Error with
	// on_error: allow passes).
	Result Result
	// Pass: the request goes on upstream.
	Pass bool

	// Status, Body and Headers are the direct answer when !Pass: the
	// authorizer's denial with the CORS headers merged in (Status always
	// 400–599), a 400 for Refused, or a 503. When Pass, Headers are
	// corsauthz's CORS headers to add to the upstream's response (Append:
	// append to the upstream's value, else replace it).
	Status  int
	Body    []byte
	Headers []policy.Header

	// RequestHeaders are set on the request going upstream, replacing any
	// of the same name (Append: added to it), and RemoveRequestHeaders
	// removed from it: an HTTP authorizer's upstream_headers, or a gRPC
	// authorizer's ok_response headers and headers_to_remove.
	RequestHeaders       []policy.Header
	RemoveRequestHeaders []string
	// ResponseHeaders are, when Pass, the authorizer's own headers for
	// the upstream's response: a gRPC authorizer's
	// ok_response.response_headers_to_add, never a CORS header.
	ResponseHeaders []policy.Header

	// OK is a gRPC authorizer's ok_response with its exact append actions
	// and query parameters, made safe like the rest (no Access-Control-*,
	// framing, hop-by-hop or X-Accel-* header in its headers or response
	// headers). It holds the same edits as RequestHeaders,
	// RemoveRequestHeaders and ResponseHeaders: a front end uses it or
	// them, never both; ext_authz front ends use OkHTTPResponse.
	OK *authv3.OkHttpResponse
	// DynamicMetadata is a gRPC authorizer's CheckResponse.dynamic_metadata.
	DynamicMetadata *structpb.Struct
}

// Bodies of the answers corsauthz makes itself.
const (
	failureBody = "corsauthz: the authorization service could not be asked\n"
	refusedBody = "corsauthz: the request's path holds an encoded '/' or '\\' (%2F, %5C), which this service refuses\n"
)

// textPlain is the Content-Type of corsauthz's own one-line bodies.
var textPlain = policy.Header{Name: "Content-Type", Value: "text/plain; charset=utf-8"}

// Merge combines the CORS decision d (one that asks an authorizer: see
// policy.Engine.AuthorizerFor) with the authorizer's answer:
//
//   - allowed: the request goes upstream with what the authorizer asked
//     for, and the response gets the CORS headers of d;
//   - denied: the answer is the authorizer's status, headers and body plus
//     the CORS headers of d, so that the page's script can read a 401;
//   - refused (forward_path and an encoded "/" or "\" in the path): 400
//     with the CORS headers;
//   - failed or overloaded: a 503 with the CORS headers, never a pass,
//     unless failOpen (on_error: allow), when the request goes on with
//     the CORS headers only, and without the HTTP authorizer's
//     upstream_headers (the client's own are removed).
//
// Whatever the answer holds, Merge keeps the invariants every front end
// relies on: only corsauthz speaks CORS (every Access-Control-* header of
// the authorizer's is dropped, its Vary values kept); a denial stays a
// denial (a status outside 400–599 becomes 403; Content-Length,
// Transfer-Encoding, Connection, Keep-Alive, Upgrade, TE, Trailer,
// Proxy-* and X-Accel-* are dropped, as is any header whose name or value
// could not be written on a response); headers for the upstream request
// never become response headers, nor the reverse. Its cost is linear in
// the answer's size. A report_only decision adds no CORS header:
// report-only applies to CORS, never to authorization.
func Merge(d *policy.Decision, a *Answer, failOpen bool) Outcome {
	var cors []policy.Header
	if !d.ReportOnly {
		cors = d.AppendHeaders(make([]policy.Header, 0, policy.MaxHeaders))
	}
	out := Outcome{Result: a.Result}
	if a.Result == Deny && len(a.Body) > MaxBodyBytes {
		out.Result = Error // no reader lets it through; an Answer built by hand might
	}
	switch out.Result {
	case Allow:
		out.Pass = true
		out.Headers = cors
		out.RequestHeaders = sanitized(a.SetUpstream)
		out.RemoveRequestHeaders = a.RemoveUpstream
		if a.Check != nil {
			out.DynamicMetadata = a.Check.GetDynamicMetadata()
			if ok := a.Check.GetOkResponse(); ok != nil {
				out.OK = sanitizedOK(ok)
				out.RequestHeaders = appendOptions(out.RequestHeaders, out.OK.GetHeaders())
				out.RemoveRequestHeaders = append(out.RemoveRequestHeaders, out.OK.GetHeadersToRemove()...)
				out.ResponseHeaders = appendOptions(nil, out.OK.GetResponseHeadersToAdd())
			}
		}
	case Deny:
		out.Status = DenialStatus(a.Status)
		out.Headers = mergeHeaders(a.Headers, cors)
		out.Body = a.Body
		if a.Check != nil {
			out.DynamicMetadata = a.Check.GetDynamicMetadata()
		}
	case Refused:
		out.Status = a.Status
		if out.Status < 400 || out.Status > 499 {
			out.Status = 400
		}
		out.Headers = append(cors, textPlain)
		out.Body = []byte(refusedBody)
	default:
		if failOpen {
			out.Pass = true
			out.Headers = cors
			out.RemoveRequestHeaders = a.RemoveUpstream
			return out
		}
		out.Status = 503
		out.Headers = append(cors, textPlain)
		out.Body = []byte(failureBody)
	}
	return out
}

// DenialStatus is the status a denial is answered with: s when it is
// 400–599, else 403. A 2xx would be an allow for NGINX's auth_request and
// Envoy's http_service, a 1xx or 3xx is no answer to relay, and a number
// out of range is no HTTP status at all.
func DenialStatus(s int) int {
	if s >= 400 && s <= 599 {
		return s
	}
	return 403
}

// OkHTTPResponse is the ext_authz ok_response of a pass: the gRPC
// authorizer's own (made safe, its exact actions kept) or the HTTP
// authorizer's upstream headers to set and remove, with corsauthz's CORS
// headers as response headers to add. It is a new message each call; nil
// when !o.Pass.
func (o *Outcome) OkHTTPResponse() *authv3.OkHttpResponse {
	if !o.Pass {
		return nil
	}
	var ok *authv3.OkHttpResponse
	if o.OK != nil {
		ok = proto.Clone(o.OK).(*authv3.OkHttpResponse)
	} else {
		// No ok_response: the edits are an HTTP authorizer's (or none).
		ok = &authv3.OkHttpResponse{HeadersToRemove: append([]string(nil), o.RemoveRequestHeaders...), Headers: HeaderOptions(o.RequestHeaders)}
	}
	ok.ResponseHeadersToAdd = append(ok.ResponseHeadersToAdd, HeaderOptions(o.Headers)...)
	return ok
}

// HeaderOptions are headers as Envoy header value options, the inverse of
// OptionHeaders: a replacing header (Access-Control-*: a response never
// carries two CORS answers) overwrites, an Append one (Vary: the
// upstream's own survives) appends. nil for none; the options share two
// allocations.
func HeaderOptions(headers []policy.Header) []*corev3.HeaderValueOption {
	if len(headers) == 0 {
		return nil
	}
	type option struct {
		opt corev3.HeaderValueOption
		val corev3.HeaderValue
	}
	hs := make([]option, len(headers))
	out := make([]*corev3.HeaderValueOption, len(headers))
	for i, h := range headers {
		o := &hs[i]
		o.val.Key, o.val.Value = h.Name, h.Value
		o.opt.Header = &o.val
		o.opt.AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		if h.Append {
			o.opt.AppendAction = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
		}
		out[i] = &o.opt
	}
	return out
}

// corsOwned returns, for a header of corsauthz's CORS answer, whether the
// authorizer's header of the same name gives way to it. Every
// Access-Control-* header is dropped anyway; this covers the decision's
// other replacing headers, if it ever has some.
func corsOwned(name string, cors []policy.Header) bool {
	for i := range cors { // at most policy.MaxHeaders
		if !cors[i].Append && strings.EqualFold(cors[i].Name, name) {
			return true
		}
	}
	return false
}

// mergeHeaders is a direct answer's headers: the authorizer's that may be
// sent, then corsauthz's. The Vary values of both go in one Vary header,
// the authorizer's first. Linear in len(theirs): each name is checked
// against constant lists.
func mergeHeaders(theirs, cors []policy.Header) []policy.Header {
	out := make([]policy.Header, 0, min(len(theirs), MaxAnswerHeaders)+len(cors)+1)
	var vary []string
	for _, h := range theirs {
		switch {
		case !sendable(h.Name, h.Value) || strings.EqualFold(h.Name, "Date"):
		case strings.EqualFold(h.Name, policy.HeaderVary):
			if v := strings.Trim(h.Value, " \t"); v != "" {
				vary = append(vary, v)
			}
		case corsOwned(h.Name, cors):
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

// sanitized returns hs without the headers that may not be sent; hs
// itself when it has none.
func sanitized(hs []policy.Header) []policy.Header {
	n := 0
	for _, h := range hs {
		if sendable(h.Name, h.Value) {
			n++
		}
	}
	if n == len(hs) {
		return hs
	}
	out := make([]policy.Header, 0, n)
	for _, h := range hs {
		if sendable(h.Name, h.Value) {
			out = append(out, h)
		}
	}
	return out
}

// sanitizedOK returns ok, or a copy of it without the headers and
// response headers that may not be sent.
func sanitizedOK(ok *authv3.OkHttpResponse) *authv3.OkHttpResponse {
	if allSendable(ok.GetHeaders()) && allSendable(ok.GetResponseHeadersToAdd()) {
		return ok
	}
	c := proto.Clone(ok).(*authv3.OkHttpResponse)
	c.Headers = sendableOptions(c.GetHeaders())
	c.ResponseHeadersToAdd = sendableOptions(c.GetResponseHeadersToAdd())
	return c
}

func allSendable(os []*corev3.HeaderValueOption) bool {
	for _, o := range os {
		if !sendable(o.GetHeader().GetKey(), optionValue(o)) {
			return false
		}
	}
	return true
}

func sendableOptions(os []*corev3.HeaderValueOption) []*corev3.HeaderValueOption {
	out := make([]*corev3.HeaderValueOption, 0, len(os))
	for _, o := range os {
		if sendable(o.GetHeader().GetKey(), optionValue(o)) {
			out = append(out, o)
		}
	}
	return out
}

// appendOptions appends header options as headers. An ext_authz option's
// actions other than append (ADD_IF_ABSENT, OVERWRITE_IF_EXISTS) are read
// as a replacement: the authorizer's value wins, the safe reading for an
// identity header a client may have sent itself.
// RequestHeadersFor is RequestHeaders as they apply to a request whose
// headers has reports: a gRPC authorizer's ADD_IF_ABSENT edits only for a
// header the request lacks, its OVERWRITE_IF_EXISTS ones only for a header
// it has, as Envoy applies them. A front end that tells the gateway which
// headers to set (the HTTP listener), rather than editing the request
// itself, sends these.
func (o *Outcome) RequestHeadersFor(has func(name string) bool) []policy.Header {
	opts := o.OK.GetHeaders()
	if len(opts) == 0 {
		return o.RequestHeaders
	}
	// appendOptions put one header per option at the end, in order.
	n := len(o.RequestHeaders) - len(opts)
	out := make([]policy.Header, n, len(o.RequestHeaders))
	copy(out, o.RequestHeaders[:n])
	for i, opt := range opts {
		if opt.GetAppend() == nil { // the deprecated boolean, when set, wins
			switch opt.GetAppendAction() {
			case corev3.HeaderValueOption_ADD_IF_ABSENT:
				if has(opt.GetHeader().GetKey()) {
					continue
				}
			case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
				if !has(opt.GetHeader().GetKey()) {
					continue
				}
			}
		}
		out = append(out, o.RequestHeaders[n+i])
	}
	return out
}

// OptionHeaders are Envoy header value options as headers: each option's
// value (raw_value when set), Append for one that adds an entry. It is
// how a front end that is handed a CheckResponse (the Go middleware in
// remote mode) reads its headers as corsauthz reads an authorizer's.
func OptionHeaders(os []*corev3.HeaderValueOption) []policy.Header {
	return appendOptions(make([]policy.Header, 0, len(os)), os)
}

func appendOptions(dst []policy.Header, os []*corev3.HeaderValueOption) []policy.Header {
	for _, o := range os {
		dst = append(dst, policy.Header{Name: o.GetHeader().GetKey(), Value: optionValue(o), Append: appends(o)})
	}
	return dst
}

func optionValue(o *corev3.HeaderValueOption) string {
	if raw := o.GetHeader().GetRawValue(); len(raw) > 0 {
		return string(raw)
	}
	return o.GetHeader().GetValue()
}

// deniedFromGRPC reads a gRPC authorizer's denial as an HTTP answer: its
// denied_response status (403 when none, as Envoy does), headers and body.
func deniedFromGRPC(resp *authv3.CheckResponse, a *Answer) {
	d := resp.GetDeniedResponse()
	a.Status = int(d.GetStatus().GetCode())
	if a.Status == 0 {
		a.Status = 403
	}
	if hs := d.GetHeaders(); len(hs) > 0 {
		a.Headers = OptionHeaders(hs)
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
