package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

const (
	app           = "https://app.example.com"
	evil          = "https://evil.example"
	varyPreflight = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
)

// checkCases are the decisions the ext_authz mapping must render, each
// with the exact CheckResponse Envoy gets (contract §5).
var checkCases = []struct {
	desc string
	req  *authv3.CheckRequest
	want *authv3.CheckResponse
}{{
	desc: "no Origin, a policy with credentials: pass on with Vary: Origin, for caches",
	req:  checkRequest("GET", "api.example.com", "/v1/orders", hdrs{"accept": "*/*"}, ""),
	want: okResponse(appendTo("Vary", "Origin")),
}, {
	desc: "no Origin, a reject_disallowed_origins policy: pass on with Vary: Origin",
	req:  checkRequest("POST", "strict.example.com", "/", nil, ""),
	want: okResponse(appendTo("Vary", "Origin")),
}, {
	desc: "no Origin, a * policy without credentials: Access-Control-Allow-Origin: * and Expose-Headers, no Vary",
	req:  checkRequest("GET", "open.example.com", "/", hdrs{"accept": "*/*"}, ""),
	want: okResponse(set("Access-Control-Allow-Origin", "*"), set("Access-Control-Expose-Headers", "X-Total")),
}, {
	desc: "no Origin, a * policy named by cors_policy: Access-Control-Allow-Origin: *",
	req:  checkRequest("GET", "api.example.com", "/", nil, "public"),
	want: okResponse(set("Access-Control-Allow-Origin", "*")),
}, {
	desc: "no Origin, a report_only policy: pass on untouched",
	req:  checkRequest("GET", "shadow.example.com", "/", nil, ""),
	want: okResponse(),
}, {
	desc: "no Origin, no policy: pass on untouched",
	req:  checkRequest("GET", "other.example.com", "/", hdrs{"accept": "*/*"}, ""),
	want: okResponse(),
}, {
	desc: "OPTIONS with Access-Control-Request-Method but no Origin: not a preflight, Vary: Origin",
	req:  checkRequest("OPTIONS", "api.example.com", "/", hdrs{"access-control-request-method": "PUT"}, ""),
	want: okResponse(appendTo("Vary", "Origin")),
}, {
	desc: "empty Origin: a CORS request matching no listed origin",
	req:  checkRequest("GET", "api.example.com", "/v1/orders", hdrs{"origin": ""}, ""),
	want: okResponse(appendTo("Vary", "Origin")),
}, {
	desc: "empty Origin, reject_disallowed_origins: 403",
	req:  checkRequest("GET", "strict.example.com", "/", hdrs{"origin": ""}, ""),
	want: deniedResponse(403, appendTo("Vary", "Origin")),
}, {
	desc: "empty Origin, a * policy: Access-Control-Allow-Origin: *",
	req:  checkRequest("GET", "open.example.com", "/", hdrs{"origin": ""}, ""),
	want: okResponse(set("Access-Control-Allow-Origin", "*"), set("Access-Control-Expose-Headers", "X-Total")),
}, {
	desc: "empty Origin, a preflight: 403",
	req:  checkRequest("OPTIONS", "api.example.com", "/", hdrs{"origin": "", "access-control-request-method": "PUT"}, ""),
	want: deniedResponse(403, appendTo("Vary", varyPreflight)),
}, {
	desc: "header_map: empty Origin is present",
	req:  rawCheckRequest("GET", "strict.example.com", "/", [][2]string{{"Origin", ""}}),
	want: deniedResponse(403, appendTo("Vary", "Origin")),
}, {
	desc: "header_map: no Origin, a * policy",
	req:  rawCheckRequest("GET", "open.example.com", "/", [][2]string{{"accept", "*/*"}}),
	want: okResponse(set("Access-Control-Allow-Origin", "*"), set("Access-Control-Expose-Headers", "X-Total")),
}, {
	desc: "a group: the app's origin picks the app's policy, with credentials",
	req:  checkRequest("GET", "shared.example.com", "/v1/orders", hdrs{"origin": app}, ""),
	want: okResponse(set("Access-Control-Allow-Origin", app), set("Access-Control-Allow-Credentials", "true"), appendTo("Vary", "Origin")),
}, {
	desc: "a group: a partner's origin picks the partners' policy, without credentials",
	req:  checkRequest("GET", "shared.example.com", "/v1?x=1", hdrs{"origin": "https://partner.example.net"}, ""),
	want: okResponse(set("Access-Control-Allow-Origin", "https://partner.example.net"), appendTo("Vary", "Origin")),
}, {
	desc: "a group: an origin neither admits: the first decides",
	req:  checkRequest("GET", "shared.example.com", "/v1/orders", hdrs{"origin": evil}, ""),
	want: okResponse(appendTo("Vary", "Origin")),
}, {
	desc: "a group: no Origin: Vary: Origin",
	req:  checkRequest("GET", "shared.example.com", "/v1/orders", nil, ""),
	want: okResponse(appendTo("Vary", "Origin")),
}, {
	desc: "a group whose first is *, no Origin: * and Vary: Origin, as another origin may get the other policy",
	req:  checkRequest("GET", "open.example.com", "/g/x", nil, ""),
	want: okResponse(set("Access-Control-Allow-Origin", "*"), appendTo("Vary", "Origin")),
}, {
	desc: "the same * policy named alone, no Origin: * without Vary (its own shared answer, not the group's)",
	req:  checkRequest("GET", "other.example.com", "/", nil, "open-group"),
	want: okResponse(set("Access-Control-Allow-Origin", "*")),
}, {
	desc: "a group whose first is *: the app's origin is admitted by * first",
	req:  checkRequest("GET", "open.example.com", "/g", hdrs{"origin": app}, ""),
	want: okResponse(set("Access-Control-Allow-Origin", "*"), appendTo("Vary", "Origin")),
}, {
	desc: "the same * policy named alone, an origin: * without Vary",
	req:  checkRequest("GET", "other.example.com", "/", hdrs{"origin": app}, "open-group"),
	want: okResponse(set("Access-Control-Allow-Origin", "*")),
}, {
	desc: "segment boundary: /v1 does not select /v10",
	req:  checkRequest("GET", "shared.example.com", "/v10", hdrs{"origin": app}, ""),
	want: okResponse(),
}, {
	desc: "cors_policy naming a group: the Origin picks",
	req:  checkRequest("GET", "other.example.com", "/", hdrs{"origin": "https://partner.example.net"}, "app, partners"),
	want: okResponse(set("Access-Control-Allow-Origin", "https://partner.example.net"), appendTo("Vary", "Origin")),
}, {
	desc: "cors_policy naming a group, no Origin: Vary: Origin",
	req:  checkRequest("GET", "other.example.com", "/", nil, "app,partners"),
	want: okResponse(appendTo("Vary", "Origin")),
}, {
	desc: "no policy for the host: pass on, no headers",
	req:  checkRequest("GET", "other.example.com", "/", hdrs{"origin": app}, ""),
	want: okResponse(),
}, {
	desc: "allowed actual request",
	req:  checkRequest("GET", "api.example.com", "/v1/orders?id=1", hdrs{"origin": app}, ""),
	want: okResponse(
		set("Access-Control-Allow-Origin", app),
		set("Access-Control-Allow-Credentials", "true"),
		set("Access-Control-Expose-Headers", "X-Request-Id"),
		appendTo("Vary", "Origin"),
	),
}, {
	desc: "allowed actual request from a wildcard origin, host with port",
	req:  checkRequest("POST", "api.example.com:443", "/v1/orders", hdrs{"origin": "https://pr-7.preview.example.com"}, ""),
	want: okResponse(
		set("Access-Control-Allow-Origin", "https://pr-7.preview.example.com"),
		set("Access-Control-Allow-Credentials", "true"),
		set("Access-Control-Expose-Headers", "X-Request-Id"),
		appendTo("Vary", "Origin"),
	),
}, {
	desc: "OPTIONS without Access-Control-Request-Method is an actual request",
	req:  checkRequest("OPTIONS", "api.example.com", "/v1/orders", hdrs{"origin": app}, ""),
	want: okResponse(
		set("Access-Control-Allow-Origin", app),
		set("Access-Control-Allow-Credentials", "true"),
		set("Access-Control-Expose-Headers", "X-Request-Id"),
		appendTo("Vary", "Origin"),
	),
}, {
	desc: "disallowed actual request: only Vary",
	req:  checkRequest("GET", "api.example.com", "/v1/orders", hdrs{"origin": evil}, ""),
	want: okResponse(appendTo("Vary", "Origin")),
}, {
	desc: "allowed preflight: 204 with the headers",
	req: checkRequest("OPTIONS", "api.example.com", "/v1/orders", hdrs{
		"origin":                         app,
		"access-control-request-method":  "PUT",
		"access-control-request-headers": "authorization,content-type",
	}, ""),
	want: deniedResponse(204,
		set("Access-Control-Allow-Origin", app),
		set("Access-Control-Allow-Methods", "PUT"),
		set("Access-Control-Allow-Headers", "authorization,content-type"),
		set("Access-Control-Allow-Credentials", "true"),
		set("Access-Control-Max-Age", "600"),
		appendTo("Vary", varyPreflight),
	),
}, {
	desc: "allowed preflight asking for private-network access",
	req: checkRequest("OPTIONS", "api.example.com", "/v1/orders", hdrs{
		"origin":                                 app,
		"access-control-request-method":          "DELETE",
		"access-control-request-private-network": "true",
	}, ""),
	want: deniedResponse(204,
		set("Access-Control-Allow-Origin", app),
		set("Access-Control-Allow-Methods", "DELETE"),
		set("Access-Control-Allow-Credentials", "true"),
		set("Access-Control-Max-Age", "600"),
		set("Access-Control-Allow-Private-Network", "true"),
		appendTo("Vary", varyPreflight),
	),
}, {
	desc: "preflight with a method not allowed: 403, only Vary",
	req: checkRequest("OPTIONS", "api.example.com", "/v1/orders", hdrs{
		"origin":                        app,
		"access-control-request-method": "PATCH",
	}, ""),
	want: deniedResponse(403, appendTo("Vary", varyPreflight)),
}, {
	desc: "preflight with a header not allowed: 403, only Vary",
	req: checkRequest("OPTIONS", "api.example.com", "/v1/orders", hdrs{
		"origin":                         app,
		"access-control-request-method":  "PUT",
		"access-control-request-headers": "content-type,x-debug",
	}, ""),
	want: deniedResponse(403, appendTo("Vary", varyPreflight)),
}, {
	desc: "preflight from a disallowed origin: 403, only Vary",
	req: checkRequest("OPTIONS", "api.example.com", "/v1/orders", hdrs{
		"origin":                        evil,
		"access-control-request-method": "GET",
	}, ""),
	want: deniedResponse(403, appendTo("Vary", varyPreflight)),
}, {
	desc: "reject_disallowed_origins: actual request from another origin gets 403",
	req:  checkRequest("POST", "strict.example.com", "/", hdrs{"origin": evil}, ""),
	want: deniedResponse(403, appendTo("Vary", "Origin")),
}, {
	desc: "reject_disallowed_origins: allowed origin passes on",
	req:  checkRequest("POST", "strict.example.com", "/", hdrs{"origin": app}, ""),
	want: okResponse(set("Access-Control-Allow-Origin", app), appendTo("Vary", "Origin")),
}, {
	desc: "report_only: a rejection passes on untouched",
	req:  checkRequest("POST", "shadow.example.com", "/", hdrs{"origin": evil}, ""),
	want: okResponse(),
}, {
	desc: "report_only: an allowed request passes on untouched",
	req:  checkRequest("GET", "shadow.example.com", "/", hdrs{"origin": app}, ""),
	want: okResponse(),
}, {
	desc: "report_only: a preflight passes on untouched",
	req: checkRequest("OPTIONS", "shadow.example.com", "/", hdrs{
		"origin":                        app,
		"access-control-request-method": "GET",
	}, ""),
	want: okResponse(),
}, {
	desc: "cors_policy selects a policy the match rules would not",
	req:  checkRequest("GET", "api.example.com", "/v1/orders", hdrs{"origin": "https://anyone.test"}, "public"),
	want: okResponse(set("Access-Control-Allow-Origin", "*")),
}, {
	desc: "cors_policy overrides the match rules",
	req:  checkRequest("GET", "strict.example.com", "/", hdrs{"origin": evil}, "api"),
	want: okResponse(appendTo("Vary", "Origin")),
}, {
	desc: "cors_policy: preflight on a * policy",
	req: checkRequest("OPTIONS", "files.example.com", "/", hdrs{
		"origin":                        "null",
		"access-control-request-method": "GET",
	}, "public"),
	want: deniedResponse(204,
		set("Access-Control-Allow-Origin", "*"),
		set("Access-Control-Allow-Methods", "GET"),
		appendTo("Vary", varyPreflight),
	),
}, {
	desc: "header_map (encode_raw_headers): allowed preflight, keys in any case",
	req: rawCheckRequest("OPTIONS", "api.example.com", "/v1/orders", [][2]string{
		{":authority", "api.example.com"},
		{"Origin", app},
		{"access-control-request-method", "PUT"},
		{"Access-Control-Request-Headers", "content-type"},
	}),
	want: deniedResponse(204,
		set("Access-Control-Allow-Origin", app),
		set("Access-Control-Allow-Methods", "PUT"),
		set("Access-Control-Allow-Headers", "content-type"),
		set("Access-Control-Allow-Credentials", "true"),
		set("Access-Control-Max-Age", "600"),
		appendTo("Vary", varyPreflight),
	),
}, {
	desc: "header_map: allowed actual request",
	req:  rawCheckRequest("GET", "api.example.com", "/", [][2]string{{"origin", app}}),
	want: okResponse(
		set("Access-Control-Allow-Origin", app),
		set("Access-Control-Allow-Credentials", "true"),
		set("Access-Control-Expose-Headers", "X-Request-Id"),
		appendTo("Vary", "Origin"),
	),
}, {
	desc: "header_map: a repeated Origin is joined, and matches nothing",
	req:  rawCheckRequest("GET", "api.example.com", "/", [][2]string{{"origin", app}, {"origin", app}}),
	want: okResponse(appendTo("Vary", "Origin")),
}, {
	desc: "header_map: an Origin that is not UTF-8 matches nothing",
	req:  rawCheckRequest("GET", "api.example.com", "/", [][2]string{{"origin", "https://app.example.com\xff"}}),
	want: okResponse(appendTo("Vary", "Origin")),
}, {
	desc: "header_map: repeated Access-Control-Request-Headers are joined",
	req: rawCheckRequest("OPTIONS", "api.example.com", "/", [][2]string{
		{"origin", app},
		{"access-control-request-method", "POST"},
		{"access-control-request-headers", "content-type"},
		{"access-control-request-headers", "authorization"},
	}),
	want: deniedResponse(204,
		set("Access-Control-Allow-Origin", app),
		set("Access-Control-Allow-Methods", "POST"),
		set("Access-Control-Allow-Headers", "content-type,authorization"),
		set("Access-Control-Allow-Credentials", "true"),
		set("Access-Control-Max-Age", "600"),
		appendTo("Vary", varyPreflight),
	),
}}

func TestCheck(t *testing.T) {
	t.Parallel()
	ts := startServer(t, policy.NewHolder(loadEngine(t, testConfig)), server.Options{})
	client := ts.authz()
	for _, tc := range checkCases {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			got, err := client.Check(ctxTimeout(t), tc.req)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			assertProtoEqual(t, got, tc.want)
		})
	}
}

func manyHeaders(n int) hdrs {
	h := make(hdrs, n)
	for i := range n {
		h[fmt.Sprintf("x-h%d", i)] = "v"
	}
	return h
}

func manyRawHeaders(n int) *authv3.CheckRequest {
	req := checkRequest("GET", "api.example.com", "/", nil, "")
	hm := &corev3.HeaderMap{}
	for i := range n {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: fmt.Sprintf("x-h%d", i), RawValue: []byte("v")})
	}
	req.Attributes.Request.Http.HeaderMap = hm
	return req
}

const noHTTP = "CheckRequest has no attributes.request.http: corsauthz decides on HTTP requests (use Envoy's HTTP ext_authz filter, envoy.filters.http.ext_authz, not the network filter)"

var checkErrorCases = []struct {
	desc    string
	req     *authv3.CheckRequest
	code    codes.Code
	message string // exact, or with a leading "~" a substring
}{{
	desc:    "empty request",
	req:     &authv3.CheckRequest{},
	code:    codes.InvalidArgument,
	message: noHTTP,
}, {
	desc:    "attributes without request",
	req:     &authv3.CheckRequest{Attributes: &authv3.AttributeContext{}},
	code:    codes.InvalidArgument,
	message: noHTTP,
}, {
	desc: "request without http (network filter)",
	req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request:           &authv3.AttributeContext_Request{},
		ContextExtensions: map[string]string{"cors_policy": "api"},
	}},
	code:    codes.InvalidArgument,
	message: noHTTP,
}, {
	desc:    "cors_policy names no configured policy",
	req:     checkRequest("GET", "api.example.com", "/", hdrs{"origin": app}, "nope"),
	code:    codes.FailedPrecondition,
	message: `~"nope"`,
}, {
	desc:    "cors_policy names no configured policy, even without Origin",
	req:     checkRequest("GET", "api.example.com", "/", nil, "nope"),
	code:    codes.FailedPrecondition,
	message: `~"nope"`,
}, {
	desc:    "method too long",
	req:     checkRequest(strings.Repeat("A", server.MaxMethodLen+1), "api.example.com", "/", hdrs{"origin": app}, ""),
	code:    codes.InvalidArgument,
	message: "attributes.request.http.method is 65 bytes long, more than the limit of 64",
}, {
	desc:    "host too long",
	req:     checkRequest("GET", strings.Repeat("a", server.MaxHostLen+1), "/", hdrs{"origin": app}, ""),
	code:    codes.InvalidArgument,
	message: "attributes.request.http.host is 8193 bytes long, more than the limit of 8192",
}, {
	desc:    "path too long",
	req:     checkRequest("GET", "api.example.com", "/"+strings.Repeat("a", server.MaxPathLen), hdrs{"origin": app}, ""),
	code:    codes.InvalidArgument,
	message: "attributes.request.http.path is 65537 bytes long, more than the limit of 65536",
}, {
	desc:    "too many headers",
	req:     checkRequest("GET", "api.example.com", "/", manyHeaders(server.MaxHeaderCount+1), ""),
	code:    codes.InvalidArgument,
	message: "attributes.request.http.headers has 1001 entries, more than the limit of 1000",
}, {
	desc:    "too many header_map entries",
	req:     manyRawHeaders(server.MaxHeaderCount + 1),
	code:    codes.InvalidArgument,
	message: "attributes.request.http.header_map has 1001 entries, more than the limit of 1000",
}}

func TestCheckErrors(t *testing.T) {
	t.Parallel()
	ts := startServer(t, policy.NewHolder(loadEngine(t, testConfig)), server.Options{})
	client := ts.authz()
	for _, tc := range checkErrorCases {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			resp, err := client.Check(ctxTimeout(t), tc.req)
			if err == nil {
				t.Fatalf("Check returned no error but\n%v", resp)
			}
			st := status.Convert(err)
			if st.Code() != tc.code {
				t.Errorf("code = %v, want %v (message %q)", st.Code(), tc.code, st.Message())
			}
			if sub, ok := strings.CutPrefix(tc.message, "~"); ok {
				if !strings.Contains(st.Message(), sub) {
					t.Errorf("message = %q, want it to contain %q", st.Message(), sub)
				}
			} else if st.Message() != tc.message {
				t.Errorf("message = %q\nwant      %q", st.Message(), tc.message)
			}
		})
	}
}

func TestCheckLogs(t *testing.T) {
	t.Parallel()
	holder := policy.NewHolder(loadEngine(t, testConfig))
	for _, tc := range []struct {
		desc  string
		level slog.Level
		req   *authv3.CheckRequest
		want  string // the log output, with the time left out
	}{{
		desc:  "allowed actual request: nothing at info",
		level: slog.LevelInfo,
		req:   checkRequest("GET", "api.example.com", "/", hdrs{"origin": app}, ""),
		want:  "",
	}, {
		desc:  "allowed actual request at debug",
		level: slog.LevelDebug,
		req:   checkRequest("GET", "api.example.com", "/v1/orders?token=secret", hdrs{"origin": app, "authorization": "Bearer secret"}, ""),
		want:  `level=DEBUG msg="cors decision" policy=api kind=actual_allowed reason=origin_allowed detail="" status=0 report_only=false origin=https://app.example.com method=GET host=api.example.com path=/v1/orders` + "\n",
	}, {
		desc:  "rejected preflight at info",
		level: slog.LevelInfo,
		req:   checkRequest("OPTIONS", "api.example.com", "/", hdrs{"origin": app, "access-control-request-method": "PATCH"}, ""),
		want:  `level=INFO msg="preflight rejected" policy=api kind=preflight_rejected reason=method_not_allowed detail=PATCH status=403 report_only=false origin=https://app.example.com method=OPTIONS host=api.example.com path=/` + "\n",
	}, {
		desc:  "disallowed origin at info, report-only",
		level: slog.LevelInfo,
		req:   checkRequest("GET", "shadow.example.com", "/", hdrs{"origin": evil}, ""),
		want:  `level=INFO msg="origin not allowed" policy=shadow kind=actual_disallowed reason=origin_not_allowed detail="" status=403 report_only=true origin=https://evil.example method=GET host=shadow.example.com path=/` + "\n",
	}, {
		desc:  "a group's decision names the group",
		level: slog.LevelInfo,
		req:   checkRequest("GET", "shared.example.com", "/v1/orders", hdrs{"origin": evil}, ""),
		want:  `level=INFO msg="origin not allowed" policy=app kind=actual_disallowed reason=origin_not_allowed detail="" status=0 report_only=false origin=https://evil.example method=GET host=shared.example.com path=/v1/orders group="app, partners"` + "\n",
	}, {
		desc:  "no Origin at debug",
		level: slog.LevelDebug,
		req:   checkRequest("GET", "open.example.com", "/", nil, ""),
		want:  `level=DEBUG msg="cors decision" policy=open kind=not_cors reason=no_origin detail="" status=0 report_only=false origin="" method=GET host=open.example.com path=/` + "\n",
	}, {
		desc:  "unreadable request",
		level: slog.LevelInfo,
		req:   &authv3.CheckRequest{},
		want:  `level=WARN msg="check refused: unreadable request" error="` + strings.ReplaceAll(noHTTP, `"`, `\"`) + `"` + "\n",
	}} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
				Level: tc.level,
				ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey && len(groups) == 0 {
						return slog.Attr{}
					}
					return a
				},
			}))
			a := server.NewAuthz(holder, logger, nil)
			_, _ = a.Check(context.Background(), tc.req)
			if got := buf.String(); got != tc.want {
				t.Errorf("log:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestCheckUnknownPolicyLogs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	engine := loadEngine(t, testConfig)
	a := server.NewAuthz(policy.NewHolder(engine), logger, nil)
	_, err := a.Check(context.Background(), checkRequest("GET", "api.example.com", "/", nil, "nope"))
	var rec struct {
		Level, Msg, Error string
		ConfigHash        string `json:"config_hash"`
	}
	if jerr := json.Unmarshal(buf.Bytes(), &rec); jerr != nil {
		t.Fatalf("log %q: %v", buf.String(), jerr)
	}
	want := status.Convert(err).Message()
	if rec.Level != "ERROR" || rec.Msg != "check refused: configuration mismatch" || rec.Error != want || rec.ConfigHash != engine.Hash() {
		t.Errorf("log record = %+v, want an ERROR with error %q and the config hash", rec, want)
	}
}

func TestCheckWithoutEngine(t *testing.T) {
	t.Parallel()
	a := server.NewAuthz(policy.NewHolder(nil), nil, nil)
	_, err := a.Check(context.Background(), checkRequest("GET", "api.example.com", "/", hdrs{"origin": app}, ""))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Check without an engine: err = %v, want code Unavailable", err)
	}
}

// FuzzCheck feeds Check arbitrary CheckRequests: it must never panic, and
// must answer with either a well-formed decision or a non-OK status.
func FuzzCheck(f *testing.F) {
	for _, tc := range checkCases {
		data, err := proto.Marshal(tc.req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, tc := range checkErrorCases[:5] { // the small ones
		data, err := proto.Marshal(tc.req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	a := server.NewAuthz(policy.NewHolder(loadEngine(f, testConfig)), nil, server.NewMetrics(nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &authv3.CheckRequest{}
		if err := proto.Unmarshal(data, req); err != nil {
			t.Skip()
		}
		resp, err := a.Check(context.Background(), req)
		if err != nil {
			if resp != nil {
				t.Errorf("Check returned both a response and an error (%v)", err)
			}
			switch status.Code(err) {
			case codes.InvalidArgument, codes.FailedPrecondition:
			default:
				t.Errorf("Check error %v: want InvalidArgument or FailedPrecondition", err)
			}
			return
		}
		if _, err := proto.Marshal(resp); err != nil {
			t.Fatalf("response does not marshal: %v", err)
		}
		switch codes.Code(resp.GetStatus().GetCode()) {
		case codes.OK:
			if resp.GetOkResponse() == nil {
				t.Errorf("OK response without ok_response: %v", resp)
			}
		case codes.PermissionDenied:
			switch resp.GetDeniedResponse().GetStatus().GetCode() {
			case 204, 403:
			default:
				t.Errorf("denied response with HTTP status other than 204 or 403: %v", resp)
			}
			if resp.GetDeniedResponse().GetBody() != "" {
				t.Errorf("denied response with a body: %v", resp)
			}
		default:
			t.Errorf("response with status %v: %v", resp.GetStatus(), resp)
		}
	})
}

func BenchmarkCheck(b *testing.B) {
	a := server.NewAuthz(policy.NewHolder(loadEngine(b, testConfig)), nil, server.NewMetrics(nil))
	for _, bc := range []struct {
		desc string
		req  *authv3.CheckRequest
	}{
		{"no_origin", checkRequest("GET", "api.example.com", "/v1/orders", hdrs{"accept": "*/*"}, "")},
		{"actual", checkRequest("GET", "api.example.com", "/v1/orders", hdrs{"origin": app}, "")},
		{"preflight", checkRequest("OPTIONS", "api.example.com", "/v1/orders", hdrs{
			"origin":                         app,
			"access-control-request-method":  "PUT",
			"access-control-request-headers": "authorization,content-type",
		}, "")},
	} {
		b.Run(bc.desc, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Check(ctx, bc.req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
