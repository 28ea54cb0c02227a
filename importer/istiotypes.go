package importer

import "errors"

// The Istio objects the importer reads, as the fields it reads of
// istio.io/api's networking/v1alpha3 VirtualService and security/v1beta1
// AuthorizationPolicy: the same Go names (Http, Uri: as upstream spells
// them), the same field names (pj: the JSON name, then the proto
// name when it differs) and the same types, decoded by decodeProtoJSON as
// protojson decodes them. TestUpstreamTypes decodes every test input into
// both and compares what the importer reads.

// The full names of the messages, for errors.
const (
	virtualServiceName      = "istio.networking.v1alpha3.VirtualService"
	authorizationPolicyName = "istio.security.v1beta1.AuthorizationPolicy"
)

type istioVirtualServiceSpec struct {
	Hosts []string         `pj:"hosts"`
	Http  []istioHTTPRoute `pj:"http"`
}

type istioHTTPRoute struct {
	Name       string                  `pj:"name"`
	Match      []istioHTTPMatchRequest `pj:"match"`
	CorsPolicy *istioCorsPolicy        `pj:"corsPolicy,cors_policy"`
}

type istioHTTPMatchRequest struct {
	Uri            *istioStringMatch            `pj:"uri"`
	Method         *istioStringMatch            `pj:"method"`
	Authority      *istioStringMatch            `pj:"authority"`
	Headers        map[string]*istioStringMatch `pj:"headers"`
	WithoutHeaders map[string]*istioStringMatch `pj:"withoutHeaders,without_headers"`
	QueryParams    map[string]*istioStringMatch `pj:"queryParams,query_params"`
	Port           uint32                       `pj:"port"`
}

// istioStringMatch is StringMatch, whose match_type is a oneof: at most
// one of the three is set.
type istioStringMatch struct {
	Exact  *string `pj:"exact"`
	Prefix *string `pj:"prefix"`
	Regex  *string `pj:"regex"`
}

func (m *istioStringMatch) oneofError() error {
	n := 0
	for _, p := range []*string{m.Exact, m.Prefix, m.Regex} {
		if p != nil {
			n++
		}
	}
	if n > 1 {
		return errors.New("more than one of exact, prefix and regex is set: a StringMatch takes one")
	}
	return nil
}

type istioCorsPolicy struct {
	AllowOrigin      []string            `pj:"allowOrigin,allow_origin"`
	AllowOrigins     []*istioStringMatch `pj:"allowOrigins,allow_origins"`
	AllowMethods     []string            `pj:"allowMethods,allow_methods"`
	AllowHeaders     []string            `pj:"allowHeaders,allow_headers"`
	ExposeHeaders    []string            `pj:"exposeHeaders,expose_headers"`
	MaxAge           *protoDuration      `pj:"maxAge,max_age"`
	AllowCredentials *bool               `pj:"allowCredentials,allow_credentials"` // a BoolValue
	// UnmatchedPreflights is CorsPolicy.UnmatchedPreflights.
	UnmatchedPreflights unmatchedPreflights `pj:"unmatchedPreflights,unmatched_preflights"`
}

type unmatchedPreflights int32

const unmatchedPreflightsIgnore unmatchedPreflights = 2

func (unmatchedPreflights) enumNames() []string { return []string{"UNSPECIFIED", "FORWARD", "IGNORE"} }

type istioAuthorizationPolicySpec struct {
	Rules  []istioRule         `pj:"rules"`
	Action authorizationAction `pj:"action"`
}

type istioRule struct {
	From []protoPresent `pj:"from"` // only counted
	To   []istioRuleTo  `pj:"to"`
	When []protoPresent `pj:"when"` // only counted
}

type istioRuleTo struct {
	Operation *istioOperation `pj:"operation"`
}

type istioOperation struct {
	Methods []string `pj:"methods"`
}

// authorizationAction is AuthorizationPolicy.Action.
type authorizationAction int32

const actionAllow authorizationAction = 0

func (authorizationAction) enumNames() []string { return []string{"ALLOW", "DENY", "AUDIT", "CUSTOM"} }

// protoPresent is a message the importer only counts: any mapping.
type protoPresent struct{}

func (*protoPresent) setProtoJSON(v any) error {
	if _, ok := v.(map[string]any); !ok {
		return errors.New("a mapping expected, got " + describeValue(v))
	}
	return nil
}
