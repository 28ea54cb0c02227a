package regexorigin

import (
	"errors"
	"fmt"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// alphabet holds every byte that can occur in a browser origin of the
// universe (see the package comment); no other byte needs a transition,
// because a string holding one is outside the universe whatever the
// expression says. 'x' comes first so that the shortest examples the
// search finds read like placeholders.
const alphabet = "xabcdefghijklmnopqrstuvwyz0123456789-_.:/[]+"

const nsym = len(alphabet)

var symIndex = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < nsym; i++ {
		t[alphabet[i]] = int8(i)
	}
	return t
}()

type symSet [nsym]bool

// Bounds on the work one expression may cause.
const (
	// MaxLen is the longest expression translated.
	MaxLen = 1024
	// maxNFAStates bounds the automaton built from one expression.
	maxNFAStates = 4000
	// maxProductStates bounds the states explored by one proof.
	maxProductStates = 50000
	// maxWork bounds the automaton states visited by one proof, all
	// closures added up: what the time of a proof grows with.
	maxWork = 2_000_000
)

// budget is the work left to one proof, shared by its automata.
type budget struct{ left int }

func (b *budget) spend(n int) bool {
	b.left -= n
	return b.left >= 0
}

// ErrTooComplex is returned for an expression whose automaton, or whose
// comparison with its translation, would exceed the bounds above.
var ErrTooComplex = errors.New("regular expression too complex to compare")

// nstate is one state of a Thompson automaton. A state either consumes one
// symbol of set and moves to out, or has only epsilon edges: eps always,
// begin only at the start of the input (^), end only at its end ($).
type nstate struct {
	eps, begin, end []int
	set             *symSet
	out             int
}

type nfa struct {
	st            []nstate
	start, accept int
}

func (n *nfa) add() (int, error) {
	if len(n.st) >= maxNFAStates {
		return 0, ErrTooComplex
	}
	n.st = append(n.st, nstate{out: -1})
	return len(n.st) - 1, nil
}

// compile builds the automaton of re. With anchoredStart false the
// expression may match after any prefix (ingress-nginx's "(...)$").
func compile(re *syntax.Regexp, anchoredStart bool) (*nfa, error) {
	n := &nfa{}
	s, e, err := n.build(re)
	if err != nil {
		return nil, err
	}
	if !anchoredStart {
		// An entry state that either starts the expression or consumes
		// any symbol and comes back.
		entry, err := n.add()
		if err != nil {
			return nil, err
		}
		all := &symSet{}
		for i := range all {
			all[i] = true
		}
		n.st[entry].eps = []int{s}
		n.st[entry].set, n.st[entry].out = all, entry
		s = entry
	}
	n.start, n.accept = s, e
	return n, nil
}

func (n *nfa) build(re *syntax.Regexp) (s, e int, err error) {
	if s, err = n.add(); err != nil {
		return
	}
	if e, err = n.add(); err != nil {
		return
	}
	switch re.Op {
	case syntax.OpNoMatch:
	case syntax.OpEmptyMatch:
		n.st[s].eps = append(n.st[s].eps, e)
	case syntax.OpLiteral:
		cur := s
		for _, r := range re.Rune {
			set := runeSet(r, re.Flags&syntax.FoldCase != 0)
			next := e
			if next, err = n.add(); err != nil {
				return
			}
			n.st[cur].set, n.st[cur].out = set, next
			cur = next
		}
		n.st[cur].eps = append(n.st[cur].eps, e)
	case syntax.OpCharClass:
		set := &symSet{}
		for i := 0; i < nsym; i++ {
			set[i] = classContains(re.Rune, rune(alphabet[i]))
		}
		n.st[s].set, n.st[s].out = set, e
	case syntax.OpAnyCharNotNL, syntax.OpAnyChar:
		set := &symSet{}
		for i := range set {
			set[i] = true
		}
		n.st[s].set, n.st[s].out = set, e
	case syntax.OpBeginLine, syntax.OpBeginText:
		// No origin holds a newline, so ^ in multi-line mode is \A.
		n.st[s].begin = append(n.st[s].begin, e)
	case syntax.OpEndLine, syntax.OpEndText:
		n.st[s].end = append(n.st[s].end, e)
	case syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return 0, 0, fmt.Errorf("word boundaries (\\b, \\B) are not supported")
	case syntax.OpCapture:
		ss, se, err := n.build(re.Sub[0])
		if err != nil {
			return 0, 0, err
		}
		n.st[s].eps = append(n.st[s].eps, ss)
		n.st[se].eps = append(n.st[se].eps, e)
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest:
		ss, se, err := n.build(re.Sub[0])
		if err != nil {
			return 0, 0, err
		}
		n.st[s].eps = append(n.st[s].eps, ss)
		if re.Op != syntax.OpPlus {
			n.st[s].eps = append(n.st[s].eps, e)
		}
		if re.Op != syntax.OpQuest {
			n.st[se].eps = append(n.st[se].eps, ss)
		}
		n.st[se].eps = append(n.st[se].eps, e)
	case syntax.OpRepeat:
		// Simplify rewrites repeats; this is for an unsimplified tree.
		sub := re.Sub[0]
		var parts []*syntax.Regexp
		for i := 0; i < re.Min; i++ {
			parts = append(parts, sub)
		}
		switch {
		case re.Max == -1:
			parts = append(parts, &syntax.Regexp{Op: syntax.OpStar, Sub: []*syntax.Regexp{sub}})
		default:
			for i := re.Min; i < re.Max; i++ {
				parts = append(parts, &syntax.Regexp{Op: syntax.OpQuest, Sub: []*syntax.Regexp{sub}})
			}
		}
		return n.build(&syntax.Regexp{Op: syntax.OpConcat, Sub: parts})
	case syntax.OpConcat:
		cur := s
		for _, sub := range re.Sub {
			ss, se, err := n.build(sub)
			if err != nil {
				return 0, 0, err
			}
			n.st[cur].eps = append(n.st[cur].eps, ss)
			cur = se
		}
		n.st[cur].eps = append(n.st[cur].eps, e)
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			ss, se, err := n.build(sub)
			if err != nil {
				return 0, 0, err
			}
			n.st[s].eps = append(n.st[s].eps, ss)
			n.st[se].eps = append(n.st[se].eps, e)
		}
	default:
		return 0, 0, fmt.Errorf("unsupported regular expression construct %s", re.Op)
	}
	return s, e, nil
}

// runeSet is the set of symbols a literal rune matches.
func runeSet(r rune, fold bool) *symSet {
	set := &symSet{}
	add := func(r rune) {
		if r >= 0 && r < 256 && symIndex[r] >= 0 {
			set[symIndex[r]] = true
		}
	}
	add(r)
	if fold {
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			add(f)
		}
	}
	return set
}

func classContains(ranges []rune, r rune) bool {
	for i := 0; i+1 < len(ranges); i += 2 {
		if ranges[i] <= r && r <= ranges[i+1] {
			return true
		}
	}
	return false
}

// dfa determinizes an nfa lazily: each set of nfa states reached is
// interned once, with its transitions computed when first asked for.
type dfa struct {
	n      *nfa
	budget *budget
	// over is set once the budget is spent: the dfa then rejects all.
	over  bool
	ids   map[string]int32
	sets  [][]int
	trans [][nsym]int32 // -1: not computed yet
	acc   []bool
}

const dead = 0 // the empty set: rejects every continuation

func newDFA(n *nfa, b *budget) *dfa {
	if b == nil {
		b = &budget{left: maxWork}
	}
	d := &dfa{n: n, ids: map[string]int32{}, budget: b}
	d.intern(nil)
	return d
}

func (d *dfa) intern(set []int) int32 {
	var b strings.Builder
	for _, s := range set {
		b.WriteString(strconv.Itoa(s))
		b.WriteByte(',')
	}
	key := b.String()
	if id, ok := d.ids[key]; ok {
		return id
	}
	id := int32(len(d.sets))
	d.ids[key] = id
	d.sets = append(d.sets, set)
	var t [nsym]int32
	for i := range t {
		t[i] = -1
	}
	d.trans = append(d.trans, t)
	d.acc = append(d.acc, slices.Contains(d.closure(set, false, true), d.n.accept))
	return id
}

// closure is the epsilon closure of set, following begin edges only when
// atStart and end edges only when atEnd.
func (d *dfa) closure(set []int, atStart, atEnd bool) []int {
	seen := map[int]bool{}
	stack := slices.Clone(set)
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[s] {
			continue
		}
		seen[s] = true
		st := &d.n.st[s]
		stack = append(stack, st.eps...)
		if atStart {
			stack = append(stack, st.begin...)
		}
		if atEnd {
			stack = append(stack, st.end...)
		}
	}
	if !d.budget.spend(len(seen)) {
		d.over = true
		return nil
	}
	out := make([]int, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// start is the state before any symbol; startAccepts says whether the
// empty string matches.
func (d *dfa) start() int32 {
	return d.intern(d.closure([]int{d.n.start}, true, false))
}

func (d *dfa) next(id int32, sym int) int32 {
	if t := d.trans[id][sym]; t >= 0 {
		return t
	}
	var out []int
	for _, s := range d.sets[id] {
		st := &d.n.st[s]
		if st.set != nil && st.set[sym] {
			out = append(out, st.out)
		}
	}
	var t int32 = dead
	if len(out) > 0 {
		t = d.intern(d.closure(out, false, false))
	}
	d.trans[id][sym] = t
	return t
}

// matches reports whether the automaton admits s (s non-empty).
func (d *dfa) matches(s string) bool {
	id := d.start()
	for i := 0; i < len(s); i++ {
		sym := symIndex[s[i]]
		if sym < 0 {
			return false
		}
		if id = d.next(id, int(sym)); id == dead {
			return false
		}
	}
	return len(s) > 0 && d.acc[id]
}

// comparison is what exploring the product of an expression, its
// translation and the universe found: shortest first.
type comparison struct {
	extra    []string // admitted by the expression, not by the translation
	missing  []string // admitted by the translation, not by the expression
	admitted []string // admitted by the expression
}

const maxExamples = 8

// compare explores every reachable state of the product of r (the
// expression), c (the translation), u (the universe) and x (the part of
// the universe excluded from it), and collects the origins of the universe
// on which r and c differ.
func compare(r, c, u, x *dfa) (comparison, error) {
	type node struct {
		key    [4]int32
		parent int
		sym    int8
	}
	nodes := []node{{key: [4]int32{r.start(), c.start(), u.start(), x.start()}, parent: -1}}
	seen := map[[4]int32]bool{nodes[0].key: true}
	var out comparison
	path := func(i int) string {
		var b []byte
		for ; nodes[i].parent >= 0; i = nodes[i].parent {
			b = append(b, alphabet[nodes[i].sym])
		}
		slices.Reverse(b)
		return string(b)
	}
	for i := 0; i < len(nodes); i++ {
		if r.over || c.over || u.over || x.over {
			return out, ErrTooComplex
		}
		k := nodes[i].key
		if i > 0 && u.acc[k[2]] && !x.acc[k[3]] {
			ra, ca := r.acc[k[0]], c.acc[k[1]]
			switch {
			case ra && !ca && len(out.extra) < maxExamples:
				out.extra = append(out.extra, path(i))
			case !ra && ca && len(out.missing) < maxExamples:
				out.missing = append(out.missing, path(i))
			}
			if ra && len(out.admitted) < maxExamples {
				out.admitted = append(out.admitted, path(i))
			}
		}
		for sym := 0; sym < nsym; sym++ {
			nk := [4]int32{r.next(k[0], sym), c.next(k[1], sym), u.next(k[2], sym), x.next(k[3], sym)}
			if nk[2] == dead || (nk[0] == dead && nk[1] == dead) {
				continue // outside the universe, or both reject from here on
			}
			if seen[nk] {
				continue
			}
			if len(nodes) >= maxProductStates {
				return out, ErrTooComplex
			}
			seen[nk] = true
			nodes = append(nodes, node{key: nk, parent: i, sym: int8(sym)})
		}
	}
	if r.over || c.over || u.over || x.over {
		return out, ErrTooComplex
	}
	return out, nil
}
