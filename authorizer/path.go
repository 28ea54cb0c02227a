package authorizer

import "strings"

// ForwardedPath is what forward_path appends to an HTTP authorizer's URL
// for a request whose path and query, as on its request line, are
// pathAndQuery: the path after dot-segment removal (RFC 3986 section
// 5.2.4), with "%2e" and "%2E" counting as ".", then the query as it came.
// So "/public/../admin" and "/public/%2e%2e/admin" are both checked as
// "/admin", the path the upstream serves, and a check can never climb
// out of the URL's path.
//
// ok is false for a path holding an encoded "/" or "\" ("%2f", "%5c", in
// any case) or a "\": servers disagree on whether those separate segments,
// so no normalisation makes the authorizer see the path the upstream
// serves. Such a request is refused (400) before any authorizer is asked.
//
// Bytes that cannot stand in a URL's path or query (controls, spaces,
// non-ASCII, a "%" that starts no escape) are percent-encoded; a fragment
// is dropped.
func ForwardedPath(pathAndQuery string) (string, bool) {
	path, query, hasQuery := strings.Cut(pathAndQuery, "?")
	if i := strings.IndexByte(path, '#'); i >= 0 {
		path, query, hasQuery = path[:i], "", false
	}
	if i := strings.IndexByte(query, '#'); i >= 0 {
		query = query[:i]
	}
	if strings.IndexByte(path, '\\') >= 0 {
		return "", false
	}
	if indexFold(path, "%2f") >= 0 || indexFold(path, "%5c") >= 0 {
		return "", false
	}
	path = replaceFold(path, "%2e", ".")
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	out := escapeInvalid(RemoveDotSegments(path), false)
	if hasQuery {
		out += "?" + escapeInvalid(query, true)
	}
	return out, true
}

// RemoveDotSegments is RFC 3986 section 5.2.4's remove_dot_segments for
// an absolute path: "." and ".." segments are resolved, and ".." never
// climbs above "/". A path ending in "." or ".." ends in "/".
func RemoveDotSegments(path string) string {
	if !strings.Contains(path, ".") {
		return path
	}
	segments := strings.Split(strings.TrimPrefix(path, "/"), "/")
	out := make([]string, 0, len(segments))
	for i, s := range segments {
		last := i == len(segments)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	return "/" + strings.Join(out, "/")
}

// replaceFold replaces every old in s, compared ASCII-case-insensitively.
func replaceFold(s, old, repl string) string {
	i := indexFold(s, old)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i >= 0 {
		b.WriteString(s[:i])
		b.WriteString(repl)
		s = s[i+len(old):]
		i = indexFold(s, old)
	}
	b.WriteString(s)
	return b.String()
}

func indexFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

// escapeInvalid percent-encodes the bytes that cannot stand in a URL's
// path (or query): controls, space, non-ASCII, the delimiters RFC 3986
// leaves out ("\"<>^`{|}"), "#", "?" in a path, and a "%" that starts no
// escape.
func escapeInvalid(s string, query bool) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if mustEscape(s, i, query) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		if c := s[i]; mustEscape(s, i, query) {
			b = append(b, '%', hex[c>>4], hex[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

func mustEscape(s string, i int, query bool) bool {
	switch c := s[i]; {
	case c <= ' ' || c >= 0x7f:
		return true
	case c == '%':
		return i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2])
	case c == '?':
		return !query
	default:
		return strings.IndexByte("\"<>^`{|}#", c) >= 0
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
