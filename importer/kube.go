package importer

// The Kubernetes objects the importer reads (an Ingress for ingress-nginx,
// an HTTPRoute for Gateway API and Envoy Gateway), as the few fields it
// reads of k8s.io/api's networking/v1 Ingress and sigs.k8s.io/gateway-api's
// apis/v1 HTTPRoute: the same Go names, JSON names and types, decoded the
// same way (decodeNode, through encoding/json). Depending on those modules
// linked their types and their init functions (the Kubernetes scheme,
// klog, the protobuf registrations) into every corsauthz process, about
// 7 MiB of memory at start for a command that only `corsauthz import`
// runs (docs/performance.md). TestUpstreamTypes decodes every test input
// into both and compares what the importer reads.

// kubeObjectMeta is metav1.ObjectMeta's annotations (name and namespace
// come from the YAML node, see newDoc).
type kubeObjectMeta struct {
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ingress is networking/v1 Ingress.
type ingress struct {
	kubeObjectMeta `json:"metadata,omitempty"`
	Spec           ingressSpec `json:"spec,omitempty"`
}

type ingressSpec struct {
	Rules []ingressRule `json:"rules,omitempty"`
}

type ingressRule struct {
	Host string `json:"host,omitempty"`
	// IngressRuleValue is inlined upstream: http is a field of the rule.
	HTTP *httpIngressRuleValue `json:"http,omitempty"`
}

type httpIngressRuleValue struct {
	Paths []httpIngressPath `json:"paths"`
}

type httpIngressPath struct {
	Path     string    `json:"path,omitempty"`
	PathType *pathType `json:"pathType"`
}

// pathType is networking/v1 PathType.
type pathType string

const (
	pathTypeExact  pathType = "Exact"
	pathTypePrefix pathType = "Prefix"
)

// httpRoute is gateway-api v1 HTTPRoute.
type httpRoute struct {
	Spec httpRouteSpec `json:"spec"`
}

type httpRouteSpec struct {
	Hostnames []string        `json:"hostnames,omitempty"`
	Rules     []httpRouteRule `json:"rules,omitempty"`
}

type httpRouteRule struct {
	Name        *string           `json:"name,omitempty"`
	Matches     []httpRouteMatch  `json:"matches,omitempty"`
	Filters     []httpRouteFilter `json:"filters,omitempty"`
	BackendRefs []httpBackendRef  `json:"backendRefs,omitempty"`
}

type httpRouteMatch struct {
	Path        *httpPathMatch `json:"path,omitempty"`
	Headers     []struct{}     `json:"headers,omitempty"`     // only counted
	QueryParams []struct{}     `json:"queryParams,omitempty"` // only counted
	Method      *string        `json:"method,omitempty"`
}

type httpPathMatch struct {
	Type  *string `json:"type,omitempty"`
	Value *string `json:"value,omitempty"`
}

// The path match types (PathMatchType) the importer translates.
const (
	pathMatchExact      = "Exact"
	pathMatchPathPrefix = "PathPrefix"
)

type httpRouteFilter struct {
	Type string          `json:"type"`
	CORS *httpCORSFilter `json:"cors,omitempty"`
}

// filterCORS is HTTPRouteFilterCORS.
const filterCORS = "CORS"

type httpBackendRef struct {
	Filters []httpRouteFilter `json:"filters,omitempty"`
}

type httpCORSFilter struct {
	AllowOrigins     []string `json:"allowOrigins,omitempty"`
	AllowCredentials *bool    `json:"allowCredentials,omitempty"`
	AllowMethods     []string `json:"allowMethods,omitempty"`
	AllowHeaders     []string `json:"allowHeaders,omitempty"`
	ExposeHeaders    []string `json:"exposeHeaders,omitempty"`
	MaxAge           int32    `json:"maxAge,omitempty"`
}
