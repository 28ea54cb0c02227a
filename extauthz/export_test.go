package extauthz

import (
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/corsauthz/corsauthz/decision"
	"github.com/corsauthz/corsauthz/policy"
)

// Hooks into the fast path for the black-box tests.

// DecodeWire reads data as the fast path's codec does and returns the
// request and readRequest's message, as Check would get them; typed says
// the request took the typed path.
func DecodeWire(data []byte) (r policy.Request, problem string, typed bool, err error) {
	var w wireRequest
	problem, err = decodeCheck(data, &w, &r)
	if err != nil {
		return policy.Request{}, "", false, err
	}
	return r, problem, false, nil
}

// ReadRequest is what Check reads of an unmarshalled request.
func ReadRequest(req *authv3.CheckRequest) (policy.Request, string) {
	var r policy.Request
	msg := readRequest(req, &r)
	return r, msg
}

// EncodeWire is the fast path's serialized answer to d, and CheckResponse
// the typed path's.
func EncodeWire(d *policy.Decision) []byte { return encodeDecision(d).bytes() }

func CheckResponse(d *policy.Decision) *authv3.CheckResponse {
	out := decision.Plain(*d, nil)
	resp, err := checkResponse(&out)
	if err != nil {
		panic(err) // a plain outcome is never a failure
	}
	return resp
}
