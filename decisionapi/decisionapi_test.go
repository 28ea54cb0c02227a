package decisionapi_test

import (
	"strings"
	"testing"

	th "github.com/corsauthz/corsauthz/internal/testharness"

	"github.com/corsauthz/corsauthz/policy"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
	"github.com/corsauthz/corsauthz/server"
)

func TestDecideResponse(t *testing.T) {
	t.Parallel()
	e := th.LoadEngine(t, th.Config)
	ts := th.StartServer(t, policy.NewHolder(e), server.Options{})
	decisions := corsauthzv1.NewDecisionServiceClient(ts.Conn)

	resp, err := decisions.Decide(th.CtxTimeout(t), &corsauthzv1.DecideRequest{
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

	resp, err = decisions.Decide(th.CtxTimeout(t), &corsauthzv1.DecideRequest{
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
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{})
	resp, err := corsauthzv1.NewDecisionServiceClient(ts.Conn).Decide(th.CtxTimeout(t), &corsauthzv1.DecideRequest{
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
	e := th.LoadEngine(t, th.Config)
	ts := th.StartServer(t, policy.NewHolder(e), server.Options{})
	resp, err := corsauthzv1.NewDecisionServiceClient(ts.Conn).ListPolicies(th.CtxTimeout(t), &corsauthzv1.ListPoliciesRequest{})
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
