package httpauthz

import (
	"bytes"
	"iter"
	"net/http"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/policy"
)

// This file reads a check request as Server's HTTP/1.1 parser
// (github.com/valyala/fasthttp) received it, and writes its answer there.
// The header lines are read from the request's header block as it came
// on the wire (fasthttp.RequestHeader.RawHeaders, which fasthttp has
// parsed and validated: one name and value a line, no line without a
// colon): so every line counts, a name sent twice is seen twice, and
// nothing fasthttp treats apart (Host, Cookie, User-Agent, Content-Type)
// is merged or re-encoded on the way.

// wireRequest is a check request Server received.
type wireRequest struct {
	ctx *fasthttp.RequestCtx
	// raw is the header block, one string: every value read is a part
	// of it (one allocation for all of them).
	raw    string
	lines  int
	first  [nRead]string
	count  [nRead]int
	body   bool // a body is announced: Content-Length not 0, or Transfer-Encoding
	reqHdr []string
}

// scan reads the header block.
func (r *wireRequest) scan(ctx *fasthttp.RequestCtx) {
	r.ctx = ctx
	r.raw = string(ctx.Request.Header.RawHeaders())
	for name, value := range headerLines(r.raw) {
		i := readIndex(name)
		if i == iHost {
			continue // not a header line to net/http either: Request.Host
		}
		r.lines++
		switch i {
		case -1:
			continue
		case iContentLength:
			if value != "0" {
				r.body = true
			}
			continue
		case iTransferEncoding:
			r.body = true
			continue
		case hRequestHeaders:
			r.reqHdr = append(r.reqHdr, value)
		}
		if r.count[i] == 0 {
			r.first[i] = value
		}
		r.count[i]++
	}
}

// Indexes readIndex returns besides those of readNames.
const (
	iHost = nRead + iota
	iContentLength
	iTransferEncoding
)

// readIndex is the index in readNames of name in any case, iHost,
// iContentLength or iTransferEncoding, else -1.
func readIndex(name string) int {
	switch len(name) {
	case 4:
		if strings.EqualFold(name, "Host") {
			return iHost
		}
	case 6:
		if strings.EqualFold(name, policy.HeaderOrigin) {
			return hOrigin
		}
	case 14:
		if strings.EqualFold(name, "Content-Length") {
			return iContentLength
		}
	case 17:
		if strings.EqualFold(name, "Transfer-Encoding") {
			return iTransferEncoding
		}
	}
	for i, n := range readNames {
		if len(n) == len(name) && i != hOrigin && strings.EqualFold(n, name) {
			return i
		}
	}
	return -1
}

func (r *wireRequest) method() string {
	m := r.ctx.Method()
	for _, known := range [...]string{http.MethodGet, http.MethodOptions, http.MethodHead, http.MethodPost} {
		if string(m) == known {
			return known
		}
	}
	return string(m)
}

func (r *wireRequest) requestURI() string { return string(r.ctx.Request.Header.RequestURI()) }
func (r *wireRequest) host() string       { return string(r.ctx.Request.Header.Host()) }
func (r *wireRequest) lineCount() int     { return r.lines }
func (r *wireRequest) get(i int) (string, int) {
	return r.first[i], r.count[i]
}

func (r *wireRequest) joined(i int) string {
	if i == hRequestHeaders && r.count[i] > 1 {
		return strings.Join(r.reqHdr, ",")
	}
	return r.first[i]
}

// path is the path of the request target, without its query.
func (r *wireRequest) path() string {
	uri := r.ctx.Request.Header.RequestURI()
	if i := bytes.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	if bytes.IndexByte(uri, '%') < 0 {
		return string(uri)
	}
	return string(r.ctx.Path()) // decoded
}

// header returns the request's header as net/http would have read it
// (for trace context, and the authorizer's request).
func (r *wireRequest) header() http.Header {
	h := http.Header{}
	for name, value := range headerLines(r.raw) {
		key := http.CanonicalHeaderKey(name)
		if key == "Host" {
			continue // net/http keeps it as Request.Host
		}
		h[key] = append(h[key], value)
	}
	return h
}

// sent reports whether the request carries a header name (in any case;
// Host is not a header line to net/http either).
func (r *wireRequest) sent(name string) bool {
	if strings.EqualFold(name, "Host") {
		return false
	}
	for n := range headerLines(r.raw) {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// headerLines yields the name and value (trimmed of spaces and tabs) of
// each line of a raw header block, up to the blank line that ends it. A
// line without a colon is skipped: fasthttp refuses such a line before the
// handler runs.
func headerLines(raw string) iter.Seq2[string, string] {
	return func(yield func(name, value string) bool) {
		for rest := raw; rest != ""; {
			line, next, _ := strings.Cut(rest, "\n")
			rest = next
			line = strings.TrimSuffix(line, "\r")
			if line == "" {
				return
			}
			if name, value, ok := strings.Cut(line, ":"); ok && !yield(name, strings.Trim(value, " \t")) {
				return
			}
		}
	}
}

// wireSource is the request described by a wireRequest as an authorizer
// is told of it; see httpSource.
type wireSource struct {
	r   *wireRequest
	req *policy.Request
	tls bool
}

// AuthorizerRequest implements decision.Source.
func (s *wireSource) AuthorizerRequest(string) *authorizer.Request {
	return authorizerRequest(s.r.header(), s.tls, s.req)
}

// wireAnswer is the answer Server writes.
type wireAnswer struct{ ctx *fasthttp.RequestCtx }

func (a wireAnswer) add(name, value string) {
	if name == "Content-Length" {
		return // fasthttp writes it from the body
	}
	a.ctx.Response.Header.Add(name, value)
}

func (a wireAnswer) send(status int, body []byte) {
	a.ctx.SetStatusCode(status)
	if len(body) > 0 {
		a.ctx.SetBody(body)
	}
}
