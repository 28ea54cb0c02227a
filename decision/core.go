package decision

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/internal/limits"
	"github.com/corsauthz/corsauthz/policy"
)

// Engines gives the configuration in force at each call: a
// *policy.Holder, or a gateway's xDS subscription.
type Engines interface {
	Load() *policy.Engine
}

// Source describes the request being decided to an authorizer. The core
// calls it only when an authorizer is asked, so that a front end builds
// nothing for the requests that ask none; kind is "http" or "grpc" (a gRPC
// authorizer is sent the CheckRequest as received when there is one).
type Source interface {
	AuthorizerRequest(kind string) *authorizer.Request
}

// Options configure a Core. The zero value is usable.
type Options struct {
	// Logger receives the request log (nil: none).
	Logger *slog.Logger
	// Metrics counts decisions, failures and authorizer calls (nil: none).
	Metrics *Metrics
	// LogRate bounds the request log lines written per second at each
	// level (burst: as many); 0 means limits.DefaultLogRate, a negative
	// value no limit.
	LogRate float64
	// Tracer, when set, traces every request: a span per decision,
	// parented on the context the front end read from its request, and a
	// child span per authorizer call (whose context the authorizer
	// clients send on). Nil: no tracing, at no cost.
	Tracer trace.Tracer
}

// Core decides every front end's requests; see the package documentation.
// It is safe for concurrent use.
type Core struct {
	engines     Engines
	logger      *slog.Logger
	metrics     *Metrics
	log         *limits.RequestLog
	authorizers *authorizer.Pool
	tracer      trace.Tracer
	// keepRequests is on while the configuration in force has
	// authorizers: a front end that would otherwise not keep what an
	// authorizer is sent (the ext_authz fast path's wire bytes) keeps it.
	keepRequests atomic.Bool
}

// New returns a Core deciding with the engine engines holds at each call.
// Call Sync with each configuration before it is put in force, and Close
// at the end.
func New(engines Engines, opts Options) *Core {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	rate := opts.LogRate
	if rate == 0 {
		rate = limits.DefaultLogRate
	}
	c := &Core{engines: engines, logger: logger, metrics: opts.Metrics, tracer: opts.Tracer}
	c.log = limits.NewRequestLog(logger, rate, c.metrics.logSuppressed)
	c.authorizers = authorizer.NewPool(logger, c.metrics.Authorizers())
	return c
}

// Sync makes the authorizer clients follow e's authorizers. Call it before
// e is put in force, so that every request decided with e finds its
// clients (an unchanged authorizer keeps its connections); an error means
// e's clients could not all be built, and e should not be put in force.
func (c *Core) Sync(e *policy.Engine) error {
	if e == nil {
		return nil
	}
	if len(e.Authorizers()) > 0 {
		c.keepRequests.Store(true)
	}
	return c.authorizers.Sync(e.Authorizers())
}

// InForce is told that e is now the configuration in force: without
// authorizers, front ends stop keeping what an authorizer is sent.
func (c *Core) InForce(e *policy.Engine) {
	if e != nil && len(e.Authorizers()) == 0 {
		c.keepRequests.Store(false)
	}
	c.metrics.ConfigChanged(e)
}

// KeepRequests reports whether a front end must keep what an authorizer
// would be sent (see Source) for the requests it reads now.
func (c *Core) KeepRequests() bool { return c.keepRequests.Load() }

// Close releases the authorizer clients: their connections close and
// calls in flight to them fail.
func (c *Core) Close() { c.authorizers.Close() }

// Engine is the configuration in force, or nil.
func (c *Core) Engine() *policy.Engine {
	if c.engines == nil {
		return nil
	}
	return c.engines.Load()
}

// Tracing reports whether requests are traced: a front end then reads the
// trace context its request carries (and only then, so that an untraced
// request costs nothing more).
func (c *Core) Tracing() bool { return c.tracer != nil }

// Decide decides r, read by front end fe, and returns the outcome; see the
// package documentation. src describes the request to an authorizer, when
// one is asked (nil: the request has nothing to send, and an authorizer's
// policy fails closed).
func (c *Core) Decide(ctx context.Context, fe FrontEnd, r *policy.Request, src Source) (out Outcome) {
	if c.tracer == nil {
		c.decideRequest(ctx, fe, r, src, &out)
		return out
	}
	ctx, span := c.tracer.Start(ctx, spanName(fe), trace.WithSpanKind(trace.SpanKindServer))
	c.decideRequest(ctx, fe, r, src, &out)
	endSpan(span, r, &out)
	return out
}

// decideRequest fills out, which is zero. (An Outcome is a few hundred
// bytes: written in place once, not returned and copied from call to call,
// which was most of the core's own cost per request.)
func (c *Core) decideRequest(ctx context.Context, fe FrontEnd, r *policy.Request, src Source, out *Outcome) {
	start := c.now()
	e := c.Engine()
	if e == nil {
		out.Action, out.Failure = Fail, c.noConfiguration(ctx, fe, start)
		return
	}
	d := &out.Decision
	if err := e.DecideInto(r, d); err != nil {
		*out = Outcome{Action: Fail, Failure: c.mismatch(ctx, fe, e, err, start)}
		return
	}
	out.plain(e)
	name := e.AuthorizerFor(d)
	if name == "" {
		c.metrics.decision(fe, d, start)
		c.logDecision(ctx, fe, r, out)
		return
	}
	out.Authorizer = name
	var ar *authorizer.Request
	if src != nil {
		ar = src.AuthorizerRequest(e.AuthorizerKind(name))
	}
	if ar == nil {
		// Nothing to send (an ext_authz request read before the
		// configuration with authorizers came in force): fail closed.
		ar = &authorizer.Request{}
	}
	answer := c.ask(ctx, name, ar)
	merged := authorizer.Merge(d, answer, e.AuthorizerFailsOpen(name))
	out.auth = &merged
	if !merged.Pass {
		out.Action, out.Status, out.Body = Respond, merged.Status, merged.Body
	}
	c.metrics.decision(fe, d, start)
	c.logDecision(ctx, fe, r, out)
	if c.logger.Enabled(ctx, slog.LevelDebug) {
		c.log.Log(ctx, slog.LevelDebug, "authorizer asked",
			slog.String("front_end", string(fe)),
			slog.String("authorizer", name), slog.String("result", answer.Result.String()),
			slog.String("action", out.Action.String()), slog.Int("status", out.Status), slog.String("policy", d.Policy))
	}
}

// ask asks the authorizer name, in a span of its own when tracing.
func (c *Core) ask(ctx context.Context, name string, r *authorizer.Request) *authorizer.Answer {
	if c.tracer == nil {
		return c.authorizers.Ask(ctx, name, r)
	}
	ctx, span := c.tracer.Start(ctx, "authorizer "+name, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String(attrAuthorizer, name)))
	answer := c.authorizers.Ask(ctx, name, r)
	endAuthorizerSpan(span, answer)
	return answer
}

// Explain is Decide for the decision API: the decision with its reasons
// (or without them when terse), counted and logged as Decide's, and the
// authorizer it would ask, never asked.
func (c *Core) Explain(ctx context.Context, fe FrontEnd, r *policy.Request, terse bool) (policy.Explanation, Outcome) {
	if c.tracer == nil {
		return c.explain(ctx, fe, r, terse)
	}
	ctx, span := c.tracer.Start(ctx, spanName(fe), trace.WithSpanKind(trace.SpanKindServer))
	x, out := c.explain(ctx, fe, r, terse)
	endSpan(span, r, &out)
	return x, out
}

func (c *Core) explain(ctx context.Context, fe FrontEnd, r *policy.Request, terse bool) (policy.Explanation, Outcome) {
	start := c.now()
	e := c.Engine()
	if e == nil {
		return policy.Explanation{}, Outcome{Action: Fail, Failure: c.noConfiguration(ctx, fe, start)}
	}
	var (
		x   policy.Explanation
		err error
	)
	if terse {
		x.Decision, err = e.Decide(r)
	} else {
		x, err = e.Explain(r)
	}
	if err != nil {
		return x, Outcome{Action: Fail, Failure: c.mismatch(ctx, fe, e, err, start)}
	}
	out := Plain(x.Decision, e)
	out.Authorizer = e.AuthorizerFor(&x.Decision) // named, never asked
	c.metrics.decision(fe, &x.Decision, start)
	c.logDecision(ctx, fe, r, &out)
	return x, out
}

// now is when a decision starts, for the duration metric; without metrics
// (the middleware's core) the clock is not read: reading it was a tenth of
// the middleware's cost per request.
func (c *Core) now() time.Time {
	if c.metrics == nil {
		return time.Time{}
	}
	return time.Now()
}

// msgNoConfiguration says a request came before any configuration.
const msgNoConfiguration = "corsauthz has no configuration loaded"

// ErrNoConfiguration is the Err of the Failure of a request decided while
// no configuration is loaded.
var ErrNoConfiguration = errors.New(msgNoConfiguration)

func (c *Core) noConfiguration(ctx context.Context, fe FrontEnd, start time.Time) *Failure {
	c.log.Log(ctx, slog.LevelError, "request refused: no configuration loaded", slog.String("front_end", string(fe)))
	c.metrics.failure(fe, NoConfiguration, start)
	return &Failure{Kind: NoConfiguration, Message: msgNoConfiguration, Err: ErrNoConfiguration}
}

// mismatch is the failure for an error of Engine.Decide: a policy named by
// the request that the configuration does not have is a configuration
// mismatch the gateway's operator must fix, never silently allowed.
func (c *Core) mismatch(ctx context.Context, fe FrontEnd, e *policy.Engine, err error, start time.Time) *Failure {
	// The error names the policy the request asked for, cut (see
	// policy.UnknownPolicyError); cut again, as it reaches the log and
	// the caller.
	msg := limits.Cut(err.Error())
	c.log.Log(ctx, slog.LevelError, "request refused: configuration mismatch",
		slog.String("front_end", string(fe)), slog.String("error", msg), slog.String("config_hash", e.Hash()))
	kind := Internal
	if errors.Is(err, policy.ErrUnknownPolicy) {
		kind = UnknownPolicy
	}
	c.metrics.failure(fe, kind, start)
	return &Failure{Kind: kind, Message: msg, Err: err}
}

// Refused logs and counts a request front end fe refused to read (past a
// limit, or unreadable), and returns its Failure; msg says why and quotes
// nothing the client sent beyond limits.Cut.
func (c *Core) Refused(ctx context.Context, fe FrontEnd, msg string, attrs ...slog.Attr) *Failure {
	msg = limits.Cut(msg)
	all := append([]slog.Attr{slog.String("front_end", string(fe)), slog.String("error", msg)}, attrs...)
	c.log.Log(ctx, slog.LevelWarn, "request refused: unreadable request", all...)
	c.metrics.failure(fe, Unreadable, time.Now())
	return &Failure{Kind: Unreadable, Message: msg}
}

// Malformed logs and counts a request message of size bytes that does not
// parse (a gRPC codec's error).
func (c *Core) Malformed(size int, err error) {
	c.metrics.malformedMessage()
	c.log.Log(context.Background(), slog.LevelWarn, "malformed request message",
		slog.Int("bytes", size), slog.String("error", limits.Cut(err.Error())))
}

// Log writes a line a request caused, within the request log's rate limit
// (for front ends' own events, such as a refused TLS handshake); values
// from the request must be cut with limits.Cut.
func (c *Core) Log(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	c.log.Log(ctx, level, msg, attrs...)
}
