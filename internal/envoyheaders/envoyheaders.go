// Package envoyheaders applies Envoy's HeaderValueOptions to HTTP headers
// the way Envoy does: the Go middleware applies a Check's or a gRPC
// authorizer's upstream request edits with it, and the tests that stand in
// for an Envoy in front of corsauthz (e2e's gateway, the agreement tests)
// read a CheckResponse with it, so that all read one the same way.
package envoyheaders

import (
	"net/http"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// Apply applies header value options to h as Envoy applies them to
// a response (or a local reply, or the upstream request):
//
//   - APPEND_IF_EXISTS_OR_ADD adds one more header entry (a new line: for
//     Vary, "Vary: Accept-Encoding" then "Vary: Origin");
//   - ADD_IF_ABSENT adds the header only when it is not there;
//   - OVERWRITE_IF_EXISTS_OR_ADD replaces every value with this one;
//   - OVERWRITE_IF_EXISTS replaces only a header that is there.
//
// The deprecated boolean append, when set, wins: true appends to the last
// existing entry with "," (Envoy's appendCopy) or adds, false overwrites.
func Apply(h http.Header, opts []*corev3.HeaderValueOption) {
	for _, o := range opts {
		key := http.CanonicalHeaderKey(o.GetHeader().GetKey())
		value := o.GetHeader().GetValue()
		if raw := o.GetHeader().GetRawValue(); len(raw) > 0 {
			value = string(raw)
		}
		exists := len(h[key]) > 0
		action := o.GetAppendAction()
		if deprecated := o.GetAppend(); deprecated != nil {
			action = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
			if deprecated.GetValue() && exists {
				h[key][len(h[key])-1] += "," + value
				continue
			} else if deprecated.GetValue() {
				action = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
			}
		}
		switch action {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			h[key] = append(h[key], value)
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			if !exists {
				h[key] = []string{value}
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if exists {
				h[key] = []string{value}
			}
		default: // OVERWRITE_IF_EXISTS_OR_ADD; Envoy reads an unknown action as this one
			h[key] = []string{value}
		}
	}
}
