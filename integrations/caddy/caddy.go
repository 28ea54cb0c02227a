// Package corsauthzcaddy is the Caddy module http.handlers.corsauthz: CORS
// decided by corsauthz in front of whatever a Caddy route serves, as an
// Envoy in front of corsauthz would (see the middleware package). In local
// mode (the default) it receives the configuration in force in a running
// corsauthz over xDS and decides in process; in remote mode it asks Decide
// for each request.
//
// Caddyfile:
//
//	corsauthz {
//	    address      127.0.0.1:9001  # the corsauthz gRPC address (required)
//	    mode         local           # local (the default) or remote
//	    policy       orders          # optional: the policy (or group a,b) to use, as cors_policy
//	    timeout      250ms           # remote mode: per Decide (default 250ms)
//	    startup_wait 10s             # local mode: wait for the first configuration (default 10s)
//	}
package corsauthzcaddy

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/corsauthz/corsauthz/middleware"
)

func init() {
	caddy.RegisterModule(Handler{})
	httpcaddyfile.RegisterHandlerDirective("corsauthz", parseCaddyfile)
	// Before redir, rewrites and authentication: preflights carry no
	// credentials and must be answered before an auth handler refuses
	// them, and the policy is selected by the path the browser asked for,
	// as Envoy's ext_authz filter sees it before the route rewrites it.
	httpcaddyfile.RegisterDirectiveOrder("corsauthz", httpcaddyfile.Before, "redir")
}

// Handler decides CORS with corsauthz.
type Handler struct {
	// Address is the corsauthz gRPC address, host:port.
	Address string `json:"address,omitempty"`
	// Mode is "local" (the default: decide in process with the
	// configuration received over xDS) or "remote" (Decide per request).
	Mode string `json:"mode,omitempty"`
	// Policy names the policy to apply, as Envoy's cors_policy context
	// extension; empty selects by host and path.
	Policy string `json:"policy,omitempty"`
	// Timeout bounds each Decide in remote mode (default 250ms).
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// StartupWait bounds how long provisioning waits for the first
	// configuration in local mode (default 10s); past it requests are
	// answered 503 until one arrives.
	StartupWait caddy.Duration `json:"startup_wait,omitempty"`

	mw *middleware.Middleware
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.corsauthz",
		New: func() caddy.Module { return new(Handler) },
	}
}

// policyName is the syntax of a corsauthz policy name.
var policyName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// Validate checks the handler's settings; every problem is reported.
func (h *Handler) Validate() error {
	var errs []error
	if h.Address == "" {
		errs = append(errs, errors.New("address: required: the corsauthz gRPC address, such as 127.0.0.1:9001"))
	} else if host, port, err := net.SplitHostPort(h.Address); err != nil || host == "" || !validPort(port) {
		errs = append(errs, fmt.Errorf("address %q: write host:port, such as 127.0.0.1:9001", h.Address))
	}
	switch middleware.Mode(h.Mode) {
	case "", middleware.ModeLocal, middleware.ModeRemote:
	default:
		errs = append(errs, fmt.Errorf("mode %q: write local (decide in process; the default) or remote (Decide per request)", h.Mode))
	}
	if h.Policy != "" {
		// A name, or a comma-separated group of names (as cors_policy).
		for name := range strings.SplitSeq(h.Policy, ",") {
			if !policyName.MatchString(name) {
				errs = append(errs, fmt.Errorf("policy %q: a policy name is [a-z0-9][a-z0-9_-]{0,63}, or a group of them separated by commas", h.Policy))
				break
			}
		}
	}
	if h.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %s: must be positive", time.Duration(h.Timeout)))
	}
	if h.StartupWait < 0 {
		errs = append(errs, fmt.Errorf("startup_wait %s: must be 0 or more", time.Duration(h.StartupWait)))
	}
	if len(errs) > 0 {
		return fmt.Errorf("corsauthz: %w", errors.Join(errs...))
	}
	return nil
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}

// Provision checks the settings and connects to corsauthz; in local mode
// it waits for the first configuration for up to StartupWait.
func (h *Handler) Provision(ctx caddy.Context) error {
	if err := h.Validate(); err != nil {
		return err
	}
	wait := time.Duration(h.StartupWait)
	if wait == 0 {
		wait = middleware.DefaultStartupWait
	}
	mw, err := middleware.New(ctx, middleware.Options{
		Address:     h.Address,
		Mode:        middleware.Mode(h.Mode),
		Policy:      h.Policy,
		Timeout:     time.Duration(h.Timeout),
		StartupWait: wait,
		NodeID:      "caddy",
		Logger:      ctx.Slogger(),
		Registerer:  ctx.GetMetricsRegistry(),
	})
	if err != nil {
		return fmt.Errorf("corsauthz: %w", err)
	}
	h.mw = mw
	return nil
}

// Cleanup closes the xDS stream and the connection to corsauthz.
func (h *Handler) Cleanup() error {
	if h.mw == nil {
		return nil
	}
	return h.mw.Close()
}

// ServeHTTP decides the request and answers it or passes it to next.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return h.mw.Serve(w, r, next.ServeHTTP)
}

// UnmarshalCaddyfile reads the corsauthz directive:
//
//	corsauthz {
//	    address <host:port>
//	    mode    local|remote
//	    policy  <name>
//	    timeout <duration>
//	    startup_wait <duration>
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	if d.NextArg() {
		return d.Errf("corsauthz takes no arguments on its line, only a block: corsauthz { address 127.0.0.1:9001 }")
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		sub := d.Val()
		if seen[sub] {
			return d.Errf("corsauthz: %s given twice", sub)
		}
		seen[sub] = true
		var val string
		if sub == "address" || sub == "mode" || sub == "policy" || sub == "timeout" || sub == "startup_wait" {
			if !d.NextArg() {
				return d.Errf("corsauthz: %s needs a value", sub)
			}
			val = d.Val()
			if d.NextArg() {
				return d.Errf("corsauthz: %s takes one value, got more", sub)
			}
		}
		switch sub {
		case "address":
			h.Address = val
		case "mode":
			h.Mode = val
		case "policy":
			h.Policy = val
		case "timeout", "startup_wait":
			dur, err := caddy.ParseDuration(val)
			if err != nil {
				return d.Errf("corsauthz: %s %q: %v", sub, val, err)
			}
			if sub == "timeout" {
				h.Timeout = caddy.Duration(dur)
			} else {
				h.StartupWait = caddy.Duration(dur)
			}
		default:
			return d.Errf("corsauthz: unknown subdirective %q: write address, mode, policy, timeout or startup_wait", sub)
		}
	}
	return nil
}

func parseCaddyfile(helper httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	h := new(Handler)
	err := h.UnmarshalCaddyfile(helper.Dispenser)
	return h, err
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
