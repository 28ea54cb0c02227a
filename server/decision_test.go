package server_test

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/corsauthz/corsauthz/policy"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
	"github.com/corsauthz/corsauthz/server"
)

// sameDecisionCases are requests asked both through ext_authz Check and
// through the decision API's Decide; the answers must be the same.
var sameDecisionCases = []struct {
	desc string
	req  *corsauthzv1.DecideRequest
}{
	{desc: "no Origin", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "api.example.com", Path: "/v1/x"}},
	{desc: "no Origin, reject_disallowed_origins", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "strict.example.com", Path: "/"}},
	{desc: "no Origin, * policy", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "open.example.com", Path: "/"}},
	{desc: "no Origin, report only", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "shadow.example.com", Path: "/"}},
	{desc: "no Origin, no policy", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "other.example.com", Path: "/"}},
	{desc: "no Origin, OPTIONS with a request method", req: &corsauthzv1.DecideRequest{Method: "OPTIONS", Host: "api.example.com", Path: "/", AccessControlRequestMethod: "PUT"}},
	{desc: "empty Origin", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "api.example.com", Path: "/", OriginPresent: true}},
	{desc: "empty Origin, reject_disallowed_origins", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "strict.example.com", Path: "/", OriginPresent: true}},
	{desc: "empty Origin, * policy", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "open.example.com", Path: "/", OriginPresent: true}},
	{desc: "empty Origin, preflight", req: &corsauthzv1.DecideRequest{Method: "OPTIONS", Host: "api.example.com", Path: "/", OriginPresent: true, AccessControlRequestMethod: "PUT"}},
	{desc: "group, app", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "shared.example.com", Path: "/v1/x", Origin: "https://app.example.com"}},
	{desc: "group, partner", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "shared.example.com", Path: "/v1", Origin: "https://partner.example.net"}},
	{desc: "group, no Origin", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "shared.example.com", Path: "/v1"}},
	{desc: "named group, partner", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "other.example.com", Path: "/", Origin: "https://partner.example.net", Policy: "app,partners"}},
	{desc: "segment boundary", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "shared.example.com", Path: "/v1x", Origin: "https://app.example.com"}},
	{desc: "no policy for the host", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "other.example.com", Path: "/", Origin: "https://app.example.com"}},
	{desc: "actual, allowed", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "api.example.com", Path: "/v1/x", Origin: "https://app.example.com"}},
	{desc: "actual, wildcard origin", req: &corsauthzv1.DecideRequest{Method: "POST", Host: "api.example.com", Path: "/v1/x", Origin: "https://pr-1.preview.example.com"}},
	{desc: "actual, origin not allowed", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "api.example.com", Path: "/v1/x", Origin: "https://evil.example.net"}},
	{desc: "actual, origin rejected with 403", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "strict.example.com", Path: "/", Origin: "https://evil.example.net"}},
	{desc: "actual, report only", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "shadow.example.com", Path: "/", Origin: "https://evil.example.net"}},
	{desc: "preflight, allowed", req: &corsauthzv1.DecideRequest{Method: "OPTIONS", Host: "api.example.com", Path: "/v1/x", Origin: "https://app.example.com", AccessControlRequestMethod: "PUT", AccessControlRequestHeaders: "content-type,authorization"}},
	{desc: "preflight, private network", req: &corsauthzv1.DecideRequest{Method: "OPTIONS", Host: "api.example.com", Path: "/v1/x", Origin: "https://app.example.com", AccessControlRequestMethod: "GET", AccessControlRequestPrivateNetwork: "true"}},
	{desc: "preflight, method not allowed", req: &corsauthzv1.DecideRequest{Method: "OPTIONS", Host: "api.example.com", Path: "/v1/x", Origin: "https://app.example.com", AccessControlRequestMethod: "PATCH"}},
	{desc: "preflight, header not allowed", req: &corsauthzv1.DecideRequest{Method: "OPTIONS", Host: "api.example.com", Path: "/v1/x", Origin: "https://app.example.com", AccessControlRequestMethod: "PUT", AccessControlRequestHeaders: "x-other"}},
	{desc: "preflight, origin not allowed", req: &corsauthzv1.DecideRequest{Method: "OPTIONS", Host: "api.example.com", Path: "/v1/x", Origin: "http://app.example.com", AccessControlRequestMethod: "PUT"}},
	{desc: "preflight, report only", req: &corsauthzv1.DecideRequest{Method: "OPTIONS", Host: "shadow.example.com", Path: "/", Origin: "https://evil.example.net", AccessControlRequestMethod: "PUT"}},
	{desc: "named policy, any origin", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "other.example.com", Path: "/", Origin: "null", Policy: "public"}},
	{desc: "named policy, preflight", req: &corsauthzv1.DecideRequest{Method: "OPTIONS", Host: "other.example.com", Path: "/", Origin: "https://x.test", AccessControlRequestMethod: "GET", Policy: "public"}},
	{desc: "unknown named policy", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "api.example.com", Path: "/", Origin: "https://app.example.com", Policy: "nope"}},
	{desc: "path beyond the limit", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "api.example.com", Path: "/" + strings.Repeat("a", server.MaxPathLen), Origin: "https://app.example.com"}},
}

// asCheckRequest describes req as Envoy would.
func asCheckRequest(req *corsauthzv1.DecideRequest) *authv3.CheckRequest {
	headers := map[string]string{":authority": req.Host, ":method": req.Method, ":path": req.Path}
	for name, v := range map[string]string{
		"origin":                                 req.Origin,
		"access-control-request-method":          req.AccessControlRequestMethod,
		"access-control-request-headers":         req.AccessControlRequestHeaders,
		"access-control-request-private-network": req.AccessControlRequestPrivateNetwork,
	} {
		if v != "" || (name == "origin" && req.OriginPresent) {
			headers[name] = v
		}
	}
	cr := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: req.Method, Host: req.Host, Path: req.Path, Headers: headers},
	}}}
	if req.Policy != "" {
		cr.Attributes.ContextExtensions = map[string]string{server.ContextExtensionPolicy: req.Policy}
	}
	return cr
}

// checkAnswer is what a gateway does with a Check response, in the terms of
// the decision API.
type answer struct {
	code    codes.Code
	action  corsauthzv1.Action
	status  int32
	headers []string // "Name: value (action)"
}

func fromCheck(resp *authv3.CheckResponse, err error) answer {
	if err != nil {
		return answer{code: status.Code(err)}
	}
	a := answer{action: corsauthzv1.Action_ACTION_CONTINUE}
	options := resp.GetOkResponse().GetResponseHeadersToAdd()
	if resp.GetStatus().GetCode() != int32(codes.OK) {
		a.action = corsauthzv1.Action_ACTION_RESPOND
		a.status = int32(resp.GetDeniedResponse().GetStatus().GetCode())
		options = resp.GetDeniedResponse().GetHeaders()
	}
	for _, o := range options {
		action := "replace"
		if o.GetAppendAction() == corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
			action = "append"
		}
		a.headers = append(a.headers, o.GetHeader().GetKey()+": "+o.GetHeader().GetValue()+" ("+action+")")
	}
	return a
}

func fromDecide(resp *corsauthzv1.DecideResponse, err error) answer {
	if err != nil {
		return answer{code: status.Code(err)}
	}
	a := answer{action: resp.GetAction(), status: resp.GetHttpStatus()}
	for _, h := range resp.GetHeaders() {
		action := "replace"
		if h.GetAction() == corsauthzv1.HeaderAction_HEADER_ACTION_APPEND {
			action = "append"
		}
		a.headers = append(a.headers, h.GetName()+": "+h.GetValue()+" ("+action+")")
	}
	return a
}

func TestDecideAgreesWithCheck(t *testing.T) {
	t.Parallel()
	ts := startServer(t, policy.NewHolder(loadEngine(t, testConfig)), server.Options{})
	decisions := corsauthzv1.NewDecisionServiceClient(ts.conn)
	for _, tt := range sameDecisionCases {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			fromC := fromCheck(ts.authz().Check(ctxTimeout(t), asCheckRequest(tt.req)))
			for _, omit := range []bool{false, true} {
				req := proto.CloneOf(tt.req)
				req.OmitReasons = omit
				fromD := fromDecide(decisions.Decide(ctxTimeout(t), req))
				if fromC.code != fromD.code || fromC.action != fromD.action || fromC.status != fromD.status ||
					strings.Join(fromC.headers, "\n") != strings.Join(fromD.headers, "\n") {
					t.Errorf("omit_reasons=%t:\nCheck:  %+v\nDecide: %+v", omit, fromC, fromD)
				}
			}
		})
	}
}

func TestDecideResponse(t *testing.T) {
	t.Parallel()
	e := loadEngine(t, testConfig)
	ts := startServer(t, policy.NewHolder(e), server.Options{})
	decisions := corsauthzv1.NewDecisionServiceClient(ts.conn)

	resp, err := decisions.Decide(ctxTimeout(t), &corsauthzv1.DecideRequest{
		Method: "GET", Host: "api.example.com", Path: "/v1/x", Origin: "https://app.example.com:443",
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetKind() != corsauthzv1.DecisionKind_DECISION_KIND_ACTUAL_NOT_ALLOWED ||
		resp.GetPolicy() != "api" || resp.GetReasonCode() != "origin_not_allowed" ||
		resp.GetClosestAllowedOrigin() != "https://app.example.com" || resp.GetConfigVersion() != e.Hash() {
		t.Errorf("Decide = %v", resp)
	}
	if len(resp.GetReasons()) < 3 || !strings.Contains(strings.Join(resp.GetReasons(), "\n"), "default port 443") {
		t.Errorf("reasons do not say what differs: %q", resp.GetReasons())
	}

	resp, err = decisions.Decide(ctxTimeout(t), &corsauthzv1.DecideRequest{
		Method: "GET", Host: "shadow.example.com", Path: "/", Origin: "https://evil.example.net", OmitReasons: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetKind() != corsauthzv1.DecisionKind_DECISION_KIND_ACTUAL_NOT_ALLOWED || !resp.GetReportOnly() ||
		resp.GetAction() != corsauthzv1.Action_ACTION_CONTINUE || resp.GetHttpStatus() != 0 ||
		len(resp.GetHeaders()) != 0 || len(resp.GetReasons()) != 0 {
		t.Errorf("report-only Decide = %v, want the would-be kind, continue, no headers, no reasons", resp)
	}
}

// TestDecideReasonsForGroups: Decide says which policy of a group decided
// and why.
func TestDecideReasonsForGroups(t *testing.T) {
	t.Parallel()
	ts := startServer(t, policy.NewHolder(loadEngine(t, testConfig)), server.Options{})
	resp, err := corsauthzv1.NewDecisionServiceClient(ts.conn).Decide(ctxTimeout(t), &corsauthzv1.DecideRequest{
		Method: "GET", Host: "shared.example.com", Path: "/v1/orders", Origin: "https://partner.example.net",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`policies "app", "partners" share this match (host "shared.example.com" matches "shared.example.com" and path "/v1/orders" is under "/v1"), so the Origin picks among them`,
		`policy "partners" decides: it is the first of them whose allowed_origins admit origin "https://partner.example.net"`,
	}
	if resp.GetPolicy() != "partners" || len(resp.GetReasons()) < 2 || resp.GetReasons()[0] != want[0] || resp.GetReasons()[1] != want[1] {
		t.Errorf("Decide = policy %q, reasons %q; want partners, %q", resp.GetPolicy(), resp.GetReasons(), want)
	}
}

func TestListPolicies(t *testing.T) {
	t.Parallel()
	e := loadEngine(t, testConfig)
	ts := startServer(t, policy.NewHolder(e), server.Options{})
	resp, err := corsauthzv1.NewDecisionServiceClient(ts.conn).ListPolicies(ctxTimeout(t), &corsauthzv1.ListPoliciesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range resp.GetPolicies() {
		names = append(names, p.GetName())
	}
	if got := strings.Join(names, ","); got != "api,strict,shadow,public,open,app,partners,open-group,open-group-app" {
		t.Errorf("policies = %s", got)
	}
	api := resp.GetPolicies()[0]
	if resp.GetConfigVersion() != e.Hash() || resp.GetSource() != "test.yaml" ||
		strings.Join(api.GetAllowedOrigins(), ",") != "https://app.example.com,https://*.preview.example.com" ||
		!api.GetAllowCredentials() || api.GetMaxAgeSeconds() != 600 || !api.GetAllowPrivateNetwork() ||
		!resp.GetPolicies()[2].GetReportOnly() {
		t.Errorf("ListPolicies = %v", resp)
	}
}
