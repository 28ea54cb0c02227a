package server

import (
	"context"
	"log/slog"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/policy"
)

// This file puts the authorizers of contract §8 behind Check: a decision
// that asks one (Engine.AuthorizerFor) is sent to it, and the answer merged
// with the CORS decision (authorizer.Merge) becomes the CheckResponse.

// authorizerState holds the Authz's authorizer clients and the fast path's
// switch for keeping the wire bytes of each CheckRequest.
type authorizerState struct {
	pool *authorizer.Pool
	// keepRaw is on while the configuration in force has authorizers:
	// the fast path's codec then keeps a copy of each CheckRequest's wire
	// bytes, to send a gRPC authorizer unchanged (and to decode in full
	// for an HTTP one). Off, the fast path copies nothing.
	keepRaw atomic.Bool
}

// syncAuthorizers makes the pool follow e's authorizers. It is called
// before e is put in force, so that every request decided with e finds its
// clients (an unchanged authorizer keeps its connections).
func (a *Authz) syncAuthorizers(e *policy.Engine) error {
	if e == nil {
		return nil
	}
	as := e.Authorizers()
	if len(as) > 0 {
		a.authorizers.keepRaw.Store(true)
	}
	return a.authorizers.pool.Sync(as)
}

// afterStore is called once e is in force: without authorizers the fast
// path stops keeping wire bytes.
func (a *Authz) afterStore(e *policy.Engine) {
	if e != nil && len(e.Authorizers()) == 0 {
		a.authorizers.keepRaw.Store(false)
	}
}

// authorize asks the authorizer name about the request decided as d and
// returns the CheckResponse of the merged answer.
func (a *Authz) authorize(ctx context.Context, e *policy.Engine, name string, d *policy.Decision, r *authorizer.Request) *authv3.CheckResponse {
	out := a.merge(ctx, e, name, d, r)
	return outcomeResponse(&out)
}

// merge asks the authorizer and merges its answer with d.
func (a *Authz) merge(ctx context.Context, e *policy.Engine, name string, d *policy.Decision, r *authorizer.Request) authorizer.Outcome {
	answer := a.authorizers.pool.Ask(ctx, name, r)
	out := authorizer.Merge(d, answer, e.AuthorizerFailsOpen(name))
	if a.logger.Enabled(ctx, slog.LevelDebug) {
		a.logger.LogAttrs(ctx, slog.LevelDebug, "authorizer asked",
			slog.String("authorizer", name), slog.String("result", answer.Result.String()),
			slog.Bool("pass", out.Pass), slog.Int("status", out.Status), slog.String("policy", d.Policy))
	}
	return out
}

// authorizeWire is authorize for a request read by the fast path, which
// kept its wire bytes (wireCheck.raw). An outcome that adds nothing to the
// decision's own answer (an allow without ok_response, metadata or
// upstream headers) is sent as the fast path sends the decision alone,
// serialized directly.
func (a *Authz) authorizeWire(ctx context.Context, e *policy.Engine, name string, d *policy.Decision, in *wireCheck) any {
	r := &authorizer.Request{Raw: in.raw}
	if e.AuthorizerKind(name) == "http" && in.raw != nil {
		// An HTTP authorizer needs the request's headers, which the
		// fast path did not read: decode the message in full.
		m := &authv3.CheckRequest{}
		if err := proto.Unmarshal(in.raw, m); err == nil {
			r = &authorizer.Request{Check: m}
		}
	}
	if in.raw == nil {
		// Read before the configuration with authorizers came in force:
		// nothing to send, so the request fails closed.
		r = &authorizer.Request{}
	}
	out := a.merge(ctx, e, name, d, r)
	if out.Pass && !d.ReportOnly && out.OK == nil && out.DynamicMetadata == nil &&
		len(out.RequestHeaders) == 0 && len(out.RemoveRequestHeaders) == 0 {
		return a.fixed.answer(e, d)
	}
	return outcomeResponse(&out)
}

// outcomeResponse is the ext_authz answer of a merged outcome: a pass is
// an ok_response (the gRPC authorizer's own, in full, when there was one)
// with the CORS headers added; anything else a denied_response with the
// status, headers and body.
func outcomeResponse(out *authorizer.Outcome) *authv3.CheckResponse {
	if !out.Pass {
		resp := deniedResponse(out.Status, out.Headers)
		resp.GetDeniedResponse().Body = string(out.Body)
		resp.DynamicMetadata = out.DynamicMetadata
		return resp
	}
	ok := out.OK
	if ok == nil {
		ok = &authv3.OkHttpResponse{}
	}
	for _, h := range out.RequestHeaders {
		ok.Headers = append(ok.Headers, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: h.Name, Value: h.Value},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	ok.HeadersToRemove = append(ok.HeadersToRemove, out.RemoveRequestHeaders...)
	ok.ResponseHeadersToAdd = append(ok.ResponseHeadersToAdd, headerOptions(out.Headers)...)
	return &authv3.CheckResponse{
		Status:          &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: ok},
		DynamicMetadata: out.DynamicMetadata,
	}
}

// authorizerMetrics is nil-safe: an Authz without Metrics counts nothing.
func (m *Metrics) authorizerMetrics() *authorizer.Metrics {
	if m == nil {
		return nil
	}
	return m.authorizers
}

// closeAuthorizers closes the authorizer clients (at shutdown).
func (a *Authz) closeAuthorizers() { a.authorizers.pool.Close() }

// Close releases the Authz's authorizer clients: their connections close
// and calls in flight to them fail. A Server closes its own at shutdown.
func (a *Authz) Close() { a.closeAuthorizers() }
