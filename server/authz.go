package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corsauthz/corsauthz/policy"
)

// Limits on the requests Check reads. Envoy's own defaults are far below
// them (60 KiB of request headers, 100 headers), so a request beyond one is
// not a browser's: Check refuses it with InvalidArgument, and Envoy answers
// with its status_on_error.
const (
	// MaxMethodLen bounds attributes.request.http.method, in bytes.
	MaxMethodLen = 64
	// MaxHostLen bounds attributes.request.http.host (the :authority).
	MaxHostLen = 8 << 10
	// MaxPathLen bounds attributes.request.http.path, query included.
	MaxPathLen = 64 << 10
	// MaxHeaderCount bounds the entries of headers or header_map.
	MaxHeaderCount = 1000
)

// ContextExtensionPolicy is the ext_authz context extension that names the
// policy for a route (set per route in Envoy), skipping the match rules.
const ContextExtensionPolicy = "cors_policy"

// Authz serves the Envoy external-authorization API
// (envoy.service.auth.v3.Authorization) from the engine in a policy.Holder.
// It only translates: the CORS decision is the engine's.
//
// Decisions are data: a preflight answer or a 403 is a CheckResponse with a
// nil error. Check returns a gRPC error only when it cannot decide: a
// request without HTTP attributes or beyond the limits (InvalidArgument), a
// cors_policy that names no configured policy (FailedPrecondition), or no
// configuration (Unavailable).
//
// Responses may be shared between calls: treat them as read-only.
type Authz struct {
	authv3.UnimplementedAuthorizationServer

	engines *policy.Holder
	logger  *slog.Logger
	metrics *Metrics
	// Decision log lines are rate-limited per level, so that a flood of
	// rejected requests cannot fill a disk (see logDecision).
	infoLogs, debugLogs *logLimiter
	// fixed holds the fast path's shared answers (wire_response.go).
	fixed fixedAnswers
}

var _ authv3.AuthorizationServer = (*Authz)(nil)

// NewAuthz returns an Authz deciding with the engine engines holds at each
// call, logging to logger (nil: nowhere) and counting in metrics (nil: not
// counted).
func NewAuthz(engines *policy.Holder, logger *slog.Logger, metrics *Metrics) *Authz {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &Authz{engines: engines, logger: logger, metrics: metrics}
	a.limitDecisionLogs(DefaultDecisionLogRate)
	return a
}

// limitDecisionLogs lets each decision log level write rate lines a
// second (burst: as many); rate <= 0 removes the limit.
func (a *Authz) limitDecisionLogs(rate float64) {
	a.infoLogs, a.debugLogs = newLogLimiter(rate), newLogLimiter(rate)
}

// Check implements authv3.AuthorizationServer. The server itself serves
// Check on a fast path that reads and writes the messages' wire form
// (fastpath.go) and answers the same, byte for byte.
func (a *Authz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	var r policy.Request
	if msg := readRequest(req, &r); msg != "" {
		return nil, a.refuseUnreadable(ctx, msg, start)
	}
	d, _, err := a.decide(ctx, &r, start)
	if err != nil {
		return nil, err
	}
	return checkResponse(&d), nil
}

// refuseUnreadable logs, counts and returns the error for a request
// readRequest refused with msg.
func (a *Authz) refuseUnreadable(ctx context.Context, msg string, start time.Time) error {
	a.logger.LogAttrs(ctx, slog.LevelWarn, "check refused: unreadable request", slog.String("error", msg))
	return a.fail(codes.InvalidArgument, msg, start)
}

// decide decides r with the engine in force, counts and logs the
// decision, or returns the error Check answers with. Check and the fast
// path both decide here; it also returns the engine that decided.
func (a *Authz) decide(ctx context.Context, r *policy.Request, start time.Time) (policy.Decision, *policy.Engine, error) {
	var e *policy.Engine
	if a.engines != nil {
		e = a.engines.Load()
	}
	if e == nil {
		a.logger.LogAttrs(ctx, slog.LevelError, "check refused: no configuration loaded")
		return policy.Decision{}, nil, a.fail(codes.Unavailable, msgNoConfig, start)
	}
	d, err := e.Decide(r)
	if err != nil {
		a.logger.LogAttrs(ctx, slog.LevelError, "check refused: configuration mismatch",
			slog.String("error", err.Error()), slog.String("config_hash", e.Hash()))
		return policy.Decision{}, nil, a.fail(decideErrorCode(err), err.Error(), start)
	}
	a.metrics.decision(&d, start)
	a.logDecision(ctx, r, &d)
	return d, e, nil
}

// decideErrorCode is the gRPC code for an error of Engine.Decide: a
// cors_policy naming no configured policy is a configuration mismatch the
// caller must fix (FailedPrecondition), never silently allowed.
func decideErrorCode(err error) codes.Code {
	if errors.Is(err, policy.ErrUnknownPolicy) {
		return codes.FailedPrecondition
	}
	return codes.Internal
}

// msgNoConfig is the message of the Unavailable error answered while no
// configuration is loaded.
const msgNoConfig = "corsauthz has no configuration loaded"

func (a *Authz) fail(code codes.Code, msg string, start time.Time) error {
	a.metrics.checkError(code, start)
	return status.Error(code, msg)
}

// readRequest fills r from req and returns "" or, when req cannot be
// read, a message saying why. It never panics: every getter is nil-safe.
func readRequest(req *authv3.CheckRequest, r *policy.Request) string {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	if h == nil {
		return msgNoHTTP
	}
	r.Method, r.Host, r.Path = h.GetMethod(), h.GetHost(), h.GetPath()
	if msg := sizeProblem(httpFields, len(r.Method), len(r.Host), len(r.Path)); msg != "" {
		return msg
	}
	if headers := h.GetHeaders(); len(headers) > 0 {
		if len(headers) > MaxHeaderCount {
			return headerCountProblem("headers", len(headers))
		}
		// Envoy writes the keys in lower case.
		r.Origin, r.OriginPresent = headers["origin"]
		r.RequestMethod = headers["access-control-request-method"]
		r.RequestHeaders = headers["access-control-request-headers"]
		r.RequestPrivateNetwork = headers["access-control-request-private-network"]
	} else if raw := h.GetHeaderMap().GetHeaders(); len(raw) > 0 {
		if len(raw) > MaxHeaderCount {
			return headerCountProblem("header_map", len(raw))
		}
		readHeaderMap(raw, r)
	}
	r.Policy = attrs.GetContextExtensions()[ContextExtensionPolicy]
	return ""
}

// msgNoHTTP is readRequest's message for a request without HTTP attributes.
const msgNoHTTP = "CheckRequest has no attributes.request.http: corsauthz decides on HTTP requests " +
	"(use Envoy's HTTP ext_authz filter, envoy.filters.http.ext_authz, not the network filter)"

// httpFields is where a CheckRequest holds method, host and path, for
// sizeProblem's messages.
const httpFields = "attributes.request.http."

// sizeProblem returns "" or the message for a method, host or path of these
// lengths beyond the limits; prefix names where the fields are in the
// request (httpFields for a CheckRequest, "" for a DecideRequest).
func sizeProblem(prefix string, methodLen, hostLen, pathLen int) string {
	return cmp.Or(
		tooLong(prefix, "method", methodLen, MaxMethodLen),
		tooLong(prefix, "host", hostLen, MaxHostLen),
		tooLong(prefix, "path", pathLen, MaxPathLen))
}

// tooLong returns "" or the message for field prefix+name of n bytes, more
// than limit.
func tooLong(prefix, name string, n, limit int) string {
	if n <= limit {
		return ""
	}
	return fmt.Sprintf("%s%s is %d bytes long, more than the limit of %d", prefix, name, n, limit)
}

// headerCountProblem is readRequest's message for n entries in
// attributes.request.http.<field>, more than MaxHeaderCount.
func headerCountProblem(field string, n int) string {
	return fmt.Sprintf("attributes.request.http.%s has %d entries, more than the limit of %d", field, n, MaxHeaderCount)
}

// readHeaderMap reads the header_map that Envoy sends instead of headers
// when encode_raw_headers is on: a list of (key, raw_value) pairs in which
// a header may repeat. Repeated values are joined with ",", as Envoy does
// in the headers map.
func readHeaderMap(raw []*corev3.HeaderValue, r *policy.Request) {
	for _, hv := range raw {
		key := hv.GetKey()
		var dst *string
		switch {
		case strings.EqualFold(key, "origin"):
			dst = &r.Origin
			r.OriginPresent = true
		case strings.EqualFold(key, "access-control-request-method"):
			dst = &r.RequestMethod
		case strings.EqualFold(key, "access-control-request-headers"):
			dst = &r.RequestHeaders
		case strings.EqualFold(key, "access-control-request-private-network"):
			dst = &r.RequestPrivateNetwork
		default:
			continue
		}
		v := hv.GetValue()
		if rv := hv.GetRawValue(); len(rv) > 0 {
			v = string(rv)
		}
		if *dst == "" {
			*dst = v
		} else {
			*dst += "," + v
		}
	}
}

// logDecision logs every decision at debug level, and rejected preflights
// and disallowed origins at info; a report_only policy's line is the one
// it would have written, with report_only=true. It logs the few
// request values CORS reads, never the headers map, and the path without
// its query.
//
// Each level is rate-limited (a token bucket, DefaultDecisionLogRate lines
// a second unless the server was given another rate): lines beyond it are
// dropped, counted in corsauthz_decision_logs_suppressed_total, and at
// most once a second a warning says how many were dropped.
func (a *Authz) logDecision(ctx context.Context, r *policy.Request, d *policy.Decision) {
	level, limit, levelName := slog.LevelDebug, a.debugLogs, "debug"
	if d.Kind == policy.KindPreflightRejected || d.Kind == policy.KindActualDisallowed {
		level, limit, levelName = slog.LevelInfo, a.infoLogs, "info"
	}
	if !a.logger.Enabled(ctx, level) {
		return
	}
	ok, dropped := limit.allow(time.Now())
	if dropped > 0 {
		a.logger.LogAttrs(ctx, slog.LevelWarn, "decision log lines suppressed by the rate limit",
			slog.Int("suppressed", dropped), slog.String("log_level", levelName))
	}
	if !ok {
		a.metrics.logSuppressed(levelName, 1)
		return
	}
	msg := "cors decision"
	switch d.Kind {
	case policy.KindPreflightRejected:
		msg = "preflight rejected"
	case policy.KindActualDisallowed:
		msg = "origin not allowed"
	}
	attrs := [...]slog.Attr{
		slog.String("policy", d.Policy),
		slog.String("kind", d.Kind.String()),
		slog.String("reason", d.Reason.String()),
		slog.String("detail", truncate(d.Detail)),
		slog.Int("status", d.Status),
		slog.Bool("report_only", d.ReportOnly),
		slog.String("origin", truncate(r.Origin)),
		slog.String("method", r.Method),
		slog.String("host", truncate(r.Host)),
		slog.String("path", truncate(pathOnly(r.Path))),
		// Last, and only when the policy was picked from a group: which
		// policies the Origin picked among.
		slog.String("group", truncate(d.Group)),
	}
	n := len(attrs)
	if d.Group == "" {
		n--
	}
	a.logger.LogAttrs(ctx, level, msg, attrs[:n]...)
}

// maxLoggedLen bounds each request value written to the log.
const maxLoggedLen = 256

func truncate(s string) string {
	if len(s) <= maxLoggedLen {
		return s
	}
	return s[:maxLoggedLen] + "…"
}

func pathOnly(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		return p[:i]
	}
	return p
}

// okNoHeaders is the answer to every pass-on that adds no header (no
// policy, report-only): shared, as it never changes.
var okNoHeaders = &authv3.CheckResponse{
	Status:       &rpcstatus.Status{Code: int32(codes.OK)},
	HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
}

// checkResponse maps a decision to its ext_authz answer (contract §5).
func checkResponse(d *policy.Decision) *authv3.CheckResponse {
	if d.ReportOnly {
		return okNoHeaders
	}
	var buf [policy.MaxHeaders]policy.Header
	headers := d.AppendHeaders(buf[:0])
	if d.Direct() {
		return deniedResponse(d.Status, headers)
	}
	if len(headers) == 0 {
		return okNoHeaders
	}
	return okResponse(headers)
}

// The responses are built in few allocations: the fixed messages in one
// struct, the header options and values in one slice.

type okMessages struct {
	resp   authv3.CheckResponse
	status rpcstatus.Status
	oneof  authv3.CheckResponse_OkResponse
	ok     authv3.OkHttpResponse
}

type deniedMessages struct {
	resp   authv3.CheckResponse
	status rpcstatus.Status
	oneof  authv3.CheckResponse_DeniedResponse
	denied authv3.DeniedHttpResponse
	http   typev3.HttpStatus
}

type headerOption struct {
	opt corev3.HeaderValueOption
	val corev3.HeaderValue
}

func okResponse(headers []policy.Header) *authv3.CheckResponse {
	m := &okMessages{}
	m.status.Code = int32(codes.OK)
	m.ok.ResponseHeadersToAdd = headerOptions(headers)
	m.oneof.OkResponse = &m.ok
	m.resp.Status = &m.status
	m.resp.HttpResponse = &m.oneof
	return &m.resp
}

func deniedResponse(httpStatus int, headers []policy.Header) *authv3.CheckResponse {
	m := &deniedMessages{}
	m.status.Code = int32(codes.PermissionDenied)
	m.http.Code = typev3.StatusCode(httpStatus)
	m.denied.Status = &m.http
	m.denied.Headers = headerOptions(headers)
	m.oneof.DeniedResponse = &m.denied
	m.resp.Status = &m.status
	m.resp.HttpResponse = &m.oneof
	return &m.resp
}

// headerOptions converts headers: Access-Control-* replace whatever the
// upstream set, so a response never carries two CORS answers; Vary is
// appended to, so the upstream's own Vary survives.
func headerOptions(headers []policy.Header) []*corev3.HeaderValueOption {
	if len(headers) == 0 {
		return nil
	}
	hs := make([]headerOption, len(headers))
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
