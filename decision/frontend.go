package decision

// FrontEnd names the front end a request came through: the value of the
// front_end metric label and of the front_end log attribute.
type FrontEnd string

// The front ends.
const (
	FrontEndExtAuthz    FrontEnd = "ext_authz"    // envoy.service.auth.v3.Authorization/Check
	FrontEndDecisionAPI FrontEnd = "decision_api" // corsauthz.v1.DecisionService/Decide
	FrontEndHTTP        FrontEnd = "http"         // the HTTP authorization listener (httpauthz)
	FrontEndMiddleware  FrontEnd = "middleware"   // the Go middleware deciding in process
)

// frontEnds are the front ends counted in metrics, made up front.
var frontEnds = []FrontEnd{FrontEndExtAuthz, FrontEndDecisionAPI, FrontEndHTTP, FrontEndMiddleware}
