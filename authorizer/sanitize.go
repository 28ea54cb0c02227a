package authorizer

import "strings"

// This file holds what an authorizer's answer may carry to a gateway. Its
// checks are constant-time per header (fixed lists, no scan of the
// answer), so that reading and merging an answer stays linear in its size.

// sendable reports whether a header of an authorizer's answer may be
// passed on, to the browser or to the upstream:
//
//   - no Access-Control-* header: only corsauthz speaks CORS, and an
//     authorizer's would grant what the policy refuses;
//   - no framing or hop-by-hop header (Content-Length, Transfer-Encoding,
//     Connection, Keep-Alive, Upgrade, TE, Trailer, Proxy-*): they
//     describe the authorizer's connection, and relayed they would frame
//     the gateway's answer;
//   - no X-Accel-* header: NGINX acts on them (X-Accel-Redirect turned a
//     401 into an internal redirect to a granted page);
//   - nothing that cannot be written as an HTTP header: a name that is
//     not a token (gRPC allows any string, ":status" included) or a value
//     with a control character (a CR or LF would split the answer).
func sendable(name, value string) bool {
	if !isToken(name) || len(name) > maxHeaderNameBytes || !validValue(value) {
		return false
	}
	switch name[0] {
	case 'a', 'A':
		return !hasPrefixFold(name, "access-control-")
	case 'x', 'X':
		return !hasPrefixFold(name, "x-accel-")
	case 'p', 'P':
		return !hasPrefixFold(name, "proxy-")
	}
	return !isHopByHop(name)
}

// isHopByHop reports whether name is a framing or hop-by-hop header
// (RFC 9110 section 7.6.1, and Content-Length), whatever its case.
func isHopByHop(name string) bool {
	switch len(name) {
	case 2:
		return strings.EqualFold(name, "te")
	case 7:
		return strings.EqualFold(name, "trailer") || strings.EqualFold(name, "upgrade")
	case 10:
		return strings.EqualFold(name, "connection") || strings.EqualFold(name, "keep-alive")
	case 14:
		return strings.EqualFold(name, "content-length")
	case 17:
		return strings.EqualFold(name, "transfer-encoding")
	}
	return false
}

// maxHeaderNameBytes bounds a header name passed on.
const maxHeaderNameBytes = 256

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// tchar marks the bytes of an HTTP token (RFC 9110 section 5.6.2).
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tchar[s[i]] {
			return false
		}
	}
	return true
}

// validValue reports whether v can be a field value: no control
// character but horizontal tab (RFC 9110 section 5.5).
func validValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
