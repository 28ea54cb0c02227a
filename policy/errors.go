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

// UnknownPolicyError carries the name that was asked for.
type UnknownPolicyError struct{ Name string }

func (e *UnknownPolicyError) Error() string {
	// The name comes from a request: cut, as it reaches logs and callers.
	return fmt.Sprintf("policy %q is not configured (the gateway's cors_policy names a policy this configuration does not have)", limits.Cut(e.Name))
}

// Is makes errors.Is(err, ErrUnknownPolicy) true.
func (e *UnknownPolicyError) Is(target error) bool { return target == ErrUnknownPolicy }
