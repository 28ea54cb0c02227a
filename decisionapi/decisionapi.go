// Package decisionapi serves corsauthz's own decision API
// (corsauthz.v1.DecisionService: Decide and ListPolicies) for gateways
// that do not speak ext_authz, such as the Go middleware in remote mode.
// It reads a DecideRequest into a policy.Request and writes the decision
// core's outcome; it decides nothing itself.
package decisionapi

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corsauthz/corsauthz/decision"
	"github.com/corsauthz/corsauthz/internal/grpcfail"
	"github.com/corsauthz/corsauthz/internal/limits"
	"github.com/corsauthz/corsauthz/internal/tracing"
	"github.com/corsauthz/corsauthz/policy"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
)

// Server serves the project's own decision API
// (corsauthz.v1.DecisionService) for gateways that do not speak ext_authz.
// It decides with the same core as the other front ends, so Decide and
// Check agree on every request; Decide names the authorizer a request
// would be sent to and never asks it.
type Server struct {
	corsauthzv1.UnimplementedDecisionServiceServer

	core *decision.Core
}

var _ corsauthzv1.DecisionServiceServer = (*Server)(nil)

// New returns a Server deciding with core.
func New(core *decision.Core) *Server { return &Server{core: core} }

// Decide implements corsauthzv1.DecisionServiceServer.
func (s *Server) Decide(ctx context.Context, req *corsauthzv1.DecideRequest) (*corsauthzv1.DecideResponse, error) {
	r := policy.Request{
		Method:                req.GetMethod(),
		Host:                  req.GetHost(),
		Path:                  req.GetPath(),
		Policy:                req.GetPolicy(),
		Origin:                req.GetOrigin(),
		OriginPresent:         req.GetOriginPresent(),
		RequestMethod:         req.GetAccessControlRequestMethod(),
		RequestHeaders:        req.GetAccessControlRequestHeaders(),
		RequestPrivateNetwork: req.GetAccessControlRequestPrivateNetwork(),
	}
	if msg := checkSizes(&r); msg != "" {
		f := s.core.Refused(ctx, decision.FrontEndDecisionAPI, msg)
		return nil, grpcfail.Error(f)
	}
	if s.core.Tracing() {
		ctx = tracing.FromMetadata(ctx)
	}
	x, out := s.core.Explain(ctx, decision.FrontEndDecisionAPI, &r, req.GetOmitReasons())
	if out.Action == decision.Fail {
		return nil, grpcfail.Error(out.Failure)
	}
	return decideResponse(&out, &x), nil
}

var decisionKinds = map[policy.Kind]corsauthzv1.DecisionKind{
	policy.KindNotCORS:           corsauthzv1.DecisionKind_DECISION_KIND_NOT_CORS,
	policy.KindPreflightAllowed:  corsauthzv1.DecisionKind_DECISION_KIND_PREFLIGHT_ALLOWED,
	policy.KindPreflightRejected: corsauthzv1.DecisionKind_DECISION_KIND_PREFLIGHT_REJECTED,
	policy.KindActualAllowed:     corsauthzv1.DecisionKind_DECISION_KIND_ACTUAL_ALLOWED,
	policy.KindActualDisallowed:  corsauthzv1.DecisionKind_DECISION_KIND_ACTUAL_NOT_ALLOWED,
}

// decideResponse writes the outcome of Explain: the action, status and
// headers every front end writes for it, and the reasons.
func decideResponse(out *decision.Outcome, x *policy.Explanation) *corsauthzv1.DecideResponse {
	d := &out.Decision
	resp := &corsauthzv1.DecideResponse{
		Kind:                 decisionKinds[d.Kind],
		Action:               corsauthzv1.Action_ACTION_CONTINUE,
		Policy:               d.Policy,
		ReportOnly:           d.ReportOnly,
		ReasonCode:           d.Reason.String(),
		Detail:               d.Detail,
		Reasons:              x.Reasons,
		ClosestAllowedOrigin: x.ClosestOrigin,
		ConfigVersion:        out.Engine.Hash(),
		Authorizer:           out.Authorizer,
	}
	if out.Action == decision.Respond {
		resp.Action = corsauthzv1.Action_ACTION_RESPOND
		resp.HttpStatus = int32(out.Status)
	}
	var buf [policy.MaxHeaders]policy.Header
	for _, h := range out.AppendHeaders(buf[:0]) {
		action := corsauthzv1.HeaderAction_HEADER_ACTION_REPLACE
		if h.Append {
			action = corsauthzv1.HeaderAction_HEADER_ACTION_APPEND
		}
		resp.Headers = append(resp.Headers, &corsauthzv1.Header{Name: h.Name, Value: h.Value, Action: action})
	}
	return resp
}

// ListPolicies implements corsauthzv1.DecisionServiceServer.
func (s *Server) ListPolicies(ctx context.Context, _ *corsauthzv1.ListPoliciesRequest) (*corsauthzv1.ListPoliciesResponse, error) {
	e := s.core.Engine()
	if e == nil {
		return nil, status.Error(codes.Unavailable, decision.ErrNoConfiguration.Error())
	}
	cfg := e.Config()
	resp := &corsauthzv1.ListPoliciesResponse{
		ConfigVersion: e.Hash(),
		Source:        e.Source(),
		DefaultPolicy: cfg.DefaultPolicy,
	}
	for _, p := range cfg.Policies {
		resp.Policies = append(resp.Policies, &corsauthzv1.PolicySummary{
			Name:                    p.Name,
			Hosts:                   p.Match.Hosts,
			PathPrefixes:            p.Match.PathPrefixes,
			AllowedOrigins:          p.AllowedOrigins,
			AllowedMethods:          p.AllowedMethods,
			AllowedHeaders:          p.AllowedHeaders,
			ExposedHeaders:          p.ExposedHeaders,
			AllowCredentials:        p.AllowCredentials,
			MaxAgeSeconds:           int32(p.MaxAgeInSeconds),
			AllowPrivateNetwork:     p.AllowPrivateNetwork,
			RejectDisallowedOrigins: p.RejectDisallowedOrigins,
			ReportOnly:              p.ReportOnly,
			Authorizer:              p.Authorizer,
		})
	}
	return resp, nil
}

// checkSizes returns "" or a message naming the first value of r past the
// limits: those of a CheckRequest for method, host and path, and
// limits.HeaderValueLen for the others.
func checkSizes(r *policy.Request) string {
	if msg := limits.CheckRequestLine("", len(r.Method), len(r.Host), len(r.Path)); msg != "" {
		return msg
	}
	for _, f := range [...]struct {
		name  string
		value string
	}{
		{"origin", r.Origin},
		{"access_control_request_method", r.RequestMethod},
		{"access_control_request_headers", r.RequestHeaders},
		{"access_control_request_private_network", r.RequestPrivateNetwork},
		{"policy", r.Policy},
	} {
		if msg := limits.TooLong("", f.name, len(f.value), limits.HeaderValueLen); msg != "" {
			return msg
		}
	}
	return ""
}
