// Package origin parses the origins an operator lists in a policy and
// matches the Origin header values browsers send against them.
//
// A browser serializes an origin as scheme "://" host [":" port] with a
// lower-case scheme and host, Punycode for international names, compressed
// IPv6 in brackets and no default port. Request values are compared with
// listed origins byte for byte, so anything an operator writes that no
// browser would send is either normalised here (with a warning) or refused
// (with a suggestion).
//
// A pattern "scheme://*.example.com[:port]" matches one or more whole labels
// in front of the given domain, and never the domain itself.
package origin
