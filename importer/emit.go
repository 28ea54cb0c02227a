package importer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// YAML writes the imported configuration: each policy with a comment
// naming its source object, the values dropped without effect as
// comments, and the sources that produced no policy at the end.
func (r *Result) YAML() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# corsauthz import --from %s %s\n", r.Format, oneLine(strings.Join(r.Inputs, " ")))
	counts := map[Kind]int{}
	for _, f := range r.Findings {
		counts[f.Kind]++
	}
	fmt.Fprintf(&b, "# findings: %d unsafe, %d changed, %d unsupported (printed on stderr; see docs/import.md)\n", counts[Unsafe], counts[Changed], counts[Unsupported])
	b.WriteString("policies:\n")
	if len(r.Policies) == 0 {
		b.WriteString("  []\n")
	}
	for i, p := range r.Policies {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "  # %s (%s)\n", oneLine(p.Source), p.At)
		for _, c := range p.Comments {
			fmt.Fprintf(&b, "  # %s\n", oneLine(c))
		}
		fmt.Fprintf(&b, "  - name: %s\n", quote(p.Name))
		if len(p.Match.Hosts) > 0 || len(p.Match.PathPrefixes) > 0 {
			b.WriteString("    match:\n")
			list(&b, "      ", "hosts", p.Match.Hosts)
			list(&b, "      ", "path_prefixes", p.Match.PathPrefixes)
		}
		list(&b, "    ", "allowed_origins", p.AllowedOrigins)
		list(&b, "    ", "allowed_methods", p.AllowedMethods)
		list(&b, "    ", "allowed_headers", p.AllowedHeaders)
		list(&b, "    ", "exposed_headers", p.ExposedHeaders)
		fmt.Fprintf(&b, "    allow_credentials: %t\n", p.AllowCredentials)
		fmt.Fprintf(&b, "    max_age_seconds: %d\n", p.MaxAgeInSeconds)
		if p.AllowPrivateNetwork {
			b.WriteString("    allow_private_network: true\n")
		}
		if p.ReportOnly {
			b.WriteString("    report_only: true\n")
		}
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(&b, "# %s\n", oneLine(s))
	}
	return b.Bytes()
}

func list(b *bytes.Buffer, indent, key string, items []string) {
	if len(items) == 0 {
		return
	}
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = quote(s)
	}
	fmt.Fprintf(b, "%s%s: [%s]\n", indent, key, strings.Join(q, ", "))
}

// quote writes s as a YAML double-quoted scalar (JSON's string syntax is
// a subset of it).
func quote(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

// oneLine keeps a comment on its line whatever the source's strings hold.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029 {
			return ' '
		}
		return r
	}, s)
}
