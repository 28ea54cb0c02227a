package policy

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corsauthz/corsauthz/policy/internal/httpsyntax"
)

// Authorizer is an auth service corsauthz asks, after CORS, about every
// request a policy naming it selects (contract §8): the gateway calls
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
	// Address is host:port, dialled in plain text.
	Address string
	// Timeout bounds each Check.
	Timeout time.Duration
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
	if a.Name != b.Name || a.OnError != b.OnError || (a.HTTP == nil) != (b.HTTP == nil) || (a.GRPC == nil) != (b.GRPC == nil) {
		return false
	}
	if a.GRPC != nil && *a.GRPC != *b.GRPC {
		return false
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
	if a.HTTP != nil {
		h := *a.HTTP
		h.Headers = slices.Clone(h.Headers)
		h.UpstreamHeaders = slices.Clone(h.UpstreamHeaders)
		c.HTTP = &h
	}
	if a.GRPC != nil {
		g := *a.GRPC
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
// sent to, or "" when none is asked: no policy applied or its policy names
// none, a preflight (answered by corsauthz alone, whatever report_only
// says), or a refusal of reject_disallowed_origins. Everything else that
// selected the policy is asked, CORS or not, report_only or not:
// report-only applies to CORS, never to authorization.
func (e *Engine) AuthorizerFor(d *Decision) string {
	if d.Policy == "" || len(e.policyAuthorizers) == 0 {
		return ""
	}
	switch d.Kind {
	case KindPreflightAllowed, KindPreflightRejected:
		return ""
	}
	if d.Direct() {
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
	}
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
		c.errorf(path+".url", "url %q carries a user name or password: send credentials in headers instead", h.URL)
	case u.Fragment != "" || strings.Contains(h.URL, "#"):
		c.errorf(path+".url", "url %q has a fragment (#...), which is never sent: leave it out", h.URL)
	case h.ForwardPath && (u.RawQuery != "" || u.ForceQuery):
		c.errorf(path+".url", "url %q has a query, and forward_path appends the request's path and query to it: drop the query, or set forward_path: false", h.URL)
	}
	h.Headers = c.authorizerHeaderNames(path+".headers", h.Headers)
	h.UpstreamHeaders = c.authorizerHeaderNames(path+".upstream_headers", h.UpstreamHeaders)
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
// hold pointers %#v would print as addresses.
func hashAuthorizers(as []Authorizer) string {
	var b strings.Builder
	for _, a := range as {
		fmt.Fprintf(&b, "%q %q ", a.Name, a.OnError)
		if a.HTTP != nil {
			fmt.Fprintf(&b, "http%#v ", *a.HTTP)
		}
		if a.GRPC != nil {
			fmt.Fprintf(&b, "grpc%#v ", *a.GRPC)
		}
	}
	return b.String()
}
