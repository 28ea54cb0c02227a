// Package acrh reads the Access-Control-Request-Headers value of a preflight.
//
// Browsers send a lower-case, sorted, comma-separated list without spaces,
// but intermediaries and non-browser clients do not always: the reader
// accepts any case, optional whitespace (spaces and tabs) around the commas,
// empty elements and duplicates, and it never allocates. A value longer
// than MaxLen is refused before it is read, so a hostile preflight costs
// little.
package acrh

// MaxLen is the longest Access-Control-Request-Headers value accepted. Real
// browsers send a few hundred bytes at most; anything past this limit makes
// the preflight fail.
const MaxLen = 4096

// Next returns the next non-empty element of the list s starting at offset i,
// with surrounding whitespace removed, and the offset to continue from. It
// returns ok == false when no element is left.
func Next(s string, i int) (elem string, next int, ok bool) {
	for i < len(s) {
		// Skip separators and whitespace before an element.
		for i < len(s) && (s[i] == ',' || s[i] == ' ' || s[i] == '\t') {
			i++
		}
		start := i
		for i < len(s) && s[i] != ',' {
			i++
		}
		end := i
		for end > start && (s[end-1] == ' ' || s[end-1] == '\t') {
			end--
		}
		if end > start {
			return s[start:end], i, true
		}
	}
	return "", i, false
}
