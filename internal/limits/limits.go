// Package limits holds the bounds (docs/operations-and-limits.md, "Limits")
// that every front end (ext_authz, the decision API, an HTTP authorization
// listener) applies to what a client sends, so that no request buys
// unbounded CPU, memory or log: the sizes past which a request is refused
// before it is built, how much of a client's or a file's value may reach a
// log line, an error message or a gRPC status (Cut), and the rate of the
// log lines requests cause (RequestLog).
//
// The values are those of Envoy's defaults with a wide margin (Envoy
// accepts 60 KiB of request headers and 100 headers by default), so a
// request past one is not a browser's.
package limits

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Request limits.
const (
	// MethodLen bounds the request method, in bytes.
	MethodLen = 64
	// HostLen bounds the host (the :authority).
	HostLen = 8 << 10
	// PathLen bounds the path, query included.
	PathLen = 64 << 10
	// HeaderCount bounds the header entries of one request (for ext_authz:
	// the entries of headers, or of header_map, as sent; a key sent twice
	// counts twice).
	HeaderCount = 1000
	// HeaderValueLen bounds each value CORS reads: Origin, the
	// Access-Control-Request-* headers, the policy a gateway names.
	HeaderValueLen = 64 << 10
	// MessageSize bounds a whole request message (gRPC: the default of
	// --max-recv-msg-size; a CheckRequest is a few KiB).
	MessageSize = 1 << 20
	// MetadataSize bounds a call's request headers (gRPC metadata, HTTP/2
	// header list, uncompressed): gRPC's own default is 16 MiB a call.
	MetadataSize = 64 << 10
	// HTTPHeaderBytes bounds all the header lines of one request to the
	// HTTP authorization listener together, before any is read (net/http
	// answers 431 past it): twice Envoy's 60 KiB default.
	HTTPHeaderBytes = 128 << 10
)

// LoggedValueLen bounds how much of one value from a request or a file a
// log line, an error message or a gRPC status carries.
const LoggedValueLen = 256

// Cut returns s when it is at most LoggedValueLen bytes long; otherwise
// its first LoggedValueLen bytes (fewer, to end on a whole UTF-8
// character) and a marker saying how long s was, such as
// "https://aaaa…[cut: 1000000 bytes]".
func Cut(s string) string {
	if len(s) <= LoggedValueLen {
		return s
	}
	return Prefix(s, LoggedValueLen) + "…[cut: " + strconv.Itoa(len(s)) + " bytes]"
}

// Prefix returns at most the first n bytes of s, fewer when the n-th byte
// is inside a UTF-8 character: the one truncator of every front end, so
// that no cut value ends in half a character.
func Prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	i := n
	for i > n-utf8.UTFMax && i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// TooLong returns "" or the message for field prefix+name of n bytes, more
// than limit.
func TooLong(prefix, name string, n, limit int) string {
	if n <= limit {
		return ""
	}
	return fmt.Sprintf("%s%s is %d bytes long, more than the limit of %d", prefix, name, n, limit)
}

// CheckRequestLine returns "" or the message for a method, host or path of
// these lengths past MethodLen, HostLen or PathLen; prefix names where the
// fields are in the request ("attributes.request.http." for a
// CheckRequest, "" for a DecideRequest).
func CheckRequestLine(prefix string, methodLen, hostLen, pathLen int) string {
	if msg := TooLong(prefix, "method", methodLen, MethodLen); msg != "" {
		return msg
	}
	if msg := TooLong(prefix, "host", hostLen, HostLen); msg != "" {
		return msg
	}
	return TooLong(prefix, "path", pathLen, PathLen)
}
