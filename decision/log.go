package decision

import (
	"context"
	"log/slog"
	"strings"

	"github.com/corsauthz/corsauthz/internal/limits"
	"github.com/corsauthz/corsauthz/policy"
)

// logDecision logs every decision at debug level, and rejected preflights,
// disallowed origins and authorizer denials and failures at info; a
// report_only policy's line is the one it would have written, with
// report_only=true. It logs the few request values CORS reads, never a
// header map, and the path without its query (a query can carry a token).
//
// Each level is rate-limited (limits.RequestLog): lines beyond the rate
// are dropped, counted in corsauthz_decision_logs_suppressed_total, and at
// most once a second a warning says how many were dropped.
func (c *Core) logDecision(ctx context.Context, fe FrontEnd, r *policy.Request, out *Outcome) {
	d := &out.Decision
	level := slog.LevelDebug
	msg := "cors decision"
	switch {
	case d.Kind == policy.KindPreflightRejected:
		level, msg = slog.LevelInfo, "preflight rejected"
	case d.Kind == policy.KindActualDisallowed:
		level, msg = slog.LevelInfo, "origin not allowed"
	case out.auth != nil && !out.auth.Pass:
		level, msg = slog.LevelInfo, "authorizer did not allow"
	}
	if !c.log.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 16)
	attrs = append(attrs,
		slog.String("front_end", string(fe)),
		slog.String("policy", d.Policy),
		slog.String("kind", d.Kind.String()),
		slog.String("reason", d.Reason.String()),
		slog.String("detail", limits.Cut(d.Detail)),
		// What the gateway does: pass, or respond with status.
		slog.String("action", out.Action.String()),
	)
	// The status answered, or for a report-only decision the one that
	// would have been.
	if status := out.Status; status != 0 || d.Status != 0 {
		if status == 0 {
			status = d.Status
		}
		attrs = append(attrs, slog.Int("status", status))
	}
	attrs = append(attrs,
		slog.Bool("report_only", d.ReportOnly),
		slog.String("origin", limits.Cut(r.Origin)),
		slog.String("method", limits.Cut(r.Method)),
		slog.String("host", limits.Cut(r.Host)),
		slog.String("path", limits.Cut(pathOnly(r.Path))),
	)
	if out.Authorizer != "" {
		attrs = append(attrs, slog.String("authorizer", out.Authorizer))
		if out.auth != nil {
			attrs = append(attrs, slog.String("authorizer_result", out.auth.Result.String()))
		}
	}
	if d.Group != "" {
		// Only when the policy was picked from a group: which policies
		// the Origin picked among.
		attrs = append(attrs, slog.String("group", limits.Cut(d.Group)))
	}
	c.log.Log(ctx, level, msg, attrs...)
}

// pathOnly is p without its query and fragment.
func pathOnly(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		return p[:i]
	}
	return p
}
