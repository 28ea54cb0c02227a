package policy

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/corsauthz/corsauthz/internal/limits"
)

// Canonical is the configuration in force written back as YAML in one
// canonical form: the keys of the configuration file in a fixed order,
// normalised values, no comments, no file path. It is what corsauthz
// publishes to gateways over xDS, so that a gateway compiles exactly what
// the service decides with and learns nothing of the file beyond it.
// Authorizer credentials are never part of it: a static header names
// where its value comes from (an environment variable or a file, resolved
// where the call is made), never the value. Load(name, e.Canonical())
// compiles to the same configuration.
func (e *Engine) Canonical() ([]byte, error) {
	size := 64
	for i := range e.config.Policies {
		size += policySize(&e.config.Policies[i])
	}
	b := make([]byte, 0, size)
	b, err := e.appendCanonical(b, nil)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// WriteCanonical writes what Canonical returns to w, a policy at a time,
// and returns how many bytes it wrote. It holds a few KiB of its own where
// Canonical holds the whole form (about 2.5 MiB at the documented caps):
// the xDS publisher hashes the form with it for the version, and writes
// it straight into the encoded resource when a gateway subscribes.
func (e *Engine) WriteCanonical(w io.Writer) (int, error) {
	n := 0
	b, err := e.appendCanonical(make([]byte, 0, 16<<10), func(b []byte) error {
		k, err := w.Write(b)
		n += k
		return err
	})
	if err != nil {
		return n, err
	}
	k, err := w.Write(b)
	return n + k, err
}

// appendCanonical appends the canonical form to b; when flush is not nil,
// it is given what b holds whenever that passes 8 KiB, and b starts over.
func (e *Engine) appendCanonical(b []byte, flush func([]byte) error) ([]byte, error) {
	cfg := &e.config
	// The policies are written here, one line at a time: the YAML
	// library's encoder queues every event of a document until its end,
	// and for the 50,000 origins of a configuration at the caps took more
	// than 100 MiB to write 3 MB. The authorizers (a few) still go
	// through it.
	if len(cfg.Authorizers) > 0 {
		auth, err := yaml.Marshal(yamlAuthorizers{cfg.Authorizers})
		if err != nil {
			return nil, err
		}
		b = append(b, auth...)
	}
	b = append(b, "policies:\n"...)
	if len(cfg.Policies) == 0 {
		b = append(b[:len(b)-1], " []\n"...)
	}
	var err error
	for i := range cfg.Policies {
		if b, err = appendPolicy(b, &cfg.Policies[i]); err != nil {
			return nil, err
		}
		if flush != nil && len(b) > 8<<10 {
			if err := flush(b); err != nil {
				return nil, err
			}
			b = b[:0]
		}
	}
	if cfg.DefaultPolicy != "" {
		if b, err = appendField(b, "", "default_policy", cfg.DefaultPolicy); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// policySize is about the bytes appendPolicy writes for p.
func policySize(p *Policy) int {
	n := 256 + len(p.Name) + len(p.Authorizer)
	for _, list := range [][]string{p.Match.Hosts, p.Match.PathPrefixes, p.AllowedOrigins, p.AllowedMethods, p.AllowedHeaders, p.ExposedHeaders} {
		for _, s := range list {
			n += len(s) + 10
		}
	}
	return n
}

// appendPolicy writes p as an item of the policies list: its keys in the
// order the documentation writes them, empty values left out (but
// allowed_origins, which a policy must have).
func appendPolicy(b []byte, p *Policy) ([]byte, error) {
	var err error
	b = append(b, "  - "...)
	if b, err = appendField(b, "", "name", p.Name); err != nil {
		return nil, err
	}
	const in = "    "
	if len(p.Match.Hosts) > 0 || len(p.Match.PathPrefixes) > 0 {
		b = append(b, in+"match:\n"...)
		if b, err = appendList(b, in+"  ", "hosts", p.Match.Hosts, true); err != nil {
			return nil, err
		}
		if b, err = appendList(b, in+"  ", "path_prefixes", p.Match.PathPrefixes, true); err != nil {
			return nil, err
		}
	}
	for _, l := range []struct {
		key       string
		values    []string
		omitEmpty bool
	}{
		{"allowed_origins", p.AllowedOrigins, false},
		{"allowed_methods", p.AllowedMethods, true},
		{"allowed_headers", p.AllowedHeaders, true},
		{"exposed_headers", p.ExposedHeaders, true},
	} {
		if b, err = appendList(b, in, l.key, l.values, l.omitEmpty); err != nil {
			return nil, err
		}
	}
	b = appendTrue(b, in, "allow_credentials", p.AllowCredentials)
	if p.MaxAgeInSeconds != 0 {
		b = append(b, in+"max_age_seconds: "...)
		b = strconv.AppendInt(b, int64(p.MaxAgeInSeconds), 10)
		b = append(b, '\n')
	}
	b = appendTrue(b, in, "allow_private_network", p.AllowPrivateNetwork)
	b = appendTrue(b, in, "reject_disallowed_origins", p.RejectDisallowedOrigins)
	b = appendTrue(b, in, "report_only", p.ReportOnly)
	if p.Authorizer != "" {
		if b, err = appendField(b, in, "authorizer", p.Authorizer); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// appendTrue writes "indent key: true" when on.
func appendTrue(b []byte, indent, key string, on bool) []byte {
	if !on {
		return b
	}
	return append(append(append(b, indent...), key...), ": true\n"...)
}

// appendField writes "indent key: value".
func appendField(b []byte, indent, key, value string) ([]byte, error) {
	b = append(append(append(b, indent...), key...), ": "...)
	b, err := appendScalar(b, value)
	return append(b, '\n'), err
}

// appendList writes "indent key:" and the values as a block list ("[]"
// when empty, or nothing at all when omitEmpty).
func appendList(b []byte, indent, key string, values []string, omitEmpty bool) ([]byte, error) {
	if len(values) == 0 {
		if omitEmpty {
			return b, nil
		}
		return append(append(append(b, indent...), key...), ": []\n"...), nil
	}
	b = append(append(append(b, indent...), key...), ":\n"...)
	var err error
	for _, v := range values {
		b = append(append(b, indent...), "  - "...)
		if b, err = appendScalar(b, v); err != nil {
			return nil, err
		}
		b = append(b, '\n')
	}
	return b, nil
}

// appendScalar writes s as a YAML string that reads back as s: plain when
// it cannot be read as anything else (the usual origin, host, path, name
// or header), else double-quoted with escapes.
func appendScalar(b []byte, s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("%q is not valid UTF-8: YAML cannot hold it", limits.Cut(s))
	}
	if plainSafe(s) {
		return append(b, s...), nil
	}
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r == '\t':
			b = append(b, `\t`...)
		case r == '\n':
			b = append(b, `\n`...)
		case yamlPrintable(r):
			b = utf8.AppendRune(b, r)
		case r <= 0xffff:
			b = fmt.Appendf(b, `\u%04X`, r)
		default:
			b = fmt.Appendf(b, `\U%08X`, r)
		}
	}
	return append(b, '"'), nil
}

// plainSafe reports whether s can be written as a plain YAML scalar and
// read back as the same string: it starts with a letter or '/', holds
// only letters, digits and -._/:*+~ (no space, no comment, no flow
// indicator), does not end with ':', and is none of the words YAML 1.1
// or 1.2 read as a boolean or null.
func plainSafe(s string) bool {
	if s == "" || s[len(s)-1] == ':' {
		return false
	}
	if c := s[0]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '/') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._/:*+~", c) >= 0) {
			return false
		}
	}
	switch strings.ToLower(s) {
	case "y", "yes", "n", "no", "true", "false", "on", "off", "null":
		return false
	}
	return true
}

// yamlPrintable reports whether r may appear as itself in a double-quoted
// YAML scalar (YAML 1.2's printable set, less the line breaks YAML folds).
func yamlPrintable(r rune) bool {
	switch {
	case r >= 0x20 && r <= 0x7e:
		return true
	case r == 0x85 || r == 0x2028 || r == 0x2029 || r == 0xfeff:
		return false
	case r >= 0xa0 && r <= 0xd7ff, r >= 0xe000 && r <= 0xfffd, r >= 0x10000 && r <= 0x10ffff:
		return true
	}
	return false
}

// yamlAuthorizers is the authorizers section of the canonical form, each
// written by Authorizer.MarshalYAML.
type yamlAuthorizers struct {
	Authorizers []Authorizer `yaml:"authorizers"`
}
