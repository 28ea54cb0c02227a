package policy

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/corsauthz/corsauthz/policy/internal/acrh"
	"github.com/corsauthz/corsauthz/policy/internal/httpsyntax"
	"github.com/corsauthz/corsauthz/policy/internal/origin"
)

// Engine is a compiled configuration. It is immutable and safe for
// concurrent use; build one with [Compile] or [Load].
type Engine struct {
	policies      []*compiledPolicy // in file order
	byName        map[string]*compiledPolicy
	defaultPolicy *compiledPolicy
	routes        routeTable
	hash          string
	source        string
	config        Config // the normalised configuration, for Explain and listing
	warnings      []*FieldError
	// policyAuthorizers maps a policy name to the authorizer it asks.
	policyAuthorizers map[string]string
}

// compiledPolicy is a Policy prepared for the request path: every set is a
// map or a short slice, and every header the policy can write is built here
// once, so deciding an actual request does not allocate.
type compiledPolicy struct {
	name       string
	index      int
	authorizer string // as written in the policy; "" for none
	reportOnly bool
	reject     bool

	anyOrigin    bool
	exactOrigins originSet // indexes into originList
	wildcards    origin.WildcardMatcher
	// originList is the normalised allowed_origins, for Explain: the
	// same slice as the configuration's (Engine.config), not a copy.
	originList []string
	// explain holds what only Explain reads, built by its first call
	// (see explainIndex): a configuration at the caps would otherwise
	// keep megabytes of indexes no decision uses.
	explainOnce   sync.Once
	explain       *explainIndex
	methods       []string
	anyHeader     bool
	headers       map[string]struct{} // lower case
	credentials   bool
	allowPrivNet  bool
	exposeHeaders string

	actualAllowed *HeaderList
	// actualAllowedGrouped is actualAllowed with Vary: Origin, for a "*"
	// policy picked from a group (for other policies they are the same).
	actualAllowedGrouped *HeaderList
	// noOrigin is added to the response of a request without Origin;
	// noOriginGrouped when the policy was picked from a group.
	noOrigin          *HeaderList
	noOriginGrouped   *HeaderList
	actualDisallowed  *HeaderList
	preflightAllowed  *HeaderList
	preflightPrivNet  *HeaderList
	preflightRejected *HeaderList
}

// Holder holds the Engine in force and lets a reload replace it atomically:
// each request reads the pointer once and sees exactly one configuration.
type Holder struct{ p atomic.Pointer[Engine] }

// NewHolder returns a Holder holding e.
func NewHolder(e *Engine) *Holder {
	h := &Holder{}
	h.p.Store(e)
	return h
}

// Load returns the Engine in force (nil if none was stored).
func (h *Holder) Load() *Engine { return h.p.Load() }

// Store puts e in force for every request that starts after it returns.
func (h *Holder) Store(e *Engine) { h.p.Store(e) }

// Hash is a hex SHA-256 of the configuration the engine was compiled from:
// its source bytes when loaded from a file, its normalised form otherwise.
func (e *Engine) Hash() string { return e.hash }

// Source names where the configuration came from (a file name), if known.
func (e *Engine) Source() string { return e.source }

// Config returns a copy of the normalised configuration in force. The
// lists in it are the engine's own: read them, never modify them (the
// engine decides with allowed_origins itself, its exact origins indexed
// by position).
func (e *Engine) Config() Config {
	c := e.config
	c.Policies = append([]Policy(nil), c.Policies...)
	return c
}

// Warnings returns the remarks made when compiling the configuration.
func (e *Engine) Warnings() []*FieldError { return append([]*FieldError(nil), e.warnings...) }

// PolicyNames lists the configured policies in file order.
func (e *Engine) PolicyNames() []string {
	names := make([]string, len(e.policies))
	for i, p := range e.policies {
		names[i] = p.name
	}
	return names
}

// Vary values. A preflight's answer depends on all three request headers;
// an actual response only on Origin.
const (
	varyPreflight = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
	varyActual    = "Origin"
)

// Decide returns the CORS decision for r. The only error is a request that
// names a policy the configuration does not have ([ErrUnknownPolicy]); every
// other outcome, rejections included, is a Decision.
func (e *Engine) Decide(r *Request) (d Decision, err error) {
	err = e.DecideInto(r, &d)
	return d, err
}

// DecideInto is Decide writing the decision into d, which it overwrites
// (on an error, with the zero Decision). A Decision is a few hundred
// bytes: a front end deciding into its own outcome copies none.
func (e *Engine) DecideInto(r *Request, d *Decision) error {
	*d = Decision{}
	sel, err := e.selectPolicy(r)
	if err != nil {
		return err
	}
	p := sel.policy
	switch {
	case !r.isCORS() && p == nil:
		d.Kind, d.Reason = KindNotCORS, ReasonNoOrigin
		return nil
	case !r.isCORS():
		p.noOriginDecision(d, sel.names != "")
	case p == nil:
		d.Kind, d.Reason = KindNotCORS, ReasonNoPolicy
		return nil
	case r.isPreflight():
		p.preflight(d, r)
	default:
		p.actual(d, r, sel.names != "")
	}
	d.Group = sel.names
	return nil
}

// noOriginDecision is the decision for a request without Origin under p:
// it goes on, and its response gets what a cache needs to know (see
// buildHeaders). A report-only policy's decision has the headers too, as
// what would have been sent. d is zero, as are the others'.
func (p *compiledPolicy) noOriginDecision(d *Decision, grouped bool) {
	d.Kind, d.Reason, d.Policy, d.ReportOnly, d.fixed = KindNotCORS, ReasonNoOrigin, p.name, p.reportOnly, p.noOrigin
	if grouped {
		d.fixed = p.noOriginGrouped
	}
	if p.anyOrigin {
		d.allowOrigin = "*"
	}
}

func (p *compiledPolicy) actual(d *Decision, r *Request, grouped bool) {
	d.Policy, d.ReportOnly = p.name, p.reportOnly
	allowed, reason := p.matchOrigin(r.Origin)
	d.Reason = reason
	if !allowed {
		d.Kind = KindActualDisallowed
		d.fixed = p.actualDisallowed
		if p.reject {
			d.Status = 403
		}
		return
	}
	d.Kind = KindActualAllowed
	d.allowOrigin = p.allowOriginValue(r.Origin)
	d.fixed = p.actualAllowed
	if grouped {
		d.fixed = p.actualAllowedGrouped
	}
}

func (p *compiledPolicy) preflight(d *Decision, r *Request) {
	d.Kind, d.Status, d.Policy, d.ReportOnly, d.fixed = KindPreflightRejected, 403, p.name, p.reportOnly, p.preflightRejected
	allowed, reason := p.matchOrigin(r.Origin)
	d.Reason = reason
	if !allowed {
		return
	}
	if !httpsyntax.IsToken(r.RequestMethod) {
		d.Reason, d.Detail = ReasonMethodInvalid, r.RequestMethod
		return
	}
	if !p.allowsMethod(r.RequestMethod) {
		d.Reason, d.Detail = ReasonMethodNotAllowed, r.RequestMethod
		return
	}
	n, reason, bad := p.checkRequestHeaders(r.RequestHeaders)
	if n < 0 {
		d.Reason, d.Detail = reason, bad
		return
	}
	d.Kind, d.Status = KindPreflightAllowed, 204
	d.allowOrigin = p.allowOriginValue(r.Origin)
	d.allowMethod = r.RequestMethod
	if n > 0 {
		// Echo the requested headers: each was checked above, and the
		// Fetch standard lets the answer list exactly what was asked for.
		d.allowHeaders = strings.Trim(r.RequestHeaders, " \t")
	}
	d.fixed = p.preflightAllowed
	if p.allowPrivNet && r.RequestPrivateNetwork == "true" {
		d.fixed = p.preflightPrivNet
	}
}

func (p *compiledPolicy) allowOriginValue(o string) string {
	if p.anyOrigin {
		return "*"
	}
	return o
}

// matchOrigin reports whether the request's Origin value is allowed.
func (p *compiledPolicy) matchOrigin(o string) (bool, Reason) {
	if p.anyOrigin {
		return true, ReasonAnyOrigin
	}
	if len(o) > origin.MaxLen {
		return false, ReasonOriginTooLong
	}
	if p.exactOrigins.has(p.originList, o) {
		return true, ReasonOriginAllowed
	}
	if p.wildcards.Match(o) {
		return true, ReasonOriginAllowed
	}
	return false, ReasonOriginNotAllowed
}

// allowsMethod compares case-sensitively, as the Fetch standard does for
// all but the safelisted methods (browsers upper-case only those).
func (p *compiledPolicy) allowsMethod(m string) bool {
	switch m {
	case "GET", "HEAD", "POST":
		return true
	}
	for _, allowed := range p.methods {
		if m == allowed {
			return true
		}
	}
	return false
}

// maxHeaderNameLen bounds the names looked up; longer configured names are
// refused at compile time, so a longer requested one can never be allowed.
const maxHeaderNameLen = 256

// checkRequestHeaders returns how many header names the
// Access-Control-Request-Headers value v holds when every one is allowed;
// otherwise -1, the reason and the first offending element.
func (p *compiledPolicy) checkRequestHeaders(v string) (n int, reason Reason, bad string) {
	if len(v) > acrh.MaxLen {
		return -1, ReasonHeadersTooLong, ""
	}
	var buf [maxHeaderNameLen]byte
	for elem, i, more := acrh.Next(v, 0); more; elem, i, more = acrh.Next(v, i) {
		if !httpsyntax.IsToken(elem) {
			return -1, ReasonHeaderInvalid, elem
		}
		if len(elem) > maxHeaderNameLen {
			if p.anyHeader {
				n++ // "*" allows it, and it is not Authorization
				continue
			}
			return -1, ReasonHeaderNotAllowed, elem
		}
		var listed, isAuthorization bool
		if httpsyntax.HasUpper(elem) {
			lower := httpsyntax.AppendLower(buf[:0], elem)
			// Indexing with string(bytes) does not allocate.
			_, listed = p.headers[string(lower)]
			isAuthorization = string(lower) == "authorization"
		} else {
			_, listed = p.headers[elem]
			isAuthorization = elem == "authorization"
		}
		if listed || (p.anyHeader && !isAuthorization) {
			n++
			continue
		}
		return -1, ReasonHeaderNotAllowed, elem
	}
	return n, 0, ""
}
