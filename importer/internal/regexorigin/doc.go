// Package regexorigin turns a regular expression that a gateway matches
// against the Origin header into corsauthz origins (exact origins and
// "scheme://*.domain" patterns), and proves the translation admits exactly
// the origins the expression admits, or says which origins differ.
//
// The proof works on the expression's parse tree (regexp/syntax), not on
// guesses: the expression, the candidate translation and the set of
// origins a browser can send are each turned into an automaton, and the
// product of the three is explored to its end. Two sets are the same when no
// reachable state is a browser origin that one admits and the other does
// not; otherwise the search yields the shortest such origins as examples.
//
// "Origins a browser can send" is the universe the comparison is made in:
// the literal "null", or scheme "://" host [":" port] with a lower-case
// scheme, a host of dot-separated labels made of a-z, 0-9, '-' and '_' (or
// a bracketed IPv6 address), and a port of one to five digits with no
// leading zero that is not the scheme's default (443 for https, 80 for
// http). Strings outside it (upper case, paths, spaces) never reach a match
// in corsauthz and are ignored; so are lengths (corsauthz refuses an Origin
// longer than 2048 bytes, or whose host is longer than 253).
//
// Anchoring follows the source: Envoy's safe_regex (Istio's regex, Envoy
// Gateway's wildcards) matches the whole value; ingress-nginx writes
// "~* (...)$", anchored at the end only and case-insensitive.
package regexorigin
