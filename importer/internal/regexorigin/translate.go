package regexorigin

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"sync"
)

// Anchor says how the source applies the expression to the Origin value.
type Anchor int

const (
	// Full: the whole value must match (Envoy's safe_regex, RE2 FullMatch).
	Full Anchor = iota
	// End: the match must end at the end of the value but may start
	// anywhere (ingress-nginx's "~* (...)$").
	End
)

// Options describe how the source matches.
type Options struct {
	// FoldCase matches letters in either case (nginx's "~*", Envoy's
	// ignore_case).
	FoldCase bool
	Anchor   Anchor
}

// Result is a translation and what its proof found.
type Result struct {
	// Exact and Wildcards are the corsauthz origins the expression reads
	// as: exact origins, and "scheme://*.domain[:port]" patterns.
	Exact, Wildcards []string
	// Any is set when the expression admits every origin: corsauthz "*".
	Any bool
	// Same reports that Exact, Wildcards (or Any) admit exactly the
	// origins the expression admits.
	Same bool
	// Extra holds origins the expression admits that the translation does
	// not; Missing, origins the translation admits that the expression
	// does not. Both are empty when Same. Admitted holds some origins the
	// expression admits (none when it admits no browser origin at all).
	Extra, Missing, Admitted []string
}

// InvalidError is an expression that does not parse.
type InvalidError struct {
	Expr string
	Err  error
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("invalid regular expression %q: %v", e.Expr, e.Err)
}

func (e *InvalidError) Unwrap() error { return e.Err }

// universe and excluded define the origins a browser can send (see the
// package comment): universe minus excluded.
var (
	universeExpr = `null|[a-z][a-z0-9+.\-]*://(?:[a-z0-9_\-]+(?:\.[a-z0-9_\-]+)*|\[[0-9a-f:.]+\])(?::[1-9][0-9]{0,4})?`
	excludedExpr = `https://.*:443|http://.*:80`
)

func mustDFA(expr string) *dfa {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		panic(err)
	}
	n, err := compile(re.Simplify(), true)
	if err != nil {
		panic(err)
	}
	return newDFA(n, nil)
}

// Translate reads expr as a set of origins. An error means the expression
// could not be read at all (an *InvalidError, or ErrTooComplex); otherwise
// Result.Same says whether the translation is exact.
func Translate(expr string, opt Options) (*Result, error) {
	if len(expr) > MaxLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrTooComplex, MaxLen)
	}
	flags := syntax.Perl
	if opt.FoldCase {
		flags |= syntax.FoldCase
	}
	re, err := syntax.Parse(expr, flags)
	if err != nil {
		return nil, &InvalidError{Expr: expr, Err: err}
	}
	re = re.Simplify()
	rn, err := compile(re, opt.Anchor == Full)
	if err != nil {
		return nil, err
	}
	work := &budget{left: maxWork}
	r := newDFA(rn, work)
	u, x := mustDFA(universeExpr), mustDFA(excludedExpr)
	u.budget, x.budget = work, work
	inUniverse := func(s string) bool { return u.matches(s) && !x.matches(s) }

	res := &Result{}
	exact, wild, any := candidates(re, opt.FoldCase)
	if any {
		res.Any = true
	} else {
		for _, e := range exact {
			if inUniverse(e) && !slices.Contains(res.Exact, e) {
				res.Exact = append(res.Exact, e)
			}
		}
		for _, w := range wild {
			if ok := inUniverse(strings.Replace(w, "*", "x", 1)); ok && !slices.Contains(res.Wildcards, w) {
				res.Wildcards = append(res.Wildcards, w)
			}
		}
	}
	cre, err := syntax.Parse(candidateExpr(res), syntax.Perl)
	if err != nil {
		return nil, err // a bug: candidateExpr quotes everything
	}
	cn, err := compile(cre.Simplify(), true)
	if err != nil {
		return nil, err
	}
	c := newDFA(cn, work)
	cmp, err := compare(r, c, u, x)
	if err != nil {
		return nil, err
	}
	res.Same = len(cmp.extra) == 0 && len(cmp.missing) == 0
	if res.Same && res.Any {
		res.Exact, res.Wildcards = nil, nil
	}
	if !res.Same && res.Any {
		res.Any = false
	}
	// Probes first: origins people recognise (the confusion origins of
	// the candidates), then the shortest ones the search found.
	var missing []string
	for _, p := range probes(res, exact, wild) {
		if !inUniverse(p) {
			continue
		}
		if !r.matches(p) {
			if c.matches(p) && !slices.Contains(missing, p) {
				missing = append(missing, p)
			}
			continue
		}
		if !c.matches(p) && !slices.Contains(res.Extra, p) {
			res.Extra = append(res.Extra, p)
		}
		if !slices.Contains(res.Admitted, p) {
			res.Admitted = append(res.Admitted, p)
		}
	}
	for _, e := range cmp.extra {
		if !slices.Contains(res.Extra, e) {
			res.Extra = append(res.Extra, e)
		}
	}
	res.Missing = missing
	for _, e := range cmp.missing {
		if !slices.Contains(res.Missing, e) {
			res.Missing = append(res.Missing, e)
		}
	}
	// Origins with the schemes browsers send first.
	webFirst := func(a, b string) int {
		wa := strings.HasPrefix(a, "https://") || strings.HasPrefix(a, "http://")
		wb := strings.HasPrefix(b, "https://") || strings.HasPrefix(b, "http://")
		switch {
		case wa && !wb:
			return -1
		case wb && !wa:
			return 1
		}
		return 0
	}
	slices.SortStableFunc(res.Extra, webFirst)
	for _, e := range cmp.admitted {
		if !slices.Contains(res.Admitted, e) {
			res.Admitted = append(res.Admitted, e)
		}
	}
	slices.SortStableFunc(res.Admitted, webFirst)
	return res, nil
}

// candidateExpr is the translation as an expression, for the proof.
func candidateExpr(res *Result) string {
	if res.Any {
		return `(?s:.+)`
	}
	var alts []string
	for _, e := range res.Exact {
		alts = append(alts, regexp.QuoteMeta(e))
	}
	for _, w := range res.Wildcards {
		scheme, domain, _ := strings.Cut(w, "://*.")
		alts = append(alts, regexp.QuoteMeta(scheme+"://")+`[a-z0-9_\-]+(?:\.[a-z0-9_\-]+)*\.`+regexp.QuoteMeta(domain))
	}
	if len(alts) == 0 {
		return `[^\x00-\x{10FFFF}]` // matches nothing
	}
	return strings.Join(alts, "|")
}

// atom is one position of a branch: a literal byte, or a wide part (a
// class of several characters, a repetition) kept as its parse tree.
type atom struct {
	lit  byte
	wide *syntax.Regexp
}

const maxBranches = 64

// candidates reads the expression's intended origins off its structure:
// each alternative (optional parts expanded) that is a literal is an exact
// origin; one whose only wide parts sit between "scheme://" and a literal
// ".domain" is a wildcard; a lone ".*" or ".+" is any origin. An unescaped
// '.' is read as the literal dot its author most likely meant, so that the
// proof then shows what else it admits. These are only candidates: the
// proof decides.
func candidates(re *syntax.Regexp, fold bool) (exact, wild []string, any bool) {
	branches, ok := expand(re, fold)
	if !ok {
		return nil, nil, false
	}
	for _, b := range branches {
		var lits []byte
		first, last := -1, -1
		for i, a := range b {
			if a.wide != nil && (a.wide.Op == syntax.OpAnyCharNotNL || a.wide.Op == syntax.OpAnyChar) {
				b[i] = atom{lit: '.'}
				a = b[i]
			}
			if a.wide != nil {
				if first < 0 {
					first = i
				}
				last = i
			}
			lits = append(lits, a.lit)
		}
		if first < 0 {
			exact = append(exact, normalize(string(lits)))
			continue
		}
		prefix, suffix := litString(b[:first]), litString(b[last+1:])
		if first == 0 && last == len(b)-1 && isAnyRepeat(b[0].wide) && len(b) == 1 {
			any = true
			continue
		}
		if !strings.HasSuffix(prefix, "://") || suffix == "" {
			continue
		}
		if suffix[0] == '.' {
			wild = append(wild, normalize(prefix+"*"+suffix))
		} else {
			wild = append(wild, normalize(prefix+"*."+suffix))
			exact = append(exact, normalize(prefix+suffix))
		}
	}
	return exact, wild, any
}

func isAnyRepeat(re *syntax.Regexp) bool {
	if re.Op != syntax.OpStar && re.Op != syntax.OpPlus {
		return false
	}
	op := re.Sub[0].Op
	return op == syntax.OpAnyChar || op == syntax.OpAnyCharNotNL
}

func litString(b []atom) string {
	out := make([]byte, 0, len(b))
	for _, a := range b {
		if a.wide != nil {
			return ""
		}
		out = append(out, a.lit)
	}
	return string(out)
}

// normalize writes an origin as a browser does: lower case, no default port.
func normalize(o string) string {
	o = strings.ToLower(o)
	if strings.HasPrefix(o, "https://") {
		o = strings.TrimSuffix(o, ":443")
	} else if strings.HasPrefix(o, "http://") {
		o = strings.TrimSuffix(o, ":80")
	}
	return o
}

// expand lists the branches of re: alternatives and optional parts
// multiplied out, up to maxBranches.
func expand(re *syntax.Regexp, fold bool) ([][]atom, bool) {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginText, syntax.OpEndText, syntax.OpBeginLine, syntax.OpEndLine:
		return [][]atom{nil}, true
	case syntax.OpNoMatch:
		return nil, true
	case syntax.OpLiteral:
		var b []atom
		for _, r := range re.Rune {
			if r >= 0x80 {
				b = append(b, atom{wide: re})
				continue
			}
			c := byte(r)
			if fold || re.Flags&syntax.FoldCase != 0 {
				c = lower(c)
			}
			b = append(b, atom{lit: c})
		}
		return [][]atom{b}, true
	case syntax.OpCharClass:
		var only byte
		n := 0
		for i := 0; i < nsym; i++ {
			if classContains(re.Rune, rune(alphabet[i])) {
				only = alphabet[i]
				n++
			}
		}
		if n == 1 {
			return [][]atom{{{lit: only}}}, true
		}
		return [][]atom{{{wide: re}}}, true
	case syntax.OpCapture:
		return expand(re.Sub[0], fold)
	case syntax.OpQuest:
		sub, ok := expand(re.Sub[0], fold)
		if !ok || len(sub)+1 > maxBranches {
			return nil, false
		}
		return append(sub, nil), true
	case syntax.OpConcat:
		out := [][]atom{nil}
		for _, s := range re.Sub {
			sub, ok := expand(s, fold)
			if !ok || len(out)*len(sub) > maxBranches {
				return nil, false
			}
			var next [][]atom
			for _, a := range out {
				for _, b := range sub {
					next = append(next, append(slices.Clone(a), b...))
				}
			}
			out = next
		}
		return out, true
	case syntax.OpAlternate:
		var out [][]atom
		for _, s := range re.Sub {
			sub, ok := expand(s, fold)
			if !ok || len(out)+len(sub) > maxBranches {
				return nil, false
			}
			out = append(out, sub...)
		}
		return out, true
	default:
		return [][]atom{{{wide: re}}}, true
	}
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// probes are origins worth trying first for examples: the ones people
// recognise as attacks on a list of origins.
func probes(res *Result, exact, wild []string) []string {
	out := []string{"https://evil.example", "null"}
	variants := func(scheme, host, port string) {
		out = append(out,
			scheme+"://"+host+port+".evil.net",
			scheme+"://"+host+".evil.net"+port,
			scheme+"://evil"+host+port,
			scheme+"://evil-"+host+port,
			scheme+"://x."+host+port,
			scheme+"://x.y."+host+port,
			scheme+"://"+host+port+":8443",
			scheme+"://"+host,
		)
		for i := 0; i < len(host); i++ {
			if host[i] == '.' {
				out = append(out, scheme+"://"+host[:i]+"x"+host[i+1:]+port, scheme+"://"+host[:i]+"-"+host[i+1:]+port)
			}
		}
		for _, other := range []string{"http", "https"} {
			if other != scheme {
				out = append(out, other+"://"+host+port)
			}
		}
	}
	split := func(o string) (scheme, host, port string, ok bool) {
		scheme, rest, ok := strings.Cut(o, "://")
		if !ok {
			return "", "", "", false
		}
		host = rest
		if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.HasSuffix(rest, "]") {
			host, port = rest[:i], rest[i:]
		}
		return scheme, host, port, true
	}
	for _, e := range exact {
		if s, h, p, ok := split(e); ok {
			variants(s, h, p)
		}
	}
	for _, w := range wild {
		if s, h, p, ok := split(strings.Replace(w, "*.", "", 1)); ok {
			variants(s, h, p)
		}
	}
	out = append(out, "http://evil.example", "https://app.example.com.evil.net")
	return out
}

// IsBrowserOrigin reports whether s is in the universe of origins a
// browser can send (see the package comment).
func IsBrowserOrigin(s string) bool {
	universeMu.Lock()
	defer universeMu.Unlock()
	if universeDFA == nil {
		universeDFA, excludedDFA = mustDFA(universeExpr), mustDFA(excludedExpr)
	}
	return universeDFA.matches(s) && !excludedDFA.matches(s)
}

// The universe's automata, shared by IsBrowserOrigin: a dfa fills its
// tables as it is used, so the lock covers the whole match.
var (
	universeMu               sync.Mutex
	universeDFA, excludedDFA *dfa
)
