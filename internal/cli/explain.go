package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/corsauthz/corsauthz/policy"
)

// headerFlags collects repeated -H 'Name: value' flags, as curl takes them.
type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

var explainHelp = commandHelp{
	usage: "corsauthz explain [--config FILE] [--policy NAME] [-X METHOD] [-H 'Name: value']... [--json] URL",
	description: `Decides one request, described as for curl, and prints the verdict, the
headers the gateway would send or add, then why; for a rejected origin, the
closest allowed origin and what differs. A request with
Access-Control-Request-Method is a preflight even without -X OPTIONS. Exit 0
whatever the decision; warnings (a -X that contradicts the preflight, cookies
sent to a policy without allow_credentials) go to stderr. Examples:

  corsauthz explain -H 'Origin: https://app.example.com' https://api.example.com/v1/orders
  corsauthz explain -X OPTIONS -H 'Origin: https://app.example.com' \
      -H 'Access-Control-Request-Method: PUT' -H 'Access-Control-Request-Headers: content-type' \
      https://api.example.com/v1/orders`,
}

func runExplain(args []string, io IO) int {
	fs := newFlagSet("explain", io)
	config := fs.String("config", "", "configuration `FILE` (default: the built-in example)")
	maxConfigBytes := maxConfigBytesFlag(fs)
	policyName := fs.String("policy", "", "apply this policy (`NAME`, or a comma-separated group), as Envoy's cors_policy context extension would")
	method := fs.String("X", "", "request `METHOD` (default GET, or OPTIONS when Access-Control-Request-Method is given)")
	var headers headerFlags
	fs.Var(&headers, "H", "request header `'Name: value'` (repeatable)")
	asJSON := fs.Bool("json", false, "print the decision as JSON")
	positional, code, ok := parseFlags(fs, args, true, explainHelp, io)
	if !ok {
		return code
	}
	if err := applyEnv(fs, io.Env); err != nil {
		fmt.Fprintf(io.Stderr, "corsauthz explain: %v\n", err)
		return 2
	}
	if len(positional) != 1 {
		fmt.Fprintln(io.Stderr, "corsauthz explain: give exactly one URL, such as https://api.example.com/v1/orders")
		return 2
	}
	req, creds, err := buildRequest(positional[0], *method, headers)
	if err != nil {
		fmt.Fprintf(io.Stderr, "corsauthz explain: %v\n", err)
		return 2
	}
	req.Policy = *policyName
	var warnings []string
	if req.RequestMethod != "" && req.Method != "OPTIONS" {
		warnings = append(warnings, fmt.Sprintf("-X %s contradicts Access-Control-Request-Method: %s: only an OPTIONS request is a preflight, so this is decided as an actual %s request; leave -X out (or write -X OPTIONS) for the preflight", req.Method, req.RequestMethod, req.Method))
	}

	e, err := loadConfig(*config, *maxConfigBytes, io)
	if err != nil {
		printConfigError(io.Stderr, err)
		return 1
	}
	x, err := e.Explain(req)
	if err != nil {
		if errors.Is(err, policy.ErrUnknownPolicy) {
			fmt.Fprintf(io.Stderr, "corsauthz explain: %v; configured policies: %s\n", err, strings.Join(e.PolicyNames(), ", "))
			return 1
		}
		fmt.Fprintf(io.Stderr, "corsauthz explain: %v\n", err)
		return 1
	}
	warnings = append(warnings, credentialsWarning(creds, &x)...)
	for _, w := range warnings {
		fmt.Fprintf(io.Stderr, "warning: %s\n", w)
	}
	authz := explainAuthorizer(e, &x.Decision) // explain_authorizer.go
	if *asJSON {
		writeJSON(io.Stdout, &x, warnings, authz)
	} else {
		writeText(io.Stdout, &x, authz)
	}
	return 0
}

// credentialsWarning says, when the request carries credentials (the
// names in creds) and the answer does not allow them, that a fetch with
// credentials: "include" will be blocked: explain decides the request as
// the gateway would, but the browser's own check comes after.
func credentialsWarning(creds []string, x *policy.Explanation) []string {
	d := &x.Decision
	if len(creds) == 0 || d.Policy == "" || (d.Kind != policy.KindActualAllowed && d.Kind != policy.KindPreflightAllowed) {
		return nil
	}
	for _, h := range x.Headers {
		if h.Name == policy.HeaderAllowCredentials {
			return nil
		}
	}
	return []string{fmt.Sprintf("the request carries %s, but policy %q does not allow credentials (no allow_credentials): a fetch with credentials: \"include\" will be blocked by the browser, as the answer has no Access-Control-Allow-Credentials: true", strings.Join(creds, " and "), d.Policy)}
}

// buildRequest turns a curl-like description into a policy.Request, and
// names the credentials it carries (Cookie, Authorization). A header that
// is not 'Name: value' is refused rather than ignored: a typo would
// otherwise explain another request than the one meant.
func buildRequest(rawURL, method string, headers []string) (*policy.Request, []string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid URL %q: %v", rawURL, err)
	}
	if u.Host == "" {
		return nil, nil, fmt.Errorf("URL %q has no host: write it in full, such as https://api.example.com/v1/orders", rawURL)
	}
	var creds []string
	r := &policy.Request{Host: u.Host, Path: u.EscapedPath()}
	if r.Path == "" {
		r.Path = "/"
	}
	if u.RawQuery != "" {
		r.Path += "?" + u.RawQuery
	}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			return nil, nil, fmt.Errorf("header %q: write it as 'Name: value'", h)
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if name == ":authority" {
			r.Host = value
			continue
		}
		if !isToken(name) {
			msg := fmt.Sprintf("header %q: %q is not a header name; write it as 'Name: value'", h, name)
			if n, rest, ok := strings.Cut(strings.TrimSpace(h), " "); ok && isToken(n) {
				msg += fmt.Sprintf(", such as '%s: %s'", n, strings.TrimSpace(rest))
			}
			return nil, nil, errors.New(msg)
		}
		switch strings.ToLower(name) {
		case "cookie", "authorization":
			creds = append(creds, http.CanonicalHeaderKey(name))
		case "origin":
			r.Origin, r.OriginPresent = value, true
		case "access-control-request-method":
			r.RequestMethod = value
		case "access-control-request-headers":
			r.RequestHeaders = value
		case "access-control-request-private-network":
			r.RequestPrivateNetwork = value
		case "host":
			r.Host = value
		}
	}
	r.Method = method
	if r.Method == "" {
		r.Method = "GET"
		if r.RequestMethod != "" {
			r.Method = "OPTIONS"
		}
	}
	return r, creds, nil
}

// isToken reports whether s is an HTTP token (RFC 9110), as header names are.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

func writeText(w io.Writer, x *policy.Explanation, authz authorizerNote) {
	d := &x.Decision
	fmt.Fprintln(w, x.Verdict())
	if len(x.Headers) > 0 {
		fmt.Fprintln(w)
		switch {
		case d.ReportOnly:
			fmt.Fprintln(w, "Headers it would send (report only: none are sent):")
		case d.Direct():
			fmt.Fprintf(w, "HTTP %d, headers:\n", d.Status)
		default:
			fmt.Fprintln(w, "Headers added to the response:")
		}
		for _, h := range x.Headers {
			fmt.Fprintf(w, "  %s: %s\n", h.Name, h.Value)
		}
	} else if d.Direct() {
		fmt.Fprintf(w, "\nHTTP %d, no headers\n", d.Status)
	}
	if authz.text != "" {
		fmt.Fprintln(w)
		fmt.Fprintln(w, authz.text)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Why:")
	for _, r := range x.Reasons {
		fmt.Fprintf(w, "  - %s\n", r)
	}
}

type jsonHeader struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Append bool   `json:"append,omitempty"`
}

type jsonExplanation struct {
	Verdict           string       `json:"verdict"`
	Kind              string       `json:"kind"`
	Status            int          `json:"status,omitempty"`
	Policy            string       `json:"policy,omitempty"`
	ReportOnly        bool         `json:"report_only,omitempty"`
	Group             string       `json:"group,omitempty"`
	Reason            string       `json:"reason"`
	Headers           []jsonHeader `json:"headers"`
	Reasons           []string     `json:"reasons"`
	ClosestOrigin     string       `json:"closest_origin,omitempty"`
	OriginDifferences []string     `json:"origin_differences,omitempty"`
	Warnings          []string     `json:"warnings,omitempty"`
	// Authorizer names the authorizer a gateway's Check would ask.
	Authorizer string `json:"authorizer,omitempty"`
}

func writeJSON(w io.Writer, x *policy.Explanation, warnings []string, authz authorizerNote) {
	d := &x.Decision
	out := jsonExplanation{
		Verdict:           x.Verdict(),
		Kind:              d.Kind.String(),
		Status:            d.Status,
		Policy:            d.Policy,
		ReportOnly:        d.ReportOnly,
		Reason:            d.Reason.String(),
		Headers:           []jsonHeader{},
		Reasons:           x.Reasons,
		ClosestOrigin:     x.ClosestOrigin,
		OriginDifferences: x.OriginDifferences,
		Group:             d.Group,
		Warnings:          warnings,
		Authorizer:        authz.name,
	}
	for _, h := range x.Headers {
		out.Headers = append(out.Headers, jsonHeader(h))
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

var _ flag.Value = (*headerFlags)(nil)
