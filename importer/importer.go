// Package importer reads the CORS configuration people already run in a
// gateway (Istio, Envoy, ingress-nginx, Gateway API, Envoy Gateway) and
// turns it into a corsauthz configuration, reporting every place where
// corsauthz will answer differently, where the source was unsafe, and what
// cannot be expressed.
//
// It is pure: it reads bytes and returns a [Result]; the command line
// (corsauthz import) prints it. Each format lives in its own file. Envoy's
// configuration decodes with go-control-plane's types, which corsauthz links
// for xDS anyway; the Kubernetes, Gateway API and Istio objects decode into
// small structs of the importer's own that mirror the upstream fields it
// reads (kube.go, istiotypes.go), so that their modules, and the init
// functions of their packages, stay out of the corsauthz binary. Positions
// come from the YAML node tree, so every finding points at the line and
// column of the value it is about.
//
// The migration guide, with every finding explained, is docs/import.md.
package importer

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/corsauthz/corsauthz/policy"
)

// Kind classifies a finding.
type Kind string

const (
	// Unsafe: the source allowed something the Fetch standard or
	// corsauthz calls unsafe (reflecting any origin with credentials,
	// prefix/suffix/contains matchers, null, http origins with
	// credentials, preflights forwarded upstream, blanket OPTIONS
	// exemptions from authorization, ...).
	Unsafe Kind = "unsafe"
	// Changed: corsauthz will answer differently, and the finding says
	// how; or a translation (a regex read as a pattern) the reader should
	// know about.
	Changed Kind = "changed"
	// Unsupported: it cannot be expressed; the finding says what to do
	// instead.
	Unsupported Kind = "unsupported"
)

// Pos locates a value in an input.
type Pos struct {
	File         string
	Line, Column int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column) }

// Finding is one remark about the source, printed as
// FILE:LINE:COL: KIND: message.
type Finding struct {
	Pos
	Kind    Kind
	Message string
}

func (f Finding) String() string { return fmt.Sprintf("%s: %s: %s", f.Pos, f.Kind, f.Message) }

// Note is a remark that changes nothing (a skipped object, a dropped value
// browsers never use), printed as "note: FILE:LINE:COL: message".
type Note struct {
	Pos
	Message string
}

func (n Note) String() string { return fmt.Sprintf("note: %s: %s", n.Pos, n.Message) }

// ParseError is an input that cannot be read as the format says: the
// command exits 2.
type ParseError struct {
	Pos
	Message string
}

func (e *ParseError) Error() string { return fmt.Sprintf("%s: %s", e.Pos, e.Message) }

// Input is one file to import.
type Input struct {
	Name string
	Data []byte
}

// Policy is one imported policy with where it came from.
type Policy struct {
	policy.Policy
	// Source names the object it came from, such as
	// "VirtualService default/reviews, http[0]".
	Source string
	At     Pos
	// Comments are remarks written above the policy in the output:
	// values dropped without changing any answer.
	Comments []string
}

// Result is what an import produced.
type Result struct {
	Format   string
	Inputs   []string
	Policies []Policy
	// Skipped are sources that produced no policy, with why, written as
	// comments in the output.
	Skipped  []string
	Findings []Finding
	Notes    []Note
}

// Failed reports whether any finding is unsafe or unsupported: the
// command then exits 1 (the configuration is still printed).
func (r *Result) Failed() bool {
	for _, f := range r.Findings {
		if f.Kind != Changed {
			return true
		}
	}
	return false
}

// Config returns the imported configuration.
func (r *Result) Config() *policy.Config {
	c := &policy.Config{}
	for _, p := range r.Policies {
		c.Policies = append(c.Policies, p.Policy)
	}
	return c
}

// Format names an input format.
type Format string

// The formats corsauthz import reads.
const (
	Istio        Format = "istio"
	Envoy        Format = "envoy"
	IngressNginx Format = "ingress-nginx"
	GatewayAPI   Format = "gateway-api"
	EnvoyGateway Format = "envoy-gateway"
)

// Formats lists the formats in the order the help text gives them.
func Formats() []Format { return []Format{Istio, Envoy, IngressNginx, GatewayAPI, EnvoyGateway} }

// ErrUnknownFormat is returned for a format Import does not know.
var ErrUnknownFormat = errors.New("unknown format")

// MaxInputBytes bounds one input file.
const MaxInputBytes = 16 << 20

// Import reads inputs as format. The error is a *ParseError when an input
// cannot be read (the command exits 2), or wraps ErrUnknownFormat.
func Import(format Format, inputs []Input) (*Result, error) {
	var run func(b *builder, docs []*doc) error
	switch format {
	case Istio:
		run = importIstio
	case Envoy:
		run = importEnvoy
	case IngressNginx:
		run = importIngressNginx
	case GatewayAPI:
		run = importGatewayAPI
	case EnvoyGateway:
		run = importEnvoyGateway
	default:
		return nil, fmt.Errorf("%w %q: use one of %s", ErrUnknownFormat, format, formatList())
	}
	b := newBuilder(format)
	var docs []*doc
	for _, in := range inputs {
		b.res.Inputs = append(b.res.Inputs, in.Name)
		if len(in.Data) > MaxInputBytes {
			return nil, &ParseError{Pos: Pos{in.Name, 1, 1}, Message: fmt.Sprintf("file is larger than %d bytes", MaxInputBytes)}
		}
		d, err := readDocs(in)
		if err != nil {
			return nil, err
		}
		docs = append(docs, d...)
	}
	if err := run(b, docs); err != nil {
		return nil, err
	}
	b.finish(inputs)
	return b.res, nil
}

func formatList() string {
	var s []string
	for _, f := range Formats() {
		s = append(s, string(f))
	}
	return strings.Join(s, ", ")
}

// builder collects what a format importer produces.
type builder struct {
	format Format
	res    *Result
	names  map[string]bool
	seen   map[string]bool // findings already made, see draft.find
}

func newBuilder(format Format) *builder {
	return &builder{format: format, res: &Result{Format: string(format)}, names: map[string]bool{}, seen: map[string]bool{}}
}

func (b *builder) find(at Pos, kind Kind, format string, args ...any) {
	b.res.Findings = append(b.res.Findings, Finding{Pos: at, Kind: kind, Message: fmt.Sprintf(format, args...)})
}

func (b *builder) note(at Pos, format string, args ...any) {
	b.res.Notes = append(b.res.Notes, Note{Pos: at, Message: fmt.Sprintf(format, args...)})
}

// name returns a unique policy name made from parts.
func (b *builder) name(parts ...string) string {
	var sb strings.Builder
	for _, p := range parts {
		if p == "" {
			continue
		}
		if sb.Len() > 0 {
			sb.WriteByte('-')
		}
		for _, c := range strings.ToLower(p) {
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '_':
				sb.WriteRune(c)
			default:
				sb.WriteByte('-')
			}
		}
	}
	base := strings.Trim(sb.String(), "-_")
	for strings.Contains(base, "--") {
		base = strings.ReplaceAll(base, "--", "-")
	}
	if base == "" {
		base = "imported"
	}
	if len(base) > 56 {
		base = strings.TrimRight(base[:56], "-_")
	}
	name := base
	for i := 2; b.names[name]; i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	b.names[name] = true
	return name
}

func (b *builder) add(p Policy) { b.res.Policies = append(b.res.Policies, p) }

func (b *builder) skip(format string, args ...any) {
	b.res.Skipped = append(b.res.Skipped, fmt.Sprintf(format, args...))
}

// finish adds the findings that concern the whole result.
func (b *builder) finish(inputs []Input) {
	if len(b.res.Policies) == 0 {
		at := Pos{File: "-", Line: 1, Column: 1}
		if len(inputs) > 0 {
			at.File = inputs[0].Name
		}
		if len(b.res.Findings) > 0 {
			b.find(at, Unsupported, "no policy could be imported (see the other findings): the output has no policies and does not load until you add one")
		} else {
			b.find(at, Unsupported, "no CORS configuration was found in the input (%s): nothing to import; check the format (--from) and that the objects carry CORS settings", b.format)
		}
	}
	// Policies that share a match form a group in corsauthz: the Origin
	// picks among them. In the source the first route decides.
	for i := range b.res.Policies {
		pi := &b.res.Policies[i]
		if len(pi.Match.Hosts) == 0 && len(pi.Match.PathPrefixes) == 0 {
			continue
		}
		for j := 0; j < i; j++ {
			pj := &b.res.Policies[j]
			if slices.Equal(pi.Match.Hosts, pj.Match.Hosts) && slices.Equal(pi.Match.PathPrefixes, pj.Match.PathPrefixes) {
				b.find(pi.At, Changed, "%s has the same hosts and paths as %s: in corsauthz both apply and the request's Origin picks the first that admits it, where in the source %s; check that this is what you want", pi.Source, pj.Source, b.shadowRule())
				break
			}
		}
	}
	slices.SortStableFunc(b.res.Findings, func(x, y Finding) int {
		if x.File != y.File {
			return 0 // keep input order across files
		}
		if x.Line != y.Line {
			return x.Line - y.Line
		}
		return x.Column - y.Column
	})
}

func (b *builder) shadowRule() string {
	switch b.format {
	case IngressNginx:
		return "ingress-nginx merges them into one location and the last annotation set wins"
	default:
		return "the first matching route decides alone"
	}
}
