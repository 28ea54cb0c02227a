package policy

import (
	"bytes"
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/corsauthz/corsauthz/internal/limits"
)

// Limits on a configuration (docs/operations-and-limits.md), so that no file, however
// written, makes loading it use unbounded memory or CPU: loading any file,
// accepted or refused, stays under 256 MiB. Each is checked before the
// work it bounds, and a file past one is refused with a message naming it.
// The file's size is bounded when it is read (DefaultMaxConfigBytes, the
// serve and validate --max-config-bytes flag).
const (
	// DefaultMaxConfigBytes is the default largest configuration file read.
	DefaultMaxConfigBytes = 4 << 20
	// MaxPolicies bounds the policies of a configuration.
	MaxPolicies = 1000
	// MaxOrigins bounds the allowed_origins of all policies together,
	// counted after YAML aliases are expanded.
	MaxOrigins = 50_000
	// MaxYAMLNodes bounds the YAML nodes of a file, counted after aliases
	// are expanded (a few lines of aliases can stand for billions of
	// nodes), and estimated from its bytes before it is parsed at all,
	// since the YAML library's node tree takes some 300 bytes a node.
	MaxYAMLNodes = 300_000
)

// estimateYAMLNodes is an upper bound of the nodes the YAML parser builds
// for data, without parsing it: every node but the root is announced by
// an indicator (a sequence entry by "-" or ",", a mapping's key and value
// by ":" or ",", an explicit key by "?", a flow collection by "[" or
// "{"), so counting them, twice where they may announce two nodes, bounds
// the nodes. Indicators inside scalars count too: the bound is loose, by
// a factor of about three for a typical configuration.
func estimateYAMLNodes(data []byte) int {
	n := 1 + bytes.Count(data, []byte("-"))
	for _, c := range []byte(":,?[{") {
		n += 2 * bytes.Count(data, []byte{c})
	}
	return n
}

// expandedNodes counts the nodes under n with every alias replaced by what
// it names, and stops counting past limit. Each anchored node is counted
// once (memo), so a file of nested aliases costs its own size to count,
// not its expansion. An alias inside what it names expands forever: past
// the limit.
func expandedNodes(n *yaml.Node, limit int, memo map[*yaml.Node]int) int {
	if n == nil {
		return 0
	}
	if n.Kind == yaml.AliasNode {
		return expandedNodes(n.Alias, limit, memo)
	}
	if c, ok := memo[n]; ok {
		if c < 0 { // being counted: n contains itself
			return limit + 1
		}
		return c
	}
	if n.Anchor != "" {
		memo[n] = -1
	}
	count := 1
	for _, c := range n.Content {
		if count += expandedNodes(c, limit, memo); count > limit {
			count = limit + 1
			break
		}
	}
	if n.Anchor != "" {
		memo[n] = count
	}
	return count
}

// cutArgs cuts the strings and errors among a message's arguments
// (limits.Cut): values from the file reach logs and error messages, and a
// 1 MB origin must not make a 1 MB line.
func cutArgs(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case string:
			out[i] = limits.Cut(v)
		case error:
			out[i] = limits.Cut(v.Error())
		default:
			out[i] = a
		}
	}
	return out
}

// limitProblem is the message for a value past a limit.
func limitProblem(what string, n int, limit string, max int) string {
	return fmt.Sprintf("%s: %d, more than the limit of %d (%s)", what, n, max, limit)
}

// checkConfigLimits returns the problems of cfg past MaxPolicies and
// MaxOrigins, before anything is compiled.
func checkConfigLimits(cfg *Config) []*FieldError {
	var errs []*FieldError
	if n := len(cfg.Policies); n > MaxPolicies {
		errs = append(errs, &FieldError{Path: "policies", Message: limitProblem("too many policies", n, "policy.MaxPolicies", MaxPolicies)})
	}
	origins := 0
	for i := range cfg.Policies {
		origins += len(cfg.Policies[i].AllowedOrigins)
	}
	if origins > MaxOrigins {
		errs = append(errs, &FieldError{Path: "policies", Message: limitProblem("too many allowed_origins in all policies together, YAML aliases expanded", origins, "policy.MaxOrigins", MaxOrigins)})
	}
	return errs
}
