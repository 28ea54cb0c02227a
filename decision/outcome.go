package decision

import (
	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/policy"
)

// Action is what the gateway does with the request.
type Action uint8

const (
	// Pass: the request goes on upstream; the response gets the headers of
	// [Outcome.AppendHeaders], the request those of [Outcome.Upstream].
	Pass Action = iota
	// Respond: the gateway answers the request itself with
	// [Outcome.Status], the headers of [Outcome.AppendHeaders] and
	// [Outcome.Body].
	Respond
	// Fail: no decision could be made ([Outcome.Failure] says why); the
	// front end answers with its protocol's error, never a pass.
	Fail
)

var actionNames = [...]string{Pass: "pass", Respond: "respond", Fail: "fail"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "unknown"
}

// Outcome is the front-end-neutral answer to one request. It is read-only
// once returned.
type Outcome struct {
	Action Action
	// Status is the HTTP status of a Respond: 204 or 403 for a CORS
	// answer, an authorizer's denial status (always 400-599), 400 for a
	// path an authorizer may not be sent, 503 when the authorizer failed.
	Status int
	// Body is a Respond's body: an authorizer's denial or the one line of
	// a failure; empty for CORS answers.
	Body []byte

	// Decision is the CORS decision (zero for a Fail), and Engine the
	// configuration that made it: a front end may encode answers that
	// depend only on the policy once per engine ([Outcome.Plain]).
	Decision policy.Decision
	Engine   *policy.Engine
	// Authorizer names the authorizer that was asked, or "".
	Authorizer string

	// Failure says why, for a Fail.
	Failure *Failure

	// auth is the merged answer when an authorizer was asked.
	auth *authorizer.Outcome
}

// Plain returns the outcome of the CORS decision d alone, made by e: a
// direct answer (not report-only) responds, anything else passes.
func Plain(d policy.Decision, e *policy.Engine) Outcome {
	out := Outcome{Decision: d}
	out.plain(e)
	return out
}

// plain makes o, holding its Decision, the outcome of that decision alone,
// made by e.
func (o *Outcome) plain(e *policy.Engine) {
	o.Engine = e
	if o.Decision.Direct() {
		o.Action, o.Status = Respond, o.Decision.Status
	}
}

// Plain reports whether the outcome is the CORS decision alone (no
// authorizer was asked), so that its answer depends only on Decision.
func (o *Outcome) Plain() bool { return o.auth == nil && o.Action != Fail }

// AppendHeaders appends the response headers of the outcome to dst: for a
// Pass, those to put on the upstream's response (Append: append to its
// value, else replace it); for a Respond, the answer's headers. A
// report-only decision adds none. With a dst of capacity
// policy.MaxHeaders a plain outcome appends without allocating.
func (o *Outcome) AppendHeaders(dst []policy.Header) []policy.Header {
	switch {
	case o.Action == Fail:
		return dst
	case o.auth != nil:
		return append(dst, o.auth.Headers...)
	}
	return o.Decision.AppendResponseHeaders(dst)
}

// Upstream is what an authorizer that allowed the request asked for the
// request going upstream (headers to set and remove, and for a gRPC
// authorizer its ok_response and dynamic metadata), or nil when no
// authorizer allowed it.
func (o *Outcome) Upstream() *authorizer.Outcome {
	if o.auth == nil || !o.auth.Pass {
		return nil
	}
	return o.auth
}

// Denial is the gRPC authorizer's dynamic metadata of a Respond that
// carries an authorizer's denial, or nil: ext_authz passes it on.
func (o *Outcome) Denial() *authorizer.Outcome {
	if o.auth == nil || o.auth.Pass {
		return nil
	}
	return o.auth
}

// FailureKind says why a request could not be decided.
type FailureKind uint8

const (
	// Unreadable: the request is past a limit or cannot be read
	// (ext_authz: InvalidArgument; HTTP: 400 or 431).
	Unreadable FailureKind = iota
	// UnknownPolicy: the request names a policy (cors_policy,
	// X-Corsauthz-Policy) the configuration does not have, or a group
	// the configuration refuses (FailedPrecondition; HTTP 503).
	UnknownPolicy
	// NoConfiguration: no configuration is loaded (Unavailable; 503).
	NoConfiguration
	// Internal: anything else (Internal; 503).
	Internal
)

// failureNames are the gRPC code names the kinds map to, the values of
// the outcome metric label (as before the core existed).
var failureNames = [...]string{
	Unreadable:      "InvalidArgument",
	UnknownPolicy:   "FailedPrecondition",
	NoConfiguration: "Unavailable",
	Internal:        "Internal",
}

func (k FailureKind) String() string {
	if int(k) < len(failureNames) {
		return failureNames[k]
	}
	return "Internal"
}

// Failure is a request that could not be decided.
type Failure struct {
	Kind FailureKind
	// Message says why in one line; every value from the request in it
	// is cut (limits.Cut).
	Message string
	// Err is the underlying error, when there is one (such as a
	// *policy.UnknownPolicyError).
	Err error
}

func (f *Failure) Error() string { return f.Message }

func (f *Failure) Unwrap() error { return f.Err }
