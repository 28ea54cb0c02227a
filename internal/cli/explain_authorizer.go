package cli

import (
	"fmt"

	"github.com/corsauthz/corsauthz/policy"
)

// authorizerNote is what explain says about a policy's authorizer
// (docs/authorizers.md).
type authorizerNote struct {
	name string // the authorizer a Check would ask, or ""
	text string // the line printed, or "" when the policy names none
}

// explainAuthorizer says which authorizer a Check of the request would
// ask, without asking it.
func explainAuthorizer(e *policy.Engine, d *policy.Decision) authorizerNote {
	configured := e.PolicyAuthorizer(d.Policy)
	if configured == "" {
		return authorizerNote{}
	}
	name := e.AuthorizerFor(d)
	if name == "" {
		why := "a preflight is answered by corsauthz alone"
		if d.Kind != policy.KindPreflightAllowed && d.Kind != policy.KindPreflightRejected {
			why = "reject_disallowed_origins refuses it first"
		}
		return authorizerNote{text: fmt.Sprintf("Authorizer: %q is not asked: %s.", configured, why)}
	}
	a, _ := e.Authorizer(name)
	where := ""
	switch {
	case a.HTTP != nil:
		where = a.HTTP.URL
	case a.GRPC != nil:
		where = a.GRPC.Address
	}
	return authorizerNote{name: name, text: fmt.Sprintf(
		"Authorizer: %q (%s, %s) would be asked next, within %s; its answer decides whether the request goes on (explain does not ask it).",
		name, a.Kind(), where, a.Timeout())}
}
