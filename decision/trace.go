package decision

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/internal/limits"
	"github.com/corsauthz/corsauthz/policy"
)

// Span attributes. Request values are cut to limits.LoggedValueLen, the
// path loses its query (a query can carry a token) and no header but
// Origin is recorded: no cookie, no credential.
const (
	attrFrontEnd         = "corsauthz.front_end"
	attrPolicy           = "corsauthz.policy"
	attrKind             = "corsauthz.decision.kind"
	attrAction           = "corsauthz.action"
	attrReportOnly       = "corsauthz.report_only"
	attrOrigin           = "corsauthz.origin"
	attrAuthorizer       = "corsauthz.authorizer"
	attrAuthorizerResult = "corsauthz.authorizer.result"
	attrFailure          = "corsauthz.failure"
	attrStatus           = "http.response.status_code"
	attrMethod           = "http.request.method"
	attrHost             = "server.address"
	attrPath             = "url.path"
)

// spanNames are the span names per front end: one each, so that a trace
// backend groups them.
var spanNames = map[FrontEnd]string{
	FrontEndExtAuthz:    "corsauthz ext_authz Check",
	FrontEndDecisionAPI: "corsauthz Decide",
	FrontEndHTTP:        "corsauthz HTTP authorization",
	FrontEndMiddleware:  "corsauthz middleware",
}

func spanName(fe FrontEnd) string {
	if n, ok := spanNames[fe]; ok {
		return n
	}
	return "corsauthz " + string(fe)
}

// endSpan records the request and its outcome on span and ends it.
func endSpan(span trace.Span, r *policy.Request, out *Outcome) {
	attrs := make([]attribute.KeyValue, 0, 12)
	attrs = append(attrs,
		attribute.String(attrMethod, limits.Cut(r.Method)),
		attribute.String(attrHost, limits.Cut(r.Host)),
		attribute.String(attrPath, limits.Cut(pathOnly(r.Path))),
		attribute.String(attrAction, out.Action.String()),
	)
	if r.Origin != "" {
		attrs = append(attrs, attribute.String(attrOrigin, limits.Cut(r.Origin)))
	}
	if out.Action == Fail {
		attrs = append(attrs, attribute.String(attrFailure, out.Failure.Kind.String()))
		span.SetStatus(codes.Error, out.Failure.Message)
	} else {
		d := &out.Decision
		attrs = append(attrs,
			attribute.String(attrPolicy, d.Policy),
			attribute.String(attrKind, d.Kind.String()),
			attribute.Bool(attrReportOnly, d.ReportOnly),
		)
		if out.Authorizer != "" {
			attrs = append(attrs, attribute.String(attrAuthorizer, out.Authorizer))
		}
		if out.Action == Respond {
			attrs = append(attrs, attribute.Int(attrStatus, out.Status))
		}
		if out.auth != nil && out.auth.Result == authorizer.Error {
			span.SetStatus(codes.Error, "the authorizer failed")
		}
	}
	span.SetAttributes(attrs...)
	span.End()
}

// endAuthorizerSpan records an authorizer's answer on span and ends it.
func endAuthorizerSpan(span trace.Span, a *authorizer.Answer) {
	span.SetAttributes(attribute.String(attrAuthorizerResult, a.Result.String()))
	if a.Status != 0 {
		span.SetAttributes(attribute.Int(attrStatus, a.Status))
	}
	if a.Result == authorizer.Error {
		// Not the error's text: a client's error can quote the URL
		// asked, whose query may be the request's (forward_path).
		span.SetStatus(codes.Error, "the authorizer failed")
	}
	span.End()
}
