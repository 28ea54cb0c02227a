package server

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corsauthz/corsauthz/policy"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
)

// Decisions serves the project's own decision API (corsauthz.v1.DecisionService)
// for gateways that do not speak ext_authz. It decides with the same engine
// as Authz, so Decide and Check agree on every request.
type Decisions struct {
	corsauthzv1.UnimplementedDecisionServiceServer

	engines *policy.Holder
	logger  *slog.Logger
	metrics *Metrics
	// logs writes the decision log lines, as Check's: the same lines, at
	// the same levels, under the same rate limits when shared with the
	// server's Authz.
	logs *Authz
}

var _ corsauthzv1.DecisionServiceServer = (*Decisions)(nil)

// NewDecisions returns a Decisions deciding with the engine engines holds at
// each call; logger and metrics may be nil.
func NewDecisions(engines *policy.Holder, logger *slog.Logger, metrics *Metrics) *Decisions {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Decisions{engines: engines, logger: logger, metrics: metrics, logs: NewAuthz(engines, logger, metrics)}
}

// shareDecisionLogs makes Decide log through a, so that Decide and Check
// share one rate limit per level.
func (s *Decisions) shareDecisionLogs(a *Authz) { s.logs = a }

// Decide implements corsauthzv1.DecisionServiceServer.
func (s *Decisions) Decide(ctx context.Context, req *corsauthzv1.DecideRequest) (*corsauthzv1.DecideResponse, error) {
	start := time.Now()
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
		s.logger.LogAttrs(ctx, slog.LevelWarn, "decide refused: request beyond limits", slog.String("error", msg))
		return nil, s.fail(codes.InvalidArgument, msg, start)
	}
	e := s.engines.Load()
	if e == nil {
		return nil, s.fail(codes.Unavailable, msgNoConfig, start)
	}
	var (
		x   policy.Explanation
		err error
	)
	if req.GetOmitReasons() {
		x.Decision, err = e.Decide(&r)
	} else {
		x, err = e.Explain(&r)
	}
	if err != nil {
		s.logger.LogAttrs(ctx, slog.LevelError, "decide refused: configuration mismatch",
			slog.String("error", err.Error()), slog.String("config_hash", e.Hash()))
		return nil, s.fail(decideErrorCode(err), err.Error(), start)
	}
	d := &x.Decision
	s.metrics.decision(d, start)
	s.logs.logDecision(ctx, &r, d)
	return decideResponse(d, &x, e.Hash()), nil
}

func (s *Decisions) fail(code codes.Code, msg string, start time.Time) error {
	s.metrics.checkError(code, start)
	return status.Error(code, msg)
}

var decisionKinds = map[policy.Kind]corsauthzv1.DecisionKind{
	policy.KindNotCORS:           corsauthzv1.DecisionKind_DECISION_KIND_NOT_CORS,
	policy.KindPreflightAllowed:  corsauthzv1.DecisionKind_DECISION_KIND_PREFLIGHT_ALLOWED,
	policy.KindPreflightRejected: corsauthzv1.DecisionKind_DECISION_KIND_PREFLIGHT_REJECTED,
	policy.KindActualAllowed:     corsauthzv1.DecisionKind_DECISION_KIND_ACTUAL_ALLOWED,
	policy.KindActualDisallowed:  corsauthzv1.DecisionKind_DECISION_KIND_ACTUAL_NOT_ALLOWED,
}

// decideResponse maps a decision the way checkResponse does for ext_authz:
// a report-only decision changes nothing, a direct one is answered.
func decideResponse(d *policy.Decision, x *policy.Explanation, version string) *corsauthzv1.DecideResponse {
	resp := &corsauthzv1.DecideResponse{
		Kind:                 decisionKinds[d.Kind],
		Action:               corsauthzv1.Action_ACTION_CONTINUE,
		Policy:               d.Policy,
		ReportOnly:           d.ReportOnly,
		ReasonCode:           d.Reason.String(),
		Detail:               d.Detail,
		Reasons:              x.Reasons,
		ClosestAllowedOrigin: x.ClosestOrigin,
		ConfigVersion:        version,
	}
	if d.ReportOnly {
		return resp
	}
	if d.Direct() {
		resp.Action = corsauthzv1.Action_ACTION_RESPOND
		resp.HttpStatus = int32(d.Status)
	}
	var buf [policy.MaxHeaders]policy.Header
	for _, h := range d.AppendHeaders(buf[:0]) {
		action := corsauthzv1.HeaderAction_HEADER_ACTION_REPLACE
		if h.Append {
			action = corsauthzv1.HeaderAction_HEADER_ACTION_APPEND
		}
		resp.Headers = append(resp.Headers, &corsauthzv1.Header{Name: h.Name, Value: h.Value, Action: action})
	}
	return resp
}

// ListPolicies implements corsauthzv1.DecisionServiceServer.
func (s *Decisions) ListPolicies(ctx context.Context, _ *corsauthzv1.ListPoliciesRequest) (*corsauthzv1.ListPoliciesResponse, error) {
	e := s.engines.Load()
	if e == nil {
		return nil, status.Error(codes.Unavailable, msgNoConfig)
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
		})
	}
	return resp, nil
}

// checkSizes returns "" or a message naming the first value of r beyond
// the limits: those of a CheckRequest for method, host and path, and
// MaxHeaderValueLen for the others.
func checkSizes(r *policy.Request) string {
	if msg := sizeProblem("", len(r.Method), len(r.Host), len(r.Path)); msg != "" {
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
		if msg := tooLong("", f.name, len(f.value), MaxHeaderValueLen); msg != "" {
			return msg
		}
	}
	return ""
}

// MaxHeaderValueLen bounds each CORS header value read; Envoy's default
// limit on all request headers together is 60 KiB.
const MaxHeaderValueLen = 64 << 10
