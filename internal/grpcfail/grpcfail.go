// Package grpcfail writes the decision core's failures as gRPC errors, for
// the gRPC front ends (ext_authz and the decision API): one mapping, so
// that both answer a failure with the same code.
package grpcfail

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corsauthz/corsauthz/decision"
)

// codesByKind are the gRPC codes of the core's failures. Envoy answers a
// non-OK Check with its status_on_error, never a pass.
var codesByKind = [...]codes.Code{
	decision.Unreadable:      codes.InvalidArgument,
	decision.UnknownPolicy:   codes.FailedPrecondition,
	decision.NoConfiguration: codes.Unavailable,
	decision.Internal:        codes.Internal,
}

// Code is the gRPC code of a failure of kind k.
func Code(k decision.FailureKind) codes.Code {
	if int(k) < len(codesByKind) {
		return codesByKind[k]
	}
	return codes.Internal
}

// Error is the gRPC error of f.
func Error(f *decision.Failure) error {
	return status.Error(Code(f.Kind), f.Message)
}
