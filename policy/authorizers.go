package policy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corsauthz/corsauthz/policy/internal/httpsyntax"
)

// Authorizer is an auth service corsauthz asks, after CORS, about every
// request a policy naming it selects (docs/authorizers.md): the gateway calls
// corsauthz only, and corsauthz calls the auth service the user already
// runs. Exactly one of HTTP and GRPC is set.
//
// The policy package only holds the configuration and says which
// authorizer a decision needs ([Engine.AuthorizerFor]); the clients that
// call authorizers live in package authorizer.
type Authorizer struct {
	// Name is unique among authorizers and matches
	// [a-z0-9][a-z0-9_-]{0,63}; policies name it in Policy.Authorizer.
	Name string
	HTTP *HTTPAuthorizer
	GRPC *GRPCAuthorizer
	// OnError is what happens when the authorizer fails (unreachable,
	// timeout, a malformed answer): OnErrorDeny (the default, a 503 with
	// the CORS headers) or OnErrorAllow (fail open: the request goes on
	// upstream as if allowed, with nothing added from the authorizer).
	OnError string
	// StaticHeaders are sent with every call (HTTP request headers, or
	// gRPC metadata): credentials corsauthz itself presents to the
	// authorizer, such as an API key. Their values are never part of the
	// configuration: each names where its value is read, where the call
	// is made (see [ValueSource]).
	StaticHeaders []StaticHeader
}

// StaticHeader is one header an authorizer is always sent.
type StaticHeader struct {
	// Name is a header name (lower case once compiled); for a gRPC
	// authorizer a metadata key.
	Name string
	// ValueFrom says where the value is read.
	ValueFrom ValueSource
}

// ValueSource names where a secret value is read: exactly one of Env and
// File. The value itself never enters a Config, so no serialized
// configuration (a canonical form published to gateways, a log line, a
// hash) can carry it: a gateway that asks the authorizer itself reads the
// same variable or file from its own environment.
type ValueSource struct {
	// Env is the name of an environment variable.
	Env string
	// File is the path of a file holding the value (a Kubernetes Secret
	// mounted as a volume); one trailing newline is not part of it.
	File string
}

// Values of Authorizer.OnError.
const (
	OnErrorDeny  = "deny"
	OnErrorAllow = "allow"
)

// MaxAuthorizerTimeout is the largest timeout an authorizer may have.
// Gateways give the whole ext_authz call a timeout of their own, which must
// be longer; ten seconds is far past what a page waits for.
const MaxAuthorizerTimeout = 10 * time.Second

// HTTPAuthorizer is a forward-auth service, asked the way NGINX
// auth_request and Envoy's http_service ask: a GET carrying the request's
// method, host, scheme and path-and-query in X-Forwarded-Method, -Host,
// -Proto and -Uri, and the request headers listed in Headers. A 2xx answer
// allows; any other status denies, and is sent to the browser.
type HTTPAuthorizer struct {
	// URL is where the check goes: http:// or https://.
	URL string
	// ForwardPath appends the request's path and query to URL's path; URL
	// may then carry no query. Without it the check goes to URL exactly.
	ForwardPath bool
	// Headers are the request headers sent along (lower case), such as
	// cookie and authorization.
	Headers []string
	// UpstreamHeaders are the names of the authorizer's response headers
	// passed upstream when it allows (lower case). Those it leaves out
	// are removed from the request, so a client cannot send its own.
	UpstreamHeaders []string
	// Timeout bounds the whole check, connection and answer included.
	Timeout time.Duration
}

// GRPCAuthorizer is an envoy.service.auth.v3.Authorization server, sent
// the CheckRequest exactly as the gateway sent it to corsauthz.
type GRPCAuthorizer struct {
	// Address is host:port, dialled in plain text unless TLS is set.
	Address string
	// Timeout bounds each Check.
	Timeout time.Duration
	// TLS, when set (even empty: tls: {} in the file), dials with TLS.
	TLS *TLSClient
}

// TLSClient is how an authorizer's connection is secured. The files are
// read when a connection is made, so a rotated certificate is used from
// the next connection on without a reload.
type TLSClient struct {
	// CAFile is a PEM file of the certificate authorities the server's
	// certificate must chain to; empty: the system's roots.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key,
	// presented to a server that asks for one: both or neither.
	CertFile, KeyFile string
	// ServerName is the name the server's certificate must hold; empty:
	// the host of Address.
	ServerName string
}

// Kind is "http" or "grpc".
func (a *Authorizer) Kind() string {
	if a.GRPC != nil {
		return "grpc"
	}
	return "http"
}

// Timeout is the authorizer's timeout, whatever its kind.
func (a *Authorizer) Timeout() time.Duration {
	if a.GRPC != nil {
		return a.GRPC.Timeout
	}
	if a.HTTP != nil {
		return a.HTTP.Timeout
	}
	return 0
}

// FailOpen reports whether a failure lets the request through.
func (a *Authorizer) FailOpen() bool { return a.OnError == OnErrorAllow }

// Equal reports whether a and b configure the same client, so that a
// reload can keep an unchanged authorizer's connections.
func (a *Authorizer) Equal(b *Authorizer) bool {
	if a.Name != b.Name || a.OnError != b.OnError || (a.HTTP == nil) != (b.HTTP == nil) || (a.GRPC == nil) != (b.GRPC == nil) ||
		!slices.Equal(a.StaticHeaders, b.StaticHeaders) {
		return false
	}
	if a.GRPC != nil {
		x, y := a.GRPC, b.GRPC
		if x.Address != y.Address || x.Timeout != y.Timeout || (x.TLS == nil) != (y.TLS == nil) || (x.TLS != nil && *x.TLS != *y.TLS) {
			return false
		}
	}
	if a.HTTP != nil {
		x, y := a.HTTP, b.HTTP
		return x.URL == y.URL && x.ForwardPath == y.ForwardPath && x.Timeout == y.Timeout &&
			slices.Equal(x.Headers, y.Headers) && slices.Equal(x.UpstreamHeaders, y.UpstreamHeaders)
	}
	return true
}

func (a *Authorizer) clone() Authorizer {
	c := *a
	c.StaticHeaders = slices.Clone(a.StaticHeaders)
	if a.HTTP != nil {
		h := *a.HTTP
		h.Headers = slices.Clone(h.Headers)
		h.UpstreamHeaders = slices.Clone(h.UpstreamHeaders)
		c.HTTP = &h
	}
	if a.GRPC != nil {
		g := *a.GRPC
		if g.TLS != nil {
			t := *g.TLS
			g.TLS = &t
		}
		c.GRPC = &g
	}
	return c
}

// Authorizers returns the configured authorizers, in file order.
func (e *Engine) Authorizers() []Authorizer {
	out := make([]Authorizer, len(e.config.Authorizers))
	for i := range e.config.Authorizers {
		out[i] = e.config.Authorizers[i].clone()
	}
	return out
}

// Authorizer returns the configuration of the authorizer named name.
func (e *Engine) Authorizer(name string) (Authorizer, bool) {
	for i := range e.config.Authorizers {
		if e.config.Authorizers[i].Name == name {
			return e.config.Authorizers[i].clone(), true
		}
	}
	return Authorizer{}, false
}

// AuthorizerKind is "http" or "grpc" for the authorizer named name, or ""
// when there is none; unlike Authorizer it copies nothing (the request path).
func (e *Engine) AuthorizerKind(name string) string {
	if a := e.authorizer(name); a != nil {
		return a.Kind()
	}
	return ""
}

// AuthorizerFailsOpen reports whether the authorizer named name has
// on_error: allow; it copies nothing (the request path).
func (e *Engine) AuthorizerFailsOpen(name string) bool {
	a := e.authorizer(name)
	return a != nil && a.FailOpen()
}

func (e *Engine) authorizer(name string) *Authorizer {
	for i := range e.config.Authorizers {
		if e.config.Authorizers[i].Name == name {
			return &e.config.Authorizers[i]
		}
	}
	return nil
}

// AuthorizerFor names the authorizer the request decided as d must be
// sent to, or "" when none is asked: no policy applied, its policy names
// none, or corsauthz answers the request itself ([Decision.Direct]: a
// preflight, allowed or not, or a refusal of reject_disallowed_origins).
// Everything that goes on upstream under a policy with an authorizer is
// asked, CORS or not, report_only or not: report-only applies to CORS,
// never to authorization, and a report-only preflight goes upstream, so
// it is asked like any other request.
func (e *Engine) AuthorizerFor(d *Decision) string {
	if d.Policy == "" || len(e.policyAuthorizers) == 0 || d.Direct() {
		return ""
	}
	return e.policyAuthorizers[d.Policy]
}

// PolicyAuthorizer names the authorizer policy names, or "".
func (e *Engine) PolicyAuthorizer(policy string) string { return e.policyAuthorizers[policy] }

// compileAuthorizers checks cfg's authorizers and the policies' references
// to them, and records which policy asks which.
func (c *compiler) compileAuthorizers(cfg *Config, e *Engine) {
	byName := make(map[string]int, len(cfg.Authorizers))
	for i := range cfg.Authorizers {
		path := fmt.Sprintf("authorizers[%d]", i)
		a := c.checkAuthorizer(path, &cfg.Authorizers[i])
		if a.Name != "" && policyNameRE.MatchString(a.Name) {
			if j, dup := byName[a.Name]; dup {
				c.errorf(path+".name", "duplicate authorizer name %q (authorizers[%d] has it already): names must be unique", a.Name, j)
			} else {
				byName[a.Name] = i
			}
		}
		e.config.Authorizers = append(e.config.Authorizers, a)
	}
	used := make(map[string]bool, len(byName))
	for i, p := range cfg.Policies {
		if i < len(e.policies) {
			e.policies[i].authorizer = p.Authorizer
		}
		if p.Authorizer == "" {
			continue
		}
		if _, ok := byName[p.Authorizer]; !ok {
			path := fmt.Sprintf("policies[%d].authorizer", i)
			if len(byName) == 0 {
				c.errorf(path, "authorizer %q names no authorizer: define it under authorizers, or leave it out", p.Authorizer)
			} else {
				c.errorf(path, "authorizer %q names no authorizer: write one of %s, or leave it out", p.Authorizer, quotedList(slices.Collect(maps.Keys(byName))))
			}
			continue
		}
		used[p.Authorizer] = true
		if e.policyAuthorizers == nil {
			e.policyAuthorizers = make(map[string]string)
		}
		e.policyAuthorizers[p.Name] = p.Authorizer
	}
	for name, i := range byName {
		if !used[name] {
			c.errorf(fmt.Sprintf("authorizers[%d].name", i), "authorizer %q is used by no policy: name it in a policy's authorizer field, or remove it", name)
		}
	}
	c.checkGroupAuthorizers(&e.routes)
}

// checkGroupAuthorizers refuses policies that share a match but not their
// authorizer. Among policies that share a match the request's Origin picks
// the one that decides (see routeGroup.pick), and the Origin is whatever
// the client sends: if the authorizer went with the policy, the client
// would choose who authorizes it, or that nobody does. Each policy whose
// authorizer differs from the first of its group's is an error at its own
// position, once per pair however many hosts or prefixes they share.
func (c *compiler) checkGroupAuthorizers(t *routeTable) {
	type pair struct{ first, other *compiledPolicy }
	reported := map[pair]bool{}
	check := func(groups []*routeGroup) {
		for _, g := range groups {
			first := g.policies[0]
			for _, p := range g.policies[1:] {
				if p.authorizer == first.authorizer || reported[pair{first, p}] {
					continue
				}
				reported[pair{first, p}] = true
				c.groupAuthorizerProblem(first, p, g.describe())
			}
		}
	}
	// Sorted, so that the errors come in the same order every time
	// (Load sorts them by position anyway).
	for _, h := range slices.Sorted(maps.Keys(t.exactHosts)) {
		check(t.exactHosts[h])
	}
	for _, h := range slices.Sorted(maps.Keys(t.wildcardHosts)) {
		check(t.wildcardHosts[h])
	}
	check(t.anyHost)
}

// groupAuthorizerProblem reports p sharing match with first, whose
// authorizer differs, and says what to write.
func (c *compiler) groupAuthorizerProblem(first, p *compiledPolicy, match string) {
	const why = "the request's Origin picks the policy that decides among policies sharing a match, and a client sends any Origin it likes, so it would choose"
	path := fmt.Sprintf("policies[%d].authorizer", p.index)
	switch {
	case p.authorizer == "":
		c.errorf(path, "policy %q asks no authorizer, but shares its match (%s) with %q, which asks %q: %s whether %q is asked; write authorizer: %s here too, or give %q a match of its own",
			p.name, match, first.name, first.authorizer, why, first.authorizer, first.authorizer, p.name)
	case first.authorizer == "":
		c.errorf(path, "policy %q asks authorizer %q, but shares its match (%s) with %q, which asks none: %s whether %q is asked; write authorizer: %s in %q too, or give %q a match of its own",
			p.name, p.authorizer, match, first.name, why, p.authorizer, p.authorizer, first.name, p.name)
	default:
		c.errorf(path, "policy %q asks authorizer %q, but shares its match (%s) with %q, which asks %q: %s who authorizes it; name the same authorizer in both, or give %q a match of its own",
			p.name, p.authorizer, match, first.name, first.authorizer, why, p.name)
	}
}

// describe says which requests the group matches, for messages.
func (g *routeGroup) describe() string {
	host := "any host"
	if g.hostRules != "" {
		host = "host " + g.hostRules
	}
	if g.anyPath {
		return host + ", any path"
	}
	return host + ", path prefix " + g.prefix
}

func (c *compiler) checkAuthorizer(path string, a *Authorizer) Authorizer {
	out := a.clone()
	switch {
	case a.Name == "":
		c.errorf(path+".name", "name is required: write a short name such as \"oauth2-proxy\" ([a-z0-9][a-z0-9_-]{0,63})")
	case !policyNameRE.MatchString(a.Name):
		c.errorf(path+".name", "invalid name %q: use 1 to 64 lower-case letters, digits, '-' or '_', starting with a letter or digit", a.Name)
	}
	switch a.OnError {
	case "":
		out.OnError = OnErrorDeny
	case OnErrorDeny, OnErrorAllow:
	default:
		c.errorf(path+".on_error", "on_error %q: write %q (the default: a failure is answered 503) or %q (fail open)", a.OnError, OnErrorDeny, OnErrorAllow)
	}
	switch {
	case a.HTTP == nil && a.GRPC == nil:
		c.errorf(path, "an authorizer needs http (a forward-auth URL) or grpc (an ext_authz server's address)")
	case a.HTTP != nil && a.GRPC != nil:
		c.errorf(path+".grpc", "an authorizer is http or grpc, not both: write two authorizers")
	case a.HTTP != nil:
		c.checkHTTPAuthorizer(path+".http", out.HTTP)
	default:
		c.checkTimeout(path+".grpc.timeout", a.GRPC.Timeout)
		if err := checkGRPCAddress(a.GRPC.Address); err != nil {
			c.errorf(path+".grpc.address", "%v", err)
		}
		if a.GRPC.TLS != nil {
			c.checkTLS(path+".grpc.tls", a.GRPC.TLS)
		}
	}
	out.StaticHeaders = c.checkStaticHeaders(path+".static_headers", &out)
	return out
}

func (c *compiler) checkHTTPAuthorizer(path string, h *HTTPAuthorizer) {
	c.checkTimeout(path+".timeout", h.Timeout)
	switch u, err := url.Parse(h.URL); {
	case h.URL == "":
		c.errorf(path+".url", "url is required: write the check's URL, such as \"http://oauth2-proxy.auth.svc:4180/oauth2/auth\"")
	case err != nil:
		c.errorf(path+".url", "url %q is not a URL: %v", h.URL, urlErrorText(err))
	case u.Scheme != "http" && u.Scheme != "https":
		c.errorf(path+".url", "url %q must start with http:// or https://", h.URL)
	case u.Host == "":
		c.errorf(path+".url", "url %q has no host", h.URL)
	case u.User != nil:
		c.errorf(path+".url", "url %q carries a user name or password, which would be configuration text (logged, published to gateways): send the credential as a static_headers entry read from the environment or a file instead", redactUserinfo(u))
	case u.Fragment != "" || strings.Contains(h.URL, "#"):
		c.errorf(path+".url", "url %q has a fragment (#...), which is never sent: leave it out", h.URL)
	case h.ForwardPath && (u.RawQuery != "" || u.ForceQuery):
		c.errorf(path+".url", "url %q has a query, and forward_path appends the request's path and query to it: drop the query, or set forward_path: false", h.URL)
	default:
		for _, key := range credentialQueryKeys(u.RawQuery) {
			c.warnf(path+".url", "url's query parameter %q looks like a credential, and the URL is configuration text (logged, published to gateways): send it as a static_headers entry read from the environment or a file instead", key)
		}
	}
	h.Headers = c.authorizerHeaderNames(path+".headers", h.Headers)
	h.UpstreamHeaders = c.authorizerHeaderNames(path+".upstream_headers", h.UpstreamHeaders)
	for i, n := range h.UpstreamHeaders {
		if why := reservedUpstreamHeader(n); why != "" {
			c.errorf(fmt.Sprintf("%s.upstream_headers[%d]", path, i), "%q %s: remove it from upstream_headers", n, why)
		}
	}
}

// redactUserinfo is u with its password replaced, for a message.
func redactUserinfo(u *url.URL) string {
	c := *u
	if _, ok := c.User.Password(); ok {
		c.User = url.UserPassword(c.User.Username(), "xxxxx")
	}
	return c.String()
}

// credentialWords are the parts of a query parameter's name that make it
// look like a credential.
var credentialWords = []string{"token", "key", "secret", "password", "passwd", "pwd", "credential", "auth", "sig"}

// credentialQueryKeys lists the names of query parameters that look like
// credentials (access_token, api_key, client_secret, password, ...).
func credentialQueryKeys(rawQuery string) []string {
	var out []string
	for part := range strings.SplitSeq(rawQuery, "&") {
		key, _, _ := strings.Cut(part, "=")
		if k, err := url.QueryUnescape(key); err == nil {
			key = k
		}
		lower := strings.ToLower(key)
		for _, w := range credentialWords {
			if strings.Contains(lower, w) {
				out = append(out, key)
				break
			}
		}
	}
	return out
}

// reservedUpstreamHeader says why name cannot be one of upstream_headers,
// or "": corsauthz alone speaks CORS, and an authorizer's answer never
// sets a connection's framing or a gateway's control headers.
func reservedUpstreamHeader(name string) string {
	switch {
	case strings.HasPrefix(name, "access-control-"):
		return "is a CORS header, which only corsauthz sets"
	case strings.HasPrefix(name, "x-accel-"):
		return "is an NGINX control header, which an authorizer's answer never sets"
	case hopByHop(name):
		return "describes a connection, not the request"
	}
	return ""
}

// hopByHop reports whether the lower-case name is a framing or hop-by-hop
// header (RFC 9110 7.6.1), or Host.
func hopByHop(name string) bool {
	switch name {
	case "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "content-length", "host":
		return true
	}
	return strings.HasPrefix(name, "proxy-")
}

// authorizerHeaderNames checks header names and returns them in lower case.
func (c *compiler) authorizerHeaderNames(path string, names []string) []string {
	out := make([]string, 0, len(names))
	for i, n := range names {
		np := fmt.Sprintf("%s[%d]", path, i)
		if !httpsyntax.IsToken(n) || len(n) > maxHeaderNameLen {
			c.errorf(np, "%q is not a header name: use letters, digits and -", n)
			continue
		}
		out = append(out, strings.ToLower(n))
	}
	return out
}

// MaxStaticHeaders bounds the static_headers of one authorizer.
const MaxStaticHeaders = 16

// envNameRE is the name of an environment variable, as shells write it.
var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,255}$`)

// grpcMetadataKeyRE is a gRPC metadata key (lower case once compiled).
var grpcMetadataKeyRE = regexp.MustCompile(`^[0-9a-z_.-]{1,256}$`)

// checkStaticHeaders checks a's static_headers and returns them with
// lower-case names.
func (c *compiler) checkStaticHeaders(path string, a *Authorizer) []StaticHeader {
	if len(a.StaticHeaders) > MaxStaticHeaders {
		c.errorf(path, "%d static headers, more than the limit of %d (policy.MaxStaticHeaders): an authorizer needs a credential or two", len(a.StaticHeaders), MaxStaticHeaders)
		return nil
	}
	out := make([]StaticHeader, 0, len(a.StaticHeaders))
	seen := map[string]int{}
	for i, h := range a.StaticHeaders {
		hp := fmt.Sprintf("%s[%d]", path, i)
		name := strings.ToLower(h.Name)
		h.Name = name
		switch {
		case name == "":
			c.errorf(hp+".name", "name is required: write the header the authorizer expects, such as \"x-api-key\"")
		case !httpsyntax.IsToken(name) || len(name) > maxHeaderNameLen:
			c.errorf(hp+".name", "%q is not a header name: use letters, digits and -", h.Name)
		case a.GRPC != nil && !grpcMetadataKeyRE.MatchString(name):
			c.errorf(hp+".name", "%q is not a gRPC metadata key: use letters, digits, '-', '_' and '.'", h.Name)
		case a.GRPC != nil && (strings.HasPrefix(name, "grpc-") || strings.HasSuffix(name, "-bin") || name == "content-type" || name == "user-agent"):
			c.errorf(hp+".name", "%q is reserved by gRPC (grpc-*, *-bin, content-type, user-agent): choose another name", name)
		case strings.HasPrefix(name, "x-forwarded-"):
			c.errorf(hp+".name", "%q would clash with the X-Forwarded-* headers corsauthz sends to describe the request: choose another name", name)
		case hopByHop(name):
			c.errorf(hp+".name", "%q describes a connection, not a credential: choose another name", name)
		case a.HTTP != nil && slices.Contains(a.HTTP.Headers, name):
			c.errorf(hp+".name", "%q is also in http.headers, which sends the client's own value: remove it from one of them", name)
		default:
			if j, dup := seen[name]; dup {
				c.errorf(hp+".name", "static header %q is set twice (static_headers[%d] has it already): keep one", name, j)
			} else {
				seen[name] = i
			}
		}
		c.checkValueSource(hp+".value_from", h.ValueFrom)
		out = append(out, h)
	}
	return out
}

// checkValueSource checks where a static header's value is read. When
// the files are checked (the service loading its own configuration), a
// variable that is not set or a file that cannot be read is a warning:
// the value is read at each call, so it may come later, and until it does
// calls fail (503) rather than go out without it.
func (c *compiler) checkValueSource(path string, v ValueSource) {
	switch {
	case v.Env == "" && v.File == "":
		c.errorf(path, "value_from needs env (an environment variable's name) or file (a file's path), such as {env: OPA_API_KEY}; the value itself is never written in the configuration")
	case v.Env != "" && v.File != "":
		c.errorf(path, "value_from is env or file, not both: keep one")
	case v.Env != "":
		if !envNameRE.MatchString(v.Env) {
			c.errorf(path+".env", "%q is not an environment variable's name: use letters, digits and '_', not starting with a digit", v.Env)
		} else if _, set := os.LookupEnv(v.Env); c.checkFiles && !set {
			c.warnf(path+".env", "environment variable %s is not set here: calls to this authorizer fail (503) until it is", v.Env)
		}
	default:
		if !filepath.IsAbs(v.File) {
			c.errorf(path+".file", "file %q must be an absolute path: the value is read where the call is made, whose working directory may differ", v.File)
		} else if c.checkFiles {
			if _, err := ReadSecretFile(v.File); err != nil {
				c.warnf(path+".file", "%v: calls to this authorizer fail (503) until it can be read", err)
			}
		}
	}
}

// MaxSecretFileBytes bounds a file read for a static header's value or a
// TLS certificate, key or CA bundle.
const MaxSecretFileBytes = 1 << 20

// ReadSecretFile reads a small regular file holding a secret or a
// certificate: at most MaxSecretFileBytes. Its errors name the file, never
// its content.
func ReadSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, unwrapPath(err))
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxSecretFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	if len(b) > MaxSecretFileBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, MaxSecretFileBytes)
	}
	return b, nil
}

// unwrapPath drops the *fs.PathError around err, whose text repeats the
// path.
func unwrapPath(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	return err
}

// checkTLS checks a gRPC authorizer's TLS settings and, when the files
// are checked, that they can be read and hold what they should.
func (c *compiler) checkTLS(path string, t *TLSClient) {
	for _, f := range []struct{ field, file string }{{"ca_file", t.CAFile}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
		if f.file != "" && !filepath.IsAbs(f.file) {
			c.errorf(path+"."+f.field, "%s %q must be an absolute path: it is read where the connection is made, whose working directory may differ", f.field, f.file)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		missing := "key_file"
		if t.CertFile == "" {
			missing = "cert_file"
		}
		c.errorf(path+"."+missing, "a client certificate needs both cert_file and key_file: write %s, or leave both out", missing)
		return
	}
	if t.ServerName != "" && (strings.ContainsAny(t.ServerName, "/:@ ") || len(t.ServerName) > 253) {
		c.errorf(path+".server_name", "server_name %q must be a host name, without port or scheme", t.ServerName)
	}
	if !c.checkFiles {
		return
	}
	if t.CAFile != "" && filepath.IsAbs(t.CAFile) {
		if _, err := LoadTLSRoots(t.CAFile); err != nil {
			c.errorf(path+".ca_file", "%v", err)
		}
	}
	if t.CertFile != "" && filepath.IsAbs(t.CertFile) && filepath.IsAbs(t.KeyFile) {
		if _, err := LoadTLSKeyPair(t.CertFile, t.KeyFile); err != nil {
			c.errorf(path+".cert_file", "%v", err)
		}
	}
}

// LoadTLSRoots reads a PEM file of certificate authorities.
func LoadTLSRoots(file string) (*x509.CertPool, error) {
	b, err := ReadSecretFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

// LoadTLSKeyPair reads a PEM certificate and its private key.
func LoadTLSKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := ReadSecretFile(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := ReadSecretFile(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s and %s are not a certificate and its key: %v", certFile, keyFile, err)
	}
	return pair, nil
}

func (c *compiler) checkTimeout(path string, d time.Duration) {
	switch {
	case d == 0:
		c.errorf(path, "timeout is required: write how long to wait for the authorizer, such as 250ms (at most %s), and give the gateway's own ext_authz timeout more", MaxAuthorizerTimeout)
	case d < 0:
		c.errorf(path, "timeout %s is negative: write a duration such as 250ms", d)
	case d > MaxAuthorizerTimeout:
		c.errorf(path, "timeout %s is more than %s: no page waits that long; write %s or less", d, MaxAuthorizerTimeout, MaxAuthorizerTimeout)
	}
}

func checkGRPCAddress(addr string) error {
	if addr == "" {
		return fmt.Errorf("address is required: write host:port, such as \"opa.opa.svc:9191\"")
	}
	if strings.Contains(addr, "://") {
		return fmt.Errorf("address %q must be host:port, without a scheme", addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return fmt.Errorf("address %q must be host:port, such as \"opa.opa.svc:9191\"", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("address %q has port %q: write a port from 1 to 65535", addr, port)
	}
	return nil
}

func urlErrorText(err error) string {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err.Error()
	}
	return err.Error()
}

// hashAuthorizers is the part of hashConfig for the authorizers, which
// hold pointers %#v would print as addresses. Static headers are hashed by
// where their values are read; the values are never part of a Config.
func hashAuthorizers(as []Authorizer) string {
	var b strings.Builder
	for _, a := range as {
		fmt.Fprintf(&b, "%q %q %#v ", a.Name, a.OnError, a.StaticHeaders)
		if a.HTTP != nil {
			fmt.Fprintf(&b, "http%#v ", *a.HTTP)
		}
		if a.GRPC != nil {
			g := *a.GRPC
			g.TLS = nil
			fmt.Fprintf(&b, "grpc%#v ", g)
			if a.GRPC.TLS != nil {
				fmt.Fprintf(&b, "tls%#v ", *a.GRPC.TLS)
			}
		}
	}
	return b.String()
}
