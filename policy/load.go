package policy

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/corsauthz/corsauthz/internal/configfile"
	"github.com/corsauthz/corsauthz/internal/limits"
)

// LoadFile reads, checks and compiles the configuration file at path: a
// regular file of at most DefaultMaxConfigBytes (see package
// internal/configfile, which refuses a FIFO or a device before reading).
func LoadFile(path string) (*Engine, []*FieldError, error) {
	data, err := configfile.Read(path, DefaultMaxConfigBytes)
	if err != nil {
		return nil, nil, err
	}
	return Load(path, data)
}

// Load checks and compiles a configuration file's contents (YAML, or JSON,
// which is YAML too). filename is only used to locate problems. Every
// problem is returned at once, each a *FieldError with its line, column and
// field path; unknown fields are problems too. The files an authorizer's
// TLS settings name must be readable here (see [LoadOptions]).
func Load(filename string, data []byte) (*Engine, []*FieldError, error) {
	return LoadWithOptions(filename, data, LoadOptions{})
}

// LoadOptions changes what [LoadWithOptions] checks.
type LoadOptions struct {
	// SkipLocalFiles leaves unchecked the files and environment variables
	// authorizers name (TLS certificates, static header values). It is
	// for a gateway compiling a configuration written for another machine
	// (the corsauthz service's, received over xDS): there a file that is
	// missing must not refuse every policy; the client that needs it fails
	// its calls instead, and only the requests under its policies are
	// answered 503.
	SkipLocalFiles bool
}

// LoadWithOptions is [Load] with options.
func LoadWithOptions(filename string, data []byte, opts LoadOptions) (*Engine, []*FieldError, error) {
	p := parser{file: filename, pos: map[string]position{}}
	cfg := p.parse(data)

	e, warnings, err := compileUnhashed(cfg, !opts.SkipLocalFiles)
	for _, w := range warnings {
		p.locate(w)
	}
	errs := p.errs
	for _, fe := range FieldErrors(err) {
		if p.underBadField(fe.Path) {
			continue // already reported, more precisely, by the parser
		}
		p.locate(fe)
		errs = append(errs, fe)
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b *FieldError) int {
			return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
		})
		joined := make([]error, len(errs))
		for i, fe := range errs {
			joined[i] = fe
		}
		return nil, warnings, errors.Join(joined...)
	}
	e.hash = configfile.Hash(data)
	e.source = filename
	return e, warnings, nil
}

type position struct{ line, column int }

// parser turns a YAML document into a Config by walking its node tree, so
// that it can refuse unknown fields and wrong types with positions, keep
// going after each problem, and remember where every value was written.
type parser struct {
	file string
	pos  map[string]position
	// lists holds the positions of the items of each list of strings,
	// by the list's path: a configuration at the caps has 50,000
	// origins, and a path string and map entry for each would cost
	// more than the origins themselves.
	lists map[string][]position
	bad   []string // paths the parser reported problems for
	errs  []*FieldError
}

func (p *parser) errorf(n *yaml.Node, path, format string, args ...any) {
	fe := &FieldError{File: p.file, Path: limits.Cut(path), Message: fmt.Sprintf(format, cutArgs(args)...)}
	if n != nil {
		fe.Line, fe.Column = n.Line, n.Column
	}
	p.errs = append(p.errs, fe)
	p.bad = append(p.bad, path)
}

// locate fills in the file position of a problem found after parsing,
// from the field path or, for a field that is missing, its parent.
func (p *parser) locate(fe *FieldError) {
	fe.File = p.file
	for path := fe.Path; path != ""; path = parentPath(path) {
		if at, ok := p.position(path); ok {
			fe.Line, fe.Column = at.line, at.column
			return
		}
	}
	if at, ok := p.pos[""]; ok {
		fe.Line, fe.Column = at.line, at.column
	}
}

// position returns where the value at path was written.
func (p *parser) position(path string) (position, bool) {
	if at, ok := p.pos[path]; ok {
		return at, true
	}
	// An item of a list of strings: "...allowed_origins[12]".
	if !strings.HasSuffix(path, "]") {
		return position{}, false
	}
	open := strings.LastIndexByte(path, '[')
	if open < 0 {
		return position{}, false
	}
	i, err := strconv.Atoi(path[open+1 : len(path)-1])
	items := p.lists[path[:open]]
	if err != nil || i < 0 || i >= len(items) {
		return position{}, false
	}
	return items[i], true
}

func (p *parser) underBadField(path string) bool {
	for _, bad := range p.bad {
		if path == bad || strings.HasPrefix(path, bad+".") || strings.HasPrefix(path, bad+"[") {
			return true
		}
	}
	return false
}

func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

var yamlLineRE = regexp.MustCompile(`^line (\d+): `)

// locateSyntaxError returns the line, column and message of a YAML syntax
// error that the YAML library describes as msg. The library names the line
// of the construct it was reading, not of the offending character, and no
// column (a tab in the indentation, for one, is reported on the line
// before it; a character that cannot be read, on no line): where the
// offending character can be told from the bytes, it is found there.
func locateSyntaxError(data []byte, msg string) (line, col int, message string) {
	line, col = 1, 1
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	lines := strings.Split(string(data), "\n")
	switch {
	case strings.Contains(msg, "tab character") || strings.Contains(msg, "cannot start any token"):
		// A tab in the indentation: the first at or after the reported
		// line, else the first in the file.
		for _, from := range []int{max(line-1, 0), 0} {
			for i := from; i < len(lines); i++ {
				indent := lines[i][:len(lines[i])-len(strings.TrimLeft(lines[i], " \t"))]
				if j := strings.IndexByte(indent, '\t'); j >= 0 {
					return i + 1, j + 1, "invalid YAML: a tab character in the indentation: YAML indents with spaces only; replace the tab with spaces"
				}
			}
		}
		if i := line - 1; i < len(lines) {
			if j := strings.IndexAny(lines[i], "@`\t"); j >= 0 {
				what := fmt.Sprintf("%q", lines[i][j])
				if lines[i][j] == '\t' {
					what = "a tab character"
				}
				return line, j + 1, fmt.Sprintf("invalid YAML: %s cannot start a value: quote the value", what)
			}
		}
	case strings.Contains(msg, "control characters"):
		for i, l := range lines {
			for j := 0; j < len(l); j++ {
				if c := l[j]; (c < 0x20 && c != '\t' && c != '\r') || c == 0x7f {
					return i + 1, j + 1, fmt.Sprintf("invalid YAML: control character U+%04X: control characters are not allowed; remove it", c)
				}
			}
		}
	case strings.HasPrefix(msg, "did not find expected ',' or ']'") || strings.HasPrefix(msg, "did not find expected ',' or '}'"):
		// The library names the line before the unclosed bracket's.
		open := byte('[')
		if strings.HasSuffix(msg, "'}'") {
			open = '{'
		}
		if i := line; i < len(lines) {
			if j := strings.LastIndexByte(lines[i], open); j >= 0 {
				return i + 1, j + 1, fmt.Sprintf("invalid YAML: %q is never closed (%s)", open, msg)
			}
		}
	}
	return line, col, "invalid YAML: " + msg
}

func (p *parser) parse(data []byte) *Config {
	if n := estimateYAMLNodes(data); n > MaxYAMLNodes {
		p.errs = append(p.errs, &FieldError{File: p.file, Line: 1, Column: 1, Message: limitProblem(
			"too many YAML nodes for the parser (an upper bound counted from the ':', ',', '-', '?', '[' and '{' in the file, before parsing)", n, "policy.MaxYAMLNodes", MaxYAMLNodes)})
		p.bad = append(p.bad, rootFields...)
		return &Config{}
	}
	// A file written the usual way is read one policy at a time
	// (chunked.go): the YAML library's node tree of a whole file at the
	// caps is about 16 MiB, against 2.4 MiB of YAML. Whatever that reading
	// cannot be sure of (and every invalid file) is read whole, which
	// reports the problems.
	if chunks, ok := splitPolicies(data); ok {
		if cfg, ok := p.parseChunked(chunks); ok {
			return cfg
		}
		*p = parser{file: p.file, pos: map[string]position{}}
	}
	return p.parseDocument(data, nil)
}

// parseDocument reads data whole; with chunks (data is then chunks'
// skeleton) the policies are read from chunks instead.
func (p *parser) parseDocument(data []byte, chunks *policyChunks) *Config {
	cfg := &Config{}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		fe := &FieldError{File: p.file}
		fe.Line, fe.Column, fe.Message = locateSyntaxError(data, strings.TrimPrefix(err.Error(), "yaml: "))
		p.errs = append(p.errs, fe)
		p.bad = append(p.bad, "policies", "default_policy")
		return cfg
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		p.pos[""] = position{1, 1}
		return cfg // empty file: Compile says there are no policies
	}
	root := resolve(doc.Content[0])
	p.pos[""] = position{root.Line, root.Column}
	if n := expandedNodes(&doc, MaxYAMLNodes, map[*yaml.Node]int{}); n > MaxYAMLNodes {
		p.errs = append(p.errs, &FieldError{File: p.file, Line: root.Line, Column: root.Column, Message: limitProblem(
			"too many YAML nodes once aliases are expanded", n-1, "policy.MaxYAMLNodes", MaxYAMLNodes) + "; write the values out, or use fewer aliases"})
		p.bad = append(p.bad, rootFields...)
		return cfg
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return cfg
	}
	if root.Kind != yaml.MappingNode {
		// mapping reports it; "no policies" would only repeat it.
		p.bad = append(p.bad, rootFields...)
	}
	p.mapping(root, "", rootFields, func(key string, v *yaml.Node, path string) {
		switch key {
		case "policies":
			if chunks != nil {
				p.chunkedPolicies(chunks, path, cfg)
				return
			}
			p.policies(v, path, cfg)
		case "default_policy":
			cfg.DefaultPolicy, _ = p.str(v, path)
		case "authorizers":
			p.authorizers(v, path, cfg) // load_authorizers.go
		}
	})
	return cfg
}

var (
	rootFields   = []string{"policies", "default_policy", "authorizers"}
	policyFields = []string{
		"name", "match", "allowed_origins", "allowed_methods", "allowed_headers",
		"exposed_headers", "allow_credentials", "max_age_seconds",
		"allow_private_network", "reject_disallowed_origins", "report_only",
		"authorizer",
	}
	matchFields = []string{"hosts", "path_prefixes"}
)

func (p *parser) policies(n *yaml.Node, path string, cfg *Config) {
	if n.Kind != yaml.SequenceNode {
		if isNull(n) {
			return
		}
		p.errorf(n, path, "policies must be a list of policies (each item starting with \"- name: ...\")")
		return
	}
	for i, item := range n.Content {
		p.policy(resolve(item), i, path, cfg)
		// The policy's nodes are read: let them go, so that a large
		// file's node tree and its configuration are not both held at
		// once (its strings live on in the policy). Not from a list with
		// an anchor, which an alias may make another field read again; an
		// alias to the item itself keeps it.
		if n.Anchor == "" {
			n.Content[i] = nil
		}
	}
}

// policy reads item, the i-th item of the policies list at path, into a
// policy appended to cfg.
func (p *parser) policy(item *yaml.Node, i int, path string, cfg *Config) {
	ip := fmt.Sprintf("%s[%d]", path, i)
	p.pos[ip] = position{item.Line, item.Column}
	var pol Policy
	// allowed_origins written as a string holding "*": what to write
	// instead depends on allow_credentials, read after it.
	var starOrigins *yaml.Node
	var starPath string
	p.mapping(item, ip, policyFields, func(key string, v *yaml.Node, fp string) {
		switch key {
		case "name":
			pol.Name, _ = p.str(v, fp)
		case "match":
			p.mapping(v, fp, matchFields, func(key string, v *yaml.Node, mp string) {
				switch key {
				case "hosts":
					pol.Match.Hosts = p.strList(v, mp)
				case "path_prefixes":
					pol.Match.PathPrefixes = p.strList(v, mp)
				}
			})
		case "allowed_origins":
			if isString(v) && slices.Contains(splitList(v.Value), "*") {
				starOrigins, starPath = v, fp
				return
			}
			pol.AllowedOrigins = p.strList(v, fp)
		case "allowed_methods":
			pol.AllowedMethods = p.strList(v, fp)
		case "allowed_headers":
			pol.AllowedHeaders = p.strList(v, fp)
		case "exposed_headers":
			pol.ExposedHeaders = p.strList(v, fp)
		case "allow_credentials":
			pol.AllowCredentials = p.boolean(v, fp)
		case "max_age_seconds":
			pol.MaxAgeInSeconds = p.integer(v, fp)
		case "allow_private_network":
			pol.AllowPrivateNetwork = p.boolean(v, fp)
		case "reject_disallowed_origins":
			pol.RejectDisallowedOrigins = p.boolean(v, fp)
		case "report_only":
			pol.ReportOnly = p.boolean(v, fp)
		case "authorizer":
			pol.Authorizer, _ = p.str(v, fp)
		}
	})
	if starOrigins != nil {
		p.starOriginsString(starOrigins, starPath, pol.AllowCredentials)
	}
	cfg.Policies = append(cfg.Policies, pol)
}

// starOriginsString reports allowed_origins written as a string holding
// "*" (allowed_origins: "*"), suggesting only what would then be accepted:
// ["*"] is refused with allow_credentials, and "*" must be alone.
func (p *parser) starOriginsString(n *yaml.Node, path string, credentials bool) {
	switch {
	case credentials:
		p.errorf(n, path, "must be a list, and \"*\" (any origin) cannot be used with allow_credentials: true, since browsers refuse \"Access-Control-Allow-Origin: *\" on credentialed requests: "+
			"list the origins that may send credentials, such as [https://app.example.com], or remove allow_credentials and write [\"*\"]")
	case len(splitList(n.Value)) > 1:
		p.errorf(n, path, "must be a list, and \"*\" (any origin) must be its only entry: write [\"*\"], or list the origins without it")
	default:
		p.strList(n, path)
	}
}

// mapping walks a mapping node, refusing unknown and repeated keys, and
// calls field for each known one with its value and path.
func (p *parser) mapping(n *yaml.Node, path string, known []string, field func(key string, v *yaml.Node, path string)) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		if isNull(n) {
			return
		}
		what := "a mapping of fields"
		if path == "" {
			what = "a mapping with a \"policies\" list"
		}
		p.errorf(n, path, "must be %s, not %s", what, describe(n))
		return
	}
	seen := map[string]bool{}
	present := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		present[n.Content[i].Value] = true
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		fp := k.Value
		if path != "" {
			fp = path + "." + k.Value
		}
		if k.Value == "<<" {
			p.errorf(k, fp, "YAML merge keys are not supported: write the fields out")
			continue
		}
		if !slices.Contains(known, k.Value) {
			msg := fmt.Sprintf("unknown field %q", k.Value)
			s := closest(k.Value, known)
			if s != "" {
				msg += fmt.Sprintf(": did you mean %q?", s)
			} else {
				msg += ": valid fields are " + strings.Join(known, ", ")
			}
			p.errorf(k, fp, "%s", msg)
			// Check what it holds as if it were the suggested field (when
			// that is not written too), so that one pass shows every
			// problem: a misspelled "policy:" would otherwise hide all of
			// them.
			if s != "" && !present[s] && !seen[s] {
				seen[s] = true
				sp := s
				if path != "" {
					sp = path + "." + s
				}
				p.pos[sp] = position{v.Line, v.Column}
				field(s, v, sp)
			}
			continue
		}
		if seen[k.Value] {
			p.errorf(k, fp, "field %q is set twice: keep one", k.Value)
			continue
		}
		seen[k.Value] = true
		p.pos[fp] = position{v.Line, v.Column}
		field(k.Value, v, fp)
	}
}

func (p *parser) str(n *yaml.Node, path string) (string, bool) {
	if !isStr(n) {
		p.errorf(n, path, "must be a string, not %s", describe(n))
		return "", false
	}
	return n.Value, true
}

func (p *parser) strList(n *yaml.Node, path string) []string {
	if n.Kind != yaml.SequenceNode {
		if isString(n) {
			p.errorf(n, path, "must be a list: write %s", flowList(splitList(n.Value)))
			return nil
		}
		if isNull(n) {
			return nil
		}
		p.errorf(n, path, "must be a list of strings, not %s", describe(n))
		return nil
	}
	out := make([]string, 0, len(n.Content))
	at := make([]position, len(n.Content))
	for i, item := range n.Content {
		item = resolve(item)
		at[i] = position{item.Line, item.Column}
		if isStr(item) {
			out = append(out, item.Value)
			continue
		}
		p.str(item, itemPath(path, i)) // says what is wrong
		out = append(out, "")          // keep indexes aligned with positions
	}
	if p.lists == nil {
		p.lists = map[string][]position{}
	}
	p.lists[path] = at
	return out
}

func (p *parser) boolean(n *yaml.Node, path string) bool {
	var b bool
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
		if isString(n) && quoted(n) {
			if v := strings.ToLower(n.Value); v == "true" || v == "false" {
				p.errorf(n, path, "must be true or false, not the quoted string %s: write %s without quotes", strconv.Quote(n.Value), v)
				return v == "true" // what was meant, for the checks that depend on it
			}
		}
		p.errorf(n, path, "must be true or false, not %s", describe(n))
	}
	return b
}

func (p *parser) integer(n *yaml.Node, path string) int {
	var v int
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&v) != nil {
		if _, err := strconv.Atoi(n.Value); err == nil && isString(n) && quoted(n) {
			p.errorf(n, path, "must be a whole number, not the quoted string %s: write %s without quotes", strconv.Quote(n.Value), n.Value)
			return v
		}
		p.errorf(n, path, "must be a whole number, not %s", describe(n))
	}
	return v
}

// isStr reports whether n is a string: a string scalar, or the word null
// (a policy may allow the origin "null" written unquoted).
func isStr(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && (n.Tag == "!!str" || (n.Tag == "!!null" && n.Value == "null"))
}

// isString reports whether n is a YAML string.
func isString(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!str" }

// quoted reports whether n was written in quotes.
func quoted(n *yaml.Node) bool { return n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 }

// splitList splits a string written where a list belongs at its commas,
// as someone who wrote "GET, POST" meant it: the items, trimmed of spaces
// and of quotes around them, without empty ones (a lone string is a list
// of one).
func splitList(s string) []string {
	var items []string
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if len(item) >= 2 && (item[0] == '"' || item[0] == '\'') && item[len(item)-1] == item[0] {
			item = item[1 : len(item)-1] // "GET", "POST" written as one string
		}
		if item != "" {
			items = append(items, item)
		}
	}
	if len(items) == 0 {
		items = []string{s}
	}
	return items
}

// plainItem is what a YAML flow list item may be without quotes here: no
// indicator, no space, nothing YAML would read as another type.
var plainItem = regexp.MustCompile(`^[A-Za-z0-9/._][A-Za-z0-9/._:+-]*$`)

// flowList writes items as a YAML flow list, [GET, POST], quoting the
// items that need it ("*", "https://*.example.com", "true", "600").
func flowList(items []string) string {
	quotedItems := make([]string, len(items))
	for i, item := range items {
		quotedItems[i] = item
		var probe yaml.Node
		if !plainItem.MatchString(item) || yaml.Unmarshal([]byte(item), &probe) != nil ||
			len(probe.Content) != 1 || probe.Content[0].Tag != "!!str" {
			quotedItems[i] = strconv.Quote(item)
		}
	}
	return "[" + strings.Join(quotedItems, ", ") + "]"
}

func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "empty"
		case "!!str":
			return strconv.Quote(n.Value)
		}
		return n.Value
	}
	return "this value"
}

// closest returns the known name nearest to s, if it is near enough to be
// a likely typo.
func closest(s string, known []string) string {
	for _, k := range known {
		if len(s) >= 3 && strings.HasPrefix(k, s) {
			return k // an abbreviation, such as max_age for max_age_seconds
		}
	}
	best, bestDist := "", 4
	for _, k := range known {
		if d := levenshtein(s, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
