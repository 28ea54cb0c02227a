package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/corsauthz/corsauthz/internal/limits"
)

// FieldError is one problem (or, among warnings, one remark) about a
// configuration: where it is and what to do about it.
//
// Errors are returned all at once, joined with [errors.Join]; use
// [FieldErrors] to get them back as a slice.
type FieldError struct {
	// File, Line and Column locate the value in the source; they are empty
	// for a Config built in Go rather than loaded from a file.
	File   string
	Line   int
	Column int
	// Path is the field path, such as "policies[0].allowed_origins[2]".
	Path string
	// Message says what is wrong and what to write instead.
	Message string
}

// Error formats the problem as FILE:LINE:COL: FIELD.PATH: message, leaving
// out the parts that are unknown.
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
		if e.Line > 0 {
			fmt.Fprintf(&b, "%d:%d:", e.Line, e.Column)
		}
		b.WriteByte(' ')
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// FieldErrors returns every *FieldError in err, in order. It is the inverse
// of the errors.Join that [Load] and [Compile] return.
func FieldErrors(err error) []*FieldError {
	if err == nil {
		return nil
	}
	var out []*FieldError
	var fe *FieldError
	if errors.As(err, &fe) && !isJoined(err) {
		return []*FieldError{fe}
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, FieldErrors(e)...)
		}
	}
	return out
}

func isJoined(err error) bool {
	_, ok := err.(interface{ Unwrap() []error })
	return ok
}

// ErrUnknownPolicy is returned by [Engine.Decide] when the request names a
// policy that the configuration does not have: a mismatch between gateway and
// service configuration that must be fixed, never silently allowed.
var ErrUnknownPolicy = errors.New("no policy of that name is configured")

// ErrConfigurationMismatch is matched (errors.Is) by every error of
// [Engine.Decide]: the request names policies the configuration cannot
// serve as named, so the gateway's configuration and corsauthz's disagree.
// Front ends answer it as a failure (never a pass) and log it.
var ErrConfigurationMismatch = errors.New("the gateway's configuration does not match corsauthz's")

// UnknownPolicyError carries the name that was asked for.
type UnknownPolicyError struct{ Name string }

func (e *UnknownPolicyError) Error() string {
	// The name comes from a request: cut, as it reaches logs and callers.
	return fmt.Sprintf("policy %q is not configured (the gateway's cors_policy names a policy this configuration does not have)", limits.Cut(e.Name))
}

// Is makes errors.Is(err, ErrUnknownPolicy) and
// errors.Is(err, ErrConfigurationMismatch) true.
func (e *UnknownPolicyError) Is(target error) bool {
	return target == ErrUnknownPolicy || target == ErrConfigurationMismatch
}

// GroupAuthorizerError is the error of a request whose cors_policy names
// a group of policies ("app,partners") that do not all ask the same
// authorizer. Among the policies of a group the request's Origin picks
// the one that decides, so if their authorizers differed the client
// would choose who authorizes it, or that nobody does: the request is
// refused instead, as a configuration mismatch. (Policies that share a
// match are checked when the configuration is loaded; a group named by
// the gateway is only known when a request names it.)
type GroupAuthorizerError struct {
	// Group is the cors_policy value; First and Other two of its policies
	// with their authorizers ("" for none).
	Group                  string
	First, FirstAuthorizer string
	Other, OtherAuthorizer string
}

func (e *GroupAuthorizerError) Error() string {
	name := func(a string) string {
		if a == "" {
			return "no authorizer"
		}
		return fmt.Sprintf("authorizer %q", limits.Cut(a))
	}
	return fmt.Sprintf("cors_policy %q names policies that ask different authorizers (%q asks %s, %q asks %s), so the request's Origin would choose who authorizes it: give the policies of a group the same authorizer",
		limits.Cut(e.Group), e.First, name(e.FirstAuthorizer), e.Other, name(e.OtherAuthorizer))
}

// Is makes errors.Is(err, ErrConfigurationMismatch) true, and
// errors.Is(err, ErrUnknownPolicy) too, so that a front end that refuses
// an unknown policy as a mismatch refuses this request the same way.
func (e *GroupAuthorizerError) Is(target error) bool {
	return target == ErrConfigurationMismatch || target == ErrUnknownPolicy
}
