package e2e

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestApplyHeaders pins the gateway's header mutations to Envoy's, since
// the browser tests trust them: a gateway that appended where Envoy
// overwrites would hide a service bug, or invent one.
func TestApplyHeaders(t *testing.T) {
	t.Parallel()
	opt := func(key, value string, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: key, Value: value}, AppendAction: action}
	}
	deprecated := func(key, value string, appendValue bool) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: key, Value: value}, Append: wrapperspb.Bool(appendValue)}
	}
	const (
		appendOrAdd    = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
		addIfAbsent    = corev3.HeaderValueOption_ADD_IF_ABSENT
		overwriteOrAdd = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		overwriteIf    = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS
	)
	tests := []struct {
		desc   string
		before http.Header
		opts   []*corev3.HeaderValueOption
		want   http.Header
	}{
		{
			desc:   "APPEND_IF_EXISTS_OR_ADD adds a header line to an existing header",
			before: http.Header{"Vary": {"Accept-Encoding"}},
			opts:   []*corev3.HeaderValueOption{opt("vary", "Origin", appendOrAdd)},
			want:   http.Header{"Vary": {"Accept-Encoding", "Origin"}},
		},
		{
			desc:   "APPEND_IF_EXISTS_OR_ADD adds an absent header",
			before: http.Header{},
			opts:   []*corev3.HeaderValueOption{opt("Vary", "Origin", appendOrAdd)},
			want:   http.Header{"Vary": {"Origin"}},
		},
		{
			desc:   "ADD_IF_ABSENT leaves an existing header alone",
			before: http.Header{"Access-Control-Allow-Origin": {"https://a.example"}},
			opts:   []*corev3.HeaderValueOption{opt("Access-Control-Allow-Origin", "https://b.example", addIfAbsent)},
			want:   http.Header{"Access-Control-Allow-Origin": {"https://a.example"}},
		},
		{
			desc:   "ADD_IF_ABSENT adds an absent header",
			before: http.Header{},
			opts:   []*corev3.HeaderValueOption{opt("Access-Control-Allow-Origin", "https://b.example", addIfAbsent)},
			want:   http.Header{"Access-Control-Allow-Origin": {"https://b.example"}},
		},
		{
			desc:   "OVERWRITE_IF_EXISTS_OR_ADD replaces every existing value",
			before: http.Header{"Access-Control-Allow-Origin": {"https://a.example", "https://c.example"}},
			opts:   []*corev3.HeaderValueOption{opt("access-control-allow-origin", "https://b.example", overwriteOrAdd)},
			want:   http.Header{"Access-Control-Allow-Origin": {"https://b.example"}},
		},
		{
			desc:   "OVERWRITE_IF_EXISTS_OR_ADD adds an absent header",
			before: http.Header{},
			opts:   []*corev3.HeaderValueOption{opt("Access-Control-Max-Age", "600", overwriteOrAdd)},
			want:   http.Header{"Access-Control-Max-Age": {"600"}},
		},
		{
			desc:   "OVERWRITE_IF_EXISTS replaces an existing header",
			before: http.Header{"Access-Control-Max-Age": {"5"}},
			opts:   []*corev3.HeaderValueOption{opt("Access-Control-Max-Age", "600", overwriteIf)},
			want:   http.Header{"Access-Control-Max-Age": {"600"}},
		},
		{
			desc:   "OVERWRITE_IF_EXISTS does not add an absent header",
			before: http.Header{},
			opts:   []*corev3.HeaderValueOption{opt("Access-Control-Max-Age", "600", overwriteIf)},
			want:   http.Header{},
		},
		{
			desc:   "raw_value wins over value",
			before: http.Header{},
			opts: []*corev3.HeaderValueOption{{
				Header:       &corev3.HeaderValue{Key: "X-Raw", Value: "ignored", RawValue: []byte("raw")},
				AppendAction: overwriteOrAdd,
			}},
			want: http.Header{"X-Raw": {"raw"}},
		},
		{
			desc:   "deprecated append true joins onto the existing entry with a comma",
			before: http.Header{"Vary": {"Accept-Encoding"}},
			opts:   []*corev3.HeaderValueOption{deprecated("Vary", "Origin", true)},
			want:   http.Header{"Vary": {"Accept-Encoding,Origin"}},
		},
		{
			desc:   "deprecated append false overwrites, whatever append_action says",
			before: http.Header{"Vary": {"Accept-Encoding"}},
			opts: []*corev3.HeaderValueOption{{
				Header:       &corev3.HeaderValue{Key: "Vary", Value: "Origin"},
				Append:       wrapperspb.Bool(false),
				AppendAction: appendOrAdd,
			}},
			want: http.Header{"Vary": {"Origin"}},
		},
		{
			desc:   "options apply in order",
			before: http.Header{"Vary": {"Accept-Encoding"}, "Access-Control-Allow-Origin": {"*"}},
			opts: []*corev3.HeaderValueOption{
				opt("Access-Control-Allow-Origin", "https://app.example", overwriteOrAdd),
				opt("Access-Control-Allow-Credentials", "true", overwriteOrAdd),
				opt("Vary", "Origin", appendOrAdd),
			},
			want: http.Header{
				"Vary":                             {"Accept-Encoding", "Origin"},
				"Access-Control-Allow-Origin":      {"https://app.example"},
				"Access-Control-Allow-Credentials": {"true"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			h := tc.before.Clone()
			applyHeaders(h, tc.opts)
			if !reflect.DeepEqual(h, tc.want) {
				t.Errorf("got %v, want %v", h, tc.want)
			}
		})
	}
}

// TestCheckRequest pins the CheckRequest the gateway builds to the one
// Envoy sends for the same HTTP/1.1 request.
func TestCheckRequest(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest("OPTIONS", "http://api.example.com:8080/v1/orders?id=7", nil)
	r.Header.Set("Origin", "https://app.example.com")
	r.Header.Set("Access-Control-Request-Method", "PUT")
	r.Header.Add("Access-Control-Request-Headers", "x-a")
	r.Header.Add("Access-Control-Request-Headers", "x-b")
	g := &gateway{}
	ext := map[string]string{"cors_policy": "orders"}
	h := g.checkRequest(r, ext).GetAttributes().GetRequest().GetHttp()

	if h.GetMethod() != "OPTIONS" || h.GetHost() != "api.example.com:8080" || h.GetPath() != "/v1/orders?id=7" ||
		h.GetScheme() != "http" || h.GetProtocol() != "HTTP/1.1" || h.GetId() == "" {
		t.Errorf("method, host, path, scheme, protocol, id = %q, %q, %q, %q, %q, %q",
			h.GetMethod(), h.GetHost(), h.GetPath(), h.GetScheme(), h.GetProtocol(), h.GetId())
	}
	want := map[string]string{
		":authority":                     "api.example.com:8080",
		":method":                        "OPTIONS",
		":path":                          "/v1/orders?id=7",
		":scheme":                        "http",
		"origin":                         "https://app.example.com",
		"access-control-request-method":  "PUT",
		"access-control-request-headers": "x-a,x-b",
	}
	for k, v := range want {
		if got := h.GetHeaders()[k]; got != v {
			t.Errorf("headers[%q] = %q, want %q", k, got, v)
		}
	}
	for k := range h.GetHeaders() {
		if k != strings.ToLower(k) {
			t.Errorf("header key %q is not lower case", k)
		}
	}
	if got := g.checkRequest(r, ext).GetAttributes().GetContextExtensions(); !reflect.DeepEqual(got, ext) {
		t.Errorf("context_extensions = %v, want %v", got, ext)
	}
}

// TestSharedCache pins the test cache to RFC 9111's use of Vary, which the
// cache scenarios rely on: a stored answer is reused only for requests
// with the same values of the headers its Vary names.
func TestSharedCache(t *testing.T) {
	t.Parallel()
	req := func(origin string) *http.Request {
		r := httptest.NewRequest("GET", "http://api.test/cacheable/x", nil)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		return r
	}
	public := func(vary ...string) http.Header {
		h := http.Header{"Cache-Control": {"public, max-age=300"}}
		for _, v := range vary {
			h.Add("Vary", v)
		}
		return h
	}
	tests := []struct {
		desc       string
		stored     http.Header
		ignoreVary bool
		lookup     string // the later request's Origin
		hit        bool
	}{
		{desc: "Vary: Origin keeps an answer without Origin from a CORS request", stored: public("Origin"), lookup: "https://app.test"},
		{desc: "Vary: Origin serves the same absence of Origin", stored: public("Origin"), lookup: "", hit: true},
		{desc: "Vary listing several names, Origin among them", stored: public("Accept-Encoding, origin"), lookup: "https://app.test"},
		{desc: "no Vary: any request gets the stored answer", stored: public(), lookup: "https://app.test", hit: true},
		{desc: "a cache ignoring Vary serves it anyway", stored: public("Origin"), ignoreVary: true, lookup: "https://app.test", hit: true},
		{desc: "Vary: * is never reused", stored: public("*"), lookup: "", hit: false},
		{desc: "not public: not stored", stored: http.Header{"Cache-Control": {"max-age=300"}}, lookup: ""},
	}
	for _, tc := range tests {
		var c sharedCache
		c.store(req(""), http.StatusOK, tc.stored, []byte("body"), tc.ignoreVary)
		if _, hit := c.lookup(req(tc.lookup), tc.ignoreVary); hit != tc.hit {
			t.Errorf("%s: hit = %t, want %t", tc.desc, hit, tc.hit)
		}
	}
}
