package policy

// Request holds the few facts of an HTTP request that CORS depends on.
// Header values are as received; an empty string means the header is absent.
type Request struct {
	Method string
	// Host is the request authority (HTTP/2 :authority or Host), used to
	// select a policy by Match.Hosts.
	Host string
	// Path is the request path; a query string is ignored.
	Path string
	// Policy, when not empty, names the policy to apply and skips Match
	// (Envoy sets it per route as the cors_policy context extension). A
	// comma-separated list ("app,partners") names a group: the Origin picks
	// the first whose allowed_origins admit it, else the first, as among
	// policies that share a match.
	Policy string

	Origin string // Origin
	// OriginPresent says the request carries an Origin header even when
	// Origin is empty: an empty Origin is a CORS request whose origin
	// matches no listed origin or pattern, not the absence of one. A
	// non-empty Origin is present whatever this says.
	OriginPresent bool

	RequestMethod         string // Access-Control-Request-Method
	RequestHeaders        string // Access-Control-Request-Headers
	RequestPrivateNetwork string // Access-Control-Request-Private-Network
}

// isCORS reports whether r carries an Origin header, even an empty one.
func (r *Request) isCORS() bool { return r.Origin != "" || r.OriginPresent }

// isPreflight reports whether r is a CORS preflight: OPTIONS with an
// Access-Control-Request-Method. An OPTIONS without it is an actual request.
func (r *Request) isPreflight() bool { return r.Method == "OPTIONS" && r.RequestMethod != "" }

// Kind is what sort of answer a Decision is.
type Kind uint8

const (
	// KindNotCORS: no Origin, or no policy applies; the request goes on.
	// Without Origin, a policy's decision still adds what caches need:
	// Access-Control-Allow-Origin "*" for a "*" policy without
	// credentials, Vary: Origin for any other.
	KindNotCORS Kind = iota
	// KindPreflightAllowed: answer the preflight directly with 204 and the headers.
	KindPreflightAllowed
	// KindPreflightRejected: answer the preflight directly with 403.
	KindPreflightRejected
	// KindActualAllowed: pass on; add the headers to the response.
	KindActualAllowed
	// KindActualDisallowed: the origin is not allowed; pass on with only
	// Vary, or answer 403 when Status says so.
	KindActualDisallowed
)

var kindNames = [...]string{
	KindNotCORS:           "not_cors",
	KindPreflightAllowed:  "preflight_allowed",
	KindPreflightRejected: "preflight_rejected",
	KindActualAllowed:     "actual_allowed",
	KindActualDisallowed:  "actual_disallowed",
}

// String returns a stable snake_case name, fit for logs and metric labels.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Header is one response header a Decision asks for.
type Header struct {
	Name  string
	Value string
	// Append is true for headers that must be appended to any value the
	// upstream sets (Vary); the others replace it (Access-Control-*), so a
	// response never carries two different CORS answers.
	Append bool
}

// Decision is the CORS answer for one Request.
//
// Its strings are shared with the Engine and the Request: read them, never
// modify them. A Decision costs no allocation; see [Decision.AppendHeaders].
type Decision struct {
	Kind Kind
	// Status is the HTTP status of a direct answer (204 or 403); 0 means
	// the request goes on upstream.
	Status int
	// Policy is the name of the policy that applied, or empty.
	Policy string
	// Group, when the policy was picked from several (policies sharing a
	// match, or a cors_policy listing several), names them all in order,
	// comma-separated; the Origin picked Policy among them. Empty otherwise.
	Group string
	// ReportOnly means the policy only reports: the gateway must pass the
	// request on untouched whatever Kind and Status say.
	ReportOnly bool
	// Reason says why, in a few words; [Engine.Explain] says more.
	Reason Reason
	// Detail is the offending value for a rejection (the method or header
	// name that is not allowed), taken from the request.
	Detail string

	allowOrigin  string
	allowMethod  string
	allowHeaders string
	fixed        *headerList
}

// headerList is one of a policy's fixed lists of response headers, with
// each value also as a one-element slice, ready for an http.Header (see
// [ResponseHeaders.Fixed]).
type headerList struct {
	headers []Header
	values  [][]string
}

func newHeaderList(headers []Header) *headerList {
	l := &headerList{headers: headers, values: make([][]string, len(headers))}
	for i, h := range headers {
		if v, ok := commonValues[h.Value]; ok {
			l.values[i] = v
		} else {
			l.values[i] = []string{h.Value}[:1:1]
		}
	}
	return l
}

// commonValues are the values most policies have, kept once.
var commonValues = map[string][]string{
	"true":        {"true"},
	varyActual:    {varyActual},
	varyPreflight: {varyPreflight},
}

func (l *headerList) list() []Header {
	if l == nil {
		return nil
	}
	return l.headers
}

// Direct reports whether the gateway must answer the request itself with
// Status instead of passing it on.
func (d *Decision) Direct() bool { return d.Status != 0 && !d.ReportOnly }

// AppendHeaders appends the response headers of the decision to dst and
// returns the extended slice; with a large enough dst it does not allocate.
// For a direct answer they are the answer's headers; otherwise they are to
// be added to the upstream's response. A report-only decision has headers
// too (they are what would have been sent), and the gateway must not send them.
func (d *Decision) AppendHeaders(dst []Header) []Header {
	h := ResponseHeaders{d.allowOrigin, d.allowMethod, d.allowHeaders, d.fixed}
	return h.Append(dst)
}

// ResponseHeaders are the headers of [Decision.AppendResponseHeaders] in
// the form a front end can keep while the upstream answers (the Go
// middleware keeps them per request): the few values taken from the
// request, and the policy's list of the others, shared, not copied.
type ResponseHeaders struct {
	allowOrigin, allowMethod, allowHeaders string
	fixed                                  *headerList
}

// ResponseHeaders returns d's response headers: none for a report-only
// decision.
func (d *Decision) ResponseHeaders() ResponseHeaders {
	if d.ReportOnly {
		return ResponseHeaders{}
	}
	return ResponseHeaders{d.allowOrigin, d.allowMethod, d.allowHeaders, d.fixed}
}

// Append appends the headers to dst; with a dst of capacity MaxHeaders it
// does not allocate.
func (h *ResponseHeaders) Append(dst []Header) []Header {
	if h.allowOrigin != "" {
		dst = append(dst, Header{Name: HeaderAllowOrigin, Value: h.allowOrigin})
	}
	if h.allowMethod != "" {
		dst = append(dst, Header{Name: HeaderAllowMethods, Value: h.allowMethod})
	}
	if h.allowHeaders != "" {
		dst = append(dst, Header{Name: HeaderAllowHeaders, Value: h.allowHeaders})
	}
	return append(dst, h.fixed.list()...)
}

// AllowOrigin, AllowMethods and AllowHeaders are the values of the
// headers taken from the request, in the order Append adds them (empty:
// not sent).
func (h *ResponseHeaders) AllowOrigin() string  { return h.allowOrigin }
func (h *ResponseHeaders) AllowMethods() string { return h.allowMethod }
func (h *ResponseHeaders) AllowHeaders() string { return h.allowHeaders }

// Fixed returns the policy's headers Append adds after those, and the value
// of each as a slice of one string, capacity one, shared by every decision
// of the policy. A front end that writes an http.Header puts the slices in
// as they are, without an allocation per response (an append to one
// copies it); it must never write into them.
func (h *ResponseHeaders) Fixed() ([]Header, [][]string) {
	if h.fixed == nil {
		return nil, nil
	}
	return h.fixed.headers, h.fixed.values
}

// AppendResponseHeaders appends the headers the gateway sends with the
// decision: those of AppendHeaders, or none for a report-only decision,
// which changes nothing. It is the one place the report-only rule is
// written for every front end.
func (d *Decision) AppendResponseHeaders(dst []Header) []Header {
	if d.ReportOnly {
		return dst
	}
	return d.AppendHeaders(dst)
}

// FixedAnswer reports whether the decision's answer (Direct, Status and
// headers) is the same for every request that gets this Kind from this
// Policy, picked alone or from a group (Group empty or not): a request
// without Origin, an origin not allowed, a rejected preflight, and an
// allowed actual request to a "*" policy. A front end may then encode the
// answer once per policy and reuse it, instead of building it per request.
func (d *Decision) FixedAnswer() bool {
	switch d.Kind {
	case KindNotCORS, KindActualDisallowed, KindPreflightRejected:
		return true
	case KindActualAllowed:
		return d.allowOrigin == "*"
	}
	return false
}

// MaxHeaders is the most headers a Decision can carry; a dst of this
// capacity makes [Decision.AppendHeaders] allocation-free.
const MaxHeaders = 8

// Canonical header names, as written on responses.
const (
	HeaderOrigin                = "Origin"
	HeaderVary                  = "Vary"
	HeaderAllowOrigin           = "Access-Control-Allow-Origin"
	HeaderAllowCredentials      = "Access-Control-Allow-Credentials"
	HeaderAllowMethods          = "Access-Control-Allow-Methods"
	HeaderAllowHeaders          = "Access-Control-Allow-Headers"
	HeaderAllowPrivateNetwork   = "Access-Control-Allow-Private-Network"
	HeaderMaxAge                = "Access-Control-Max-Age"
	HeaderExposeHeaders         = "Access-Control-Expose-Headers"
	HeaderRequestMethod         = "Access-Control-Request-Method"
	HeaderRequestHeaders        = "Access-Control-Request-Headers"
	HeaderRequestPrivateNetwork = "Access-Control-Request-Private-Network"
)

// Reason is why a Decision came out as it did.
type Reason uint8

const (
	ReasonNoOrigin Reason = iota
	ReasonNoPolicy
	ReasonOriginAllowed
	ReasonAnyOrigin
	ReasonOriginNotAllowed
	ReasonOriginTooLong
	ReasonMethodNotAllowed
	ReasonMethodInvalid
	ReasonHeaderNotAllowed
	ReasonHeaderInvalid
	ReasonHeadersTooLong
)

var reasonText = [...]string{
	ReasonNoOrigin:         "no Origin header: not a CORS request",
	ReasonNoPolicy:         "no policy applies to this host and path",
	ReasonOriginAllowed:    "origin is allowed",
	ReasonAnyOrigin:        "policy allows any origin",
	ReasonOriginNotAllowed: "origin is not allowed",
	ReasonOriginTooLong:    "origin is longer than 2048 bytes or its host longer than 253",
	ReasonMethodNotAllowed: "requested method is not allowed",
	ReasonMethodInvalid:    "requested method is not a valid method name",
	ReasonHeaderNotAllowed: "requested header is not allowed",
	ReasonHeaderInvalid:    "Access-Control-Request-Headers holds an invalid header name",
	ReasonHeadersTooLong:   "Access-Control-Request-Headers is longer than the limit",
}

var reasonNames = [...]string{
	ReasonNoOrigin:         "no_origin",
	ReasonNoPolicy:         "no_policy",
	ReasonOriginAllowed:    "origin_allowed",
	ReasonAnyOrigin:        "any_origin",
	ReasonOriginNotAllowed: "origin_not_allowed",
	ReasonOriginTooLong:    "origin_too_long",
	ReasonMethodNotAllowed: "method_not_allowed",
	ReasonMethodInvalid:    "method_invalid",
	ReasonHeaderNotAllowed: "header_not_allowed",
	ReasonHeaderInvalid:    "header_invalid",
	ReasonHeadersTooLong:   "headers_too_long",
}

// String returns a stable snake_case name, fit for logs and metric labels.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// Text returns a short sentence for people.
func (r Reason) Text() string {
	if int(r) < len(reasonText) {
		return reasonText[r]
	}
	return "unknown reason"
}
