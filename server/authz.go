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

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/internal/limits"
	"github.com/corsauthz/corsauthz/policy"
)

// Limits on the requests Check reads. Envoy's own defaults are far below
// them (60 KiB of request headers, 100 headers), so a request beyond one is
// not a browser's: Check refuses it with InvalidArgument, and Envoy answers
// with its status_on_error.
// They are the limits every front end applies (package internal/limits).
const (
	// MaxMethodLen bounds attributes.request.http.method, in bytes.
	MaxMethodLen = limits.MethodLen
	// MaxHostLen bounds attributes.request.http.host (the :authority).
	MaxHostLen = limits.HostLen
	// MaxPathLen bounds attributes.request.http.path, query included.
	MaxPathLen = limits.PathLen
	// MaxHeaderCount bounds the entries of headers or header_map, as sent:
	// a request with more is refused before its map is built.
	MaxHeaderCount = limits.HeaderCount
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
// A decision whose policy names an authorizer (contract §8) is sent to it
// and answered with the merged outcome (authorize.go): corsauthz is then
// the one authorization service the gateway calls.
//
// Responses may be shared between calls: treat them as read-only.
type Authz struct {
	authv3.UnimplementedAuthorizationServer

	engines *policy.Holder
	logger  *slog.Logger
	metrics *Metrics
	// frontEnd labels what this Authz counts (FrontEndExtAuthz, or
	// FrontEndHTTP for the copy the HTTP listener decides with).
	frontEnd string
	// Every log line a request causes is rate-limited per level, so that a
	// flood of requests cannot fill a disk (see requestLog); the HTTP
	// listener's copy shares it.
	log *requestLog
	// authorizers are the clients of contract §8 (authorize.go).
	authorizers authorizerState
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
	a := &Authz{engines: engines, logger: logger, metrics: metrics, frontEnd: FrontEndExtAuthz}
	a.limitDecisionLogs(DefaultDecisionLogRate)
	a.authorizers.pool = authorizer.NewPool(logger, metrics.authorizerMetrics())
	if engines != nil {
		if err := a.syncAuthorizers(engines.Load()); err != nil {
			logger.Error("authorizers: cannot build a client", slog.String("error", err.Error()))
		}
	}
	return a
}

// limitDecisionLogs lets each decision log level write rate lines a
// second (burst: as many); rate <= 0 removes the limit.
func (a *Authz) limitDecisionLogs(rate float64) {
	a.log = newRequestLog(a.logger, a.metrics, rate)
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
	d, e, err := a.decide(ctx, &r, start)
	if err != nil {
		return nil, err
	}
	if name := e.AuthorizerFor(&d); name != "" {
		return a.authorize(ctx, e, name, &d, &authorizer.Request{Check: req}), nil
	}
	return checkResponse(&d), nil
}

// refuseUnreadable logs, counts and returns the error for a request
// readRequest refused with msg.
func (a *Authz) refuseUnreadable(ctx context.Context, msg string, start time.Time) error {
	a.log.log(ctx, slog.LevelWarn, "check refused: unreadable request", slog.String("error", limits.Cut(msg)))
	return a.fail(codes.InvalidArgument, msg, start)
}

// decide decides r with the engine in force, counts and logs the
// decision, or returns the error Check answers with. Check and the fast
// path both decide here; it also returns the engine that decided.
func (a *Authz) decide(ctx context.Context, r *policy.Request, start time.Time) (policy.Decision, *policy.Engine, error) {
	d, e, code, err := a.decideOrFail(ctx, r, start)
	if err != nil {
		// Cut, as the error may name the policy the request asked for.
		return d, nil, status.Error(code, limits.Cut(err.Error()))
	}
	return d, e, nil
}

// decideOrFail is decide for every front end: the decision, counted and
// logged, with the engine that decided, or the code and error of a
// request that cannot be decided (counted and logged too).
func (a *Authz) decideOrFail(ctx context.Context, r *policy.Request, start time.Time) (policy.Decision, *policy.Engine, codes.Code, error) {
	var e *policy.Engine
	if a.engines != nil {
		e = a.engines.Load()
	}
	if e == nil {
		a.log.log(ctx, slog.LevelError, "check refused: no configuration loaded")
		a.count(codes.Unavailable, start)
		return policy.Decision{}, nil, codes.Unavailable, errNoConfig
	}
	d, err := e.Decide(r)
	if err != nil {
		// The error names the policy the request asked for, cut (see
		// policy.UnknownPolicyError); cut again, as it reaches the log and
		// the caller.
		msg := limits.Cut(err.Error())
		a.log.log(ctx, slog.LevelError, "check refused: configuration mismatch",
			slog.String("error", msg), slog.String("config_hash", e.Hash()))
		code := decideErrorCode(err)
		a.count(code, start)
		return policy.Decision{}, nil, code, err
	}
	a.metrics.decision(a.frontEnd, &d, start)
	a.logDecision(ctx, r, &d)
	return d, e, codes.OK, nil
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

var errNoConfig = errors.New(msgNoConfig)

func (a *Authz) fail(code codes.Code, msg string, start time.Time) error {
	a.count(code, start)
	return status.Error(code, msg)
}

// count counts a request answered with an error.
func (a *Authz) count(code codes.Code, start time.Time) {
	a.metrics.checkError(a.frontEnd, code, start)
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
	raw := h.GetHeaderMap().GetHeaders()
	switch headers := h.GetHeaders(); {
	case len(headers) > MaxHeaderCount:
		return headerCountProblem("headers")
	case len(raw) > MaxHeaderCount:
		return headerCountProblem("header_map")
	case len(headers) > 0:
		// Envoy writes the keys in lower case.
		r.Origin, r.OriginPresent = headers["origin"]
		r.RequestMethod = headers["access-control-request-method"]
		r.RequestHeaders = headers["access-control-request-headers"]
		r.RequestPrivateNetwork = headers["access-control-request-private-network"]
		if msg := valueProblem("headers.", r); msg != "" {
			return msg
		}
	case len(raw) > 0:
		readHeaderMap(raw, r)
		if msg := valueProblem("header_map.", r); msg != "" {
			return msg
		}
	}
	r.Policy = attrs.GetContextExtensions()[ContextExtensionPolicy]
	return tooLong("", policyField, len(r.Policy), MaxHeaderValueLen)
}

// policyField is where a CheckRequest names its policy.
const policyField = "attributes.context_extensions." + ContextExtensionPolicy

// valueProblem returns "" or the message for the first CORS header value
// of r longer than MaxHeaderValueLen; field is "headers." or
// "header_map.", where the values were read.
func valueProblem(field string, r *policy.Request) string {
	return cmp.Or(
		tooLong(httpFields+field, "origin", len(r.Origin), MaxHeaderValueLen),
		tooLong(httpFields+field, "access-control-request-method", len(r.RequestMethod), MaxHeaderValueLen),
		tooLong(httpFields+field, "access-control-request-headers", len(r.RequestHeaders), MaxHeaderValueLen),
		tooLong(httpFields+field, "access-control-request-private-network", len(r.RequestPrivateNetwork), MaxHeaderValueLen))
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

// headerCountProblem is readRequest's message for more than
// MaxHeaderCount entries in attributes.request.http.<field>. It says no
// count: the fast path stops reading at the first entry too many.
func headerCountProblem(field string) string {
	return fmt.Sprintf("attributes.request.http.%s has more than %d entries, the limit", field, MaxHeaderCount)
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
	level := slog.LevelDebug
	if d.Kind == policy.KindPreflightRejected || d.Kind == policy.KindActualDisallowed {
		level = slog.LevelInfo
	}
	if !a.log.enabled(ctx, level) {
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
		slog.String("method", truncate(r.Method)),
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
	a.log.log(ctx, level, msg, attrs[:n]...)
}

// truncate cuts a request value for the log.
func truncate(s string) string { return limits.Cut(s) }

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
