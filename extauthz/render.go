package extauthz

import (
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/decision"
	"github.com/corsauthz/corsauthz/internal/grpcfail"
	"github.com/corsauthz/corsauthz/policy"
)

// This file writes an outcome of the decision core as a CheckResponse (the
// typed path; wire_response.go writes the same bytes directly):
//
//   - a pass is status OK with ok_response: the CORS headers in
//     response_headers_to_add (Access-Control-* OVERWRITE_IF_EXISTS_OR_ADD,
//     Vary APPEND_IF_EXISTS_OR_ADD), and, when an authorizer allowed, what
//     it asked for the upstream request (a gRPC authorizer's ok_response
//     in full, sanitised by the authorizer package; an HTTP authorizer's
//     upstream headers to set and remove);
//   - a direct answer is PERMISSION_DENIED with denied_response {status,
//     headers, body};
//   - a failure is a gRPC error (see failureError).

// okNoHeaders is the answer to every pass-on that adds no header (no
// policy, report-only): shared, as it never changes.
var okNoHeaders = &authv3.CheckResponse{
	Status:       &rpcstatus.Status{Code: int32(codes.OK)},
	HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
}

// checkResponse is the ext_authz answer of out.
func checkResponse(out *decision.Outcome) (*authv3.CheckResponse, error) {
	if out.Action == decision.Fail {
		return nil, grpcfail.Error(out.Failure)
	}
	var buf [policy.MaxHeaders]policy.Header
	headers := out.AppendHeaders(buf[:0])
	if out.Action == decision.Respond {
		resp := deniedResponse(out.Status, headers)
		if d := out.Denial(); d != nil {
			resp.GetDeniedResponse().Body = string(out.Body)
			resp.DynamicMetadata = d.DynamicMetadata
		} else if len(out.Body) > 0 {
			resp.GetDeniedResponse().Body = string(out.Body)
		}
		return resp, nil
	}
	up := out.Upstream()
	if up == nil {
		if len(headers) == 0 {
			return okNoHeaders, nil
		}
		return okResponse(headers), nil
	}
	return upstreamResponse(up), nil
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

func okResponse(headers []policy.Header) *authv3.CheckResponse {
	m := &okMessages{}
	m.status.Code = int32(codes.OK)
	m.ok.ResponseHeadersToAdd = authorizer.HeaderOptions(headers)
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
	m.denied.Headers = authorizer.HeaderOptions(headers)
	m.oneof.DeniedResponse = &m.denied
	m.resp.Status = &m.status
	m.resp.HttpResponse = &m.oneof
	return &m.resp
}

// upstreamResponse is the answer to a request an authorizer allowed: its
// ok_response (authorizer.Outcome.OkHTTPResponse: the gRPC authorizer's
// own, made safe, or the HTTP authorizer's upstream headers to set and
// remove) with the CORS response headers, and its dynamic metadata.
func upstreamResponse(up *authorizer.Outcome) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status:          &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: up.OkHTTPResponse()},
		DynamicMetadata: up.DynamicMetadata,
	}
}
