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
//	    max_config_bytes 4194304     # local mode: largest configuration received (default: corsauthz's --max-config-bytes default)
//	}
package corsauthzcaddy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/corsauthz/corsauthz/middleware"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
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
	// MaxConfigBytes bounds a configuration received in local mode
	// (default policy.DefaultMaxConfigBytes, the default of corsauthz's
	// --max-config-bytes): set it to corsauthz's --max-config-bytes when
	// that is larger, or every configuration corsauthz sends is refused
	// and requests are answered with the last one (503 before the first).
	MaxConfigBytes int64 `json:"max_config_bytes,omitempty"`

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

// The checks of each setting, shared by Validate (JSON configurations) and
// UnmarshalCaddyfile (which reports them at the line they are on).

func checkAddress(a string) error {
	if host, port, err := net.SplitHostPort(a); err != nil || host == "" || !validPort(port) {
		return fmt.Errorf("address %q: write host:port, such as 127.0.0.1:9001", a)
	}
	return nil
}

func checkMode(m string) error {
	switch middleware.Mode(m) {
	case "", middleware.ModeLocal, middleware.ModeRemote:
		return nil
	}
	return fmt.Errorf("mode %q: write local (decide in process; the default) or remote (Decide per request)", m)
}

func checkPolicy(p string) error {
	// A name, or a comma-separated group of names (as cors_policy).
	for name := range strings.SplitSeq(p, ",") {
		if !policyName.MatchString(name) {
			return fmt.Errorf("policy %q: a policy name is [a-z0-9][a-z0-9_-]{0,63}, or a group of them separated by commas", p)
		}
	}
	return nil
}

func checkTimeout(d caddy.Duration) error {
	if d < 0 {
		return fmt.Errorf("timeout %s: must be positive", time.Duration(d))
	}
	return nil
}

func checkMaxConfigBytes(n int64) error {
	if n < 0 {
		return fmt.Errorf("max_config_bytes %d: must be positive (bytes, as corsauthz's --max-config-bytes)", n)
	}
	return nil
}

func checkStartupWait(d caddy.Duration) error {
	if d < 0 {
		return fmt.Errorf("startup_wait %s: must be 0 or more", time.Duration(d))
	}
	return nil
}

// Validate checks the handler's settings; every problem is reported.
func (h *Handler) Validate() error {
	var errs []error
	if h.Address == "" {
		errs = append(errs, errRequiredAddress)
	} else {
		errs = append(errs, checkAddress(h.Address))
	}
	errs = append(errs, checkMode(h.Mode))
	if h.Policy != "" {
		errs = append(errs, checkPolicy(h.Policy))
	}
	errs = append(errs, checkTimeout(h.Timeout), checkStartupWait(h.StartupWait), checkMaxConfigBytes(h.MaxConfigBytes))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("corsauthz: %w", err)
	}
	return nil
}

var errRequiredAddress = errors.New("address: required: the corsauthz gRPC address, such as 127.0.0.1:9001")

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}

// policyCheckTimeout bounds the ListPolicies call with which Provision
// checks, in remote mode, that the policy is configured.
const policyCheckTimeout = 2 * time.Second

// Provision checks the settings and connects to corsauthz; in local mode
// it waits for the first configuration for up to StartupWait. A policy
// the configuration in force does not have is refused here, so that
// caddy validate and caddy run say so at once instead of every request
// being answered 503; when corsauthz cannot be asked (not running yet, or
// no configuration within StartupWait) that is logged as an error and the
// check is left to the requests.
func (h *Handler) Provision(ctx caddy.Context) error {
	if err := h.Validate(); err != nil {
		return err
	}
	wait := time.Duration(h.StartupWait)
	if wait == 0 {
		wait = middleware.DefaultStartupWait
	}
	logger := ctx.Slogger()
	mw, err := middleware.New(ctx, middleware.Options{
		Address:        h.Address,
		Mode:           middleware.Mode(h.Mode),
		Policy:         h.Policy,
		Timeout:        time.Duration(h.Timeout),
		StartupWait:    wait,
		NodeID:         "caddy",
		Logger:         logger,
		Registerer:     ctx.GetMetricsRegistry(),
		MaxConfigBytes: h.MaxConfigBytes,
	})
	if err != nil {
		return fmt.Errorf("corsauthz: %w", err)
	}
	if h.Policy != "" {
		names, source, err := h.configuredPolicies(ctx, mw)
		if err != nil {
			logger.Error("corsauthz: cannot check that the policy is configured: if corsauthz's configuration does not have it, every request here is answered 503",
				"policy", h.Policy, "address", h.Address, "error", err)
		} else if err := missingPolicies(h.Policy, names, source, h.Address); err != nil {
			mw.Close()
			return err
		}
	}
	h.mw = mw
	return nil
}

// configuredPolicies returns the names of the policies in corsauthz's
// configuration in force and where it comes from: in local mode, of the
// configuration received over xDS; in remote mode, from ListPolicies.
func (h *Handler) configuredPolicies(ctx caddy.Context, mw *middleware.Middleware) ([]string, string, error) {
	if middleware.Mode(h.Mode) != middleware.ModeRemote {
		e := mw.Engine()
		if e == nil {
			return nil, "", fmt.Errorf("no configuration received within startup_wait (%s)", middlewareWait(h.StartupWait))
		}
		return e.PolicyNames(), e.Source(), nil
	}
	conn, err := grpc.NewClient(h.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, "", err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, policyCheckTimeout)
	defer cancel()
	resp, err := corsauthzv1.NewDecisionServiceClient(conn).ListPolicies(cctx, &corsauthzv1.ListPoliciesRequest{}, grpc.WaitForReady(true))
	if err != nil {
		return nil, "", fmt.Errorf("ListPolicies: %w", err)
	}
	names := make([]string, len(resp.GetPolicies()))
	for i, p := range resp.GetPolicies() {
		names[i] = p.GetName()
	}
	return names, resp.GetSource(), nil
}

func middlewareWait(d caddy.Duration) time.Duration {
	if d == 0 {
		return middleware.DefaultStartupWait
	}
	return time.Duration(d)
}

// missingPolicies refuses a policy setting (a name or a group a,b) that
// names policies the configuration does not have.
func missingPolicies(setting string, configured []string, source, address string) error {
	var missing []string
	for name := range strings.SplitSeq(setting, ",") {
		if !slices.Contains(configured, name) {
			missing = append(missing, strconv.Quote(name))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("corsauthz: policy %s: the configuration corsauthz at %s serves (%s) has no policy %s; its policies: %s. "+
		"Name one of them, or add it to that configuration (every request here would be answered 503)",
		strconv.Quote(setting), address, source, strings.Join(missing, ", "), strings.Join(configured, ", "))
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
//	    max_config_bytes <bytes>
//	}
//
// Every problem in the directive is reported at once, each at its line.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	var errs []error
	bad := func(err error) {
		if err != nil {
			errs = append(errs, d.Errf("corsauthz: %v", err))
		}
	}
	d.Next() // the directive's name
	if d.NextArg() {
		errs = append(errs, d.Errf("corsauthz takes no arguments on its line, only a block: corsauthz { address 127.0.0.1:9001 }"))
		for d.NextArg() {
		}
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		sub := d.Val()
		var args []string
		for d.NextArg() {
			args = append(args, d.Val())
		}
		switch sub {
		case "address", "mode", "policy", "timeout", "startup_wait", "max_config_bytes":
		default:
			bad(fmt.Errorf("unknown subdirective %q: write address, mode, policy, timeout, startup_wait or max_config_bytes", sub))
			continue
		}
		if seen[sub] {
			bad(fmt.Errorf("%s given twice", sub))
			continue
		}
		seen[sub] = true
		switch len(args) {
		case 0:
			bad(fmt.Errorf("%s needs a value", sub))
			continue
		case 1:
		default:
			bad(fmt.Errorf("%s takes one value, got %d", sub, len(args)))
			continue
		}
		val := args[0]
		switch sub {
		case "address":
			h.Address = val
			bad(checkAddress(val))
		case "mode":
			h.Mode = val
			bad(checkMode(val))
		case "policy":
			h.Policy = val
			bad(checkPolicy(val))
		case "max_config_bytes":
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil || n <= 0 {
				bad(fmt.Errorf("max_config_bytes %q: write a positive number of bytes, as corsauthz's --max-config-bytes (such as 8388608)", val))
				continue
			}
			h.MaxConfigBytes = n
		case "timeout", "startup_wait":
			dur, err := caddy.ParseDuration(val)
			if err != nil {
				bad(fmt.Errorf("%s %q: %v", sub, val, err))
				continue
			}
			if sub == "timeout" {
				h.Timeout = caddy.Duration(dur)
				bad(checkTimeout(h.Timeout))
			} else {
				h.StartupWait = caddy.Duration(dur)
				bad(checkStartupWait(h.StartupWait))
			}
		}
	}
	if !seen["address"] {
		bad(errRequiredAddress)
	}
	return errors.Join(errs...)
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
