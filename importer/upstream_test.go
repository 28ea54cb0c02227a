package importer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	securityv1beta1 "istio.io/api/security/v1beta1"
	networkingv1 "k8s.io/api/networking/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// The importer decodes Ingress, HTTPRoute, VirtualService and
// AuthorizationPolicy into structs of its own (kube.go, istiotypes.go)
// that mirror the fields it reads of the upstream Go types, which only
// this test links. TestUpstreamTypes decodes every test input, and the
// inputs below, with both, and requires that
//   - both succeed or both fail;
//   - every field of the importer's structs holds what the upstream field
//     of the same Go name holds (upstreamMismatches);
//   - every field of the importer's structs is set by some input, so that
//     a field named differently from upstream cannot pass unseen.

// upstreamInputs set the fields the testdata files leave out.
var upstreamInputs = []struct {
	desc string
	data string
}{
	{desc: "istio match fields, snake_case names, a Go duration, an enum number", data: `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: all, namespace: ns}
spec:
  hosts: [a.example]
  http:
  - name: r
    match:
    - uri: {regex: "/x.*"}
      method: {exact: GET}
      authority: {prefix: a}
      headers: {x-a: {exact: "1"}}
      without_headers: {x-b: {}}
      query_params: {q: {regex: "."}}
      port: "8080"
    cors_policy:
      allow_origin: [https://old.example]
      allow_origins: [{prefix: "https://p"}, {regex: "https://.*[.]example"}, {}]
      allow_methods: [GET]
      allow_headers: [x-a]
      expose_headers: [x-b]
      max_age: 1m30s
      allow_credentials: true
      unmatched_preflights: 2
`},
	{desc: "istio fractional duration, enum by name", data: `
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: frac}
spec:
  http:
  - corsPolicy: {allowOrigins: [{exact: "https://a.example"}], maxAge: "1.5s", unmatchedPreflights: FORWARD}
  - corsPolicy: {allowOrigins: [{exact: "https://b.example"}], maxAge: "-2.000000001s", unmatchedPreflights: NOT_A_NAME}
`},
	{desc: "istio authorization policy with sources and conditions", data: `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ap}
spec:
  action: DENY
  rules:
  - from: [{source: {principals: [a]}}]
    to: [{operation: {methods: [OPTIONS]}}, {}]
    when: [{key: "request.headers[x]", values: ["1"]}]
`},
	{desc: "ingress with path types and annotations", data: `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: ing
  annotations: {nginx.ingress.kubernetes.io/enable-cors: "true"}
spec:
  defaultBackend: {service: {name: s, port: {number: 80}}}
  rules:
  - host: a.example
    http:
      paths:
      - {path: /e, pathType: Exact, backend: {service: {name: s, port: {name: http}}}}
      - {path: /p, pathType: Prefix, backend: {service: {name: s, port: {number: 80}}}}
  - host: b.example
`},
	{desc: "httproute with every field the importer reads", data: `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  hostnames: [a.example]
  rules:
  - name: one
    matches:
    - path: {type: RegularExpression, value: "/x.*"}
      headers: [{name: x-a, value: "1"}]
      queryParams: [{type: Exact, name: q, value: "1"}]
      method: GET
    filters:
    - type: CORS
      cors: {allowOrigins: ["https://a.example"], allowCredentials: true, allowMethods: [GET], allowHeaders: [x-a], exposeHeaders: [x-b], maxAge: 60}
    backendRefs:
    - name: s
      port: 80
      filters: [{type: CORS, cors: {allowOrigins: ["*"]}}]
`},
}

// upstreamErrors are inputs both decodings refuse; want is in the
// importer's error.
var upstreamErrors = []struct {
	desc string
	data string
	want string
}{
	{desc: "hosts not a list", data: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: {hosts: 3}\n", want: "hosts: a list expected, got 3"},
	{desc: "a number for a string", data: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: {http: [{corsPolicy: {allowOrigins: [{exact: 1}]}}]}\n", want: "http[0].corsPolicy.allowOrigins[0].exact: a string expected, got 1"},
	{desc: "two members of a oneof", data: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: {http: [{corsPolicy: {allowOrigins: [{exact: a, prefix: b}]}}]}\n", want: "allowOrigins[0]: more than one of exact, prefix and regex"},
	{desc: "a duration that is not one", data: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: {http: [{corsPolicy: {maxAge: soon}}]}\n", want: `http[0].corsPolicy.maxAge: invalid duration "soon"`},
	{desc: "a duration as a number", data: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: {http: [{corsPolicy: {maxAge: 60}}]}\n", want: "maxAge: a duration"},
	{desc: "a string for a BoolValue", data: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: {http: [{corsPolicy: {allowCredentials: \"true\"}}]}\n", want: `allowCredentials: true or false expected, got "true"`},
	{desc: "a negative port", data: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: {http: [{match: [{port: -1}]}]}\n", want: "http[0].match[0].port: an unsigned integer"},
	{desc: "a fractional port", data: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: {http: [{match: [{port: 80.5}]}]}\n", want: "port: an unsigned integer"},
	{desc: "a field given by both its names", data: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: {http: [{corsPolicy: {maxAge: 1s, max_age: 2s}}]}\n", want: "both maxAge and max_age"},
	{desc: "null in a list", data: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: {hosts: [a, null]}\n", want: "hosts[1]: null"},
	{desc: "an enum of the wrong type", data: "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nspec: {action: true}\n", want: "action: one of ALLOW, DENY, AUDIT, CUSTOM expected"},
	{desc: "rules not a list", data: "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nspec: {rules: {to: []}}\n", want: "rules: a list expected"},
	{desc: "a source that is not a mapping", data: "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nspec: {rules: [{from: [3]}]}\n", want: "rules[0].from[0]: a mapping expected"},
	{desc: "httproute rules not a list", data: "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nspec: {rules: 3}\n", want: "cannot unmarshal number into Go struct field"},
	{desc: "httproute maxAge a string", data: "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nspec: {rules: [{filters: [{type: CORS, cors: {maxAge: \"5\"}}]}]}\n", want: "maxAge"},
	{desc: "httproute header match not a mapping", data: "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nspec: {rules: [{matches: [{headers: [x]}]}]}\n", want: "headers"},
	{desc: "ingress annotation not a string", data: "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {annotations: {a: 1}}\n", want: "annotations"},
	{desc: "ingress paths not a list", data: "apiVersion: networking.k8s.io/v1\nkind: Ingress\nspec: {rules: [{http: {paths: /x}}]}\n", want: "paths"},
}

func TestUpstreamTypes(t *testing.T) {
	seen := map[string]bool{}
	files, err := filepath.Glob("testdata/*/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test data: %v", err)
	}
	var inputs []Input
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, Input{Name: filepath.ToSlash(f), Data: data})
	}
	for _, in := range upstreamInputs {
		inputs = append(inputs, Input{Name: in.desc, Data: []byte(in.data)})
	}
	compared := 0
	for _, in := range inputs {
		docs, err := readDocs(in)
		if err != nil {
			t.Fatalf("%s: %v", in.Name, err)
		}
		docs = append(docs, protoNameVariants(t, docs)...)
		for _, d := range docs {
			mine, up, mineErr, upErr, ok := decodeBoth(d)
			if !ok {
				continue
			}
			compared++
			where := fmt.Sprintf("%s: %s", in.Name, d.ref())
			if mineErr != nil || upErr != nil {
				t.Errorf("%s: the importer's decoding: %v; upstream's: %v", where, mineErr, upErr)
				continue
			}
			for _, m := range upstreamMismatches(reflect.ValueOf(mine), reflect.ValueOf(up), "", "", seen) {
				t.Errorf("%s: %s", where, m)
			}
		}
	}
	if compared < 20 {
		t.Errorf("only %d objects compared", compared)
	}
	for _, v := range []any{ingress{}, httpRoute{}, istioVirtualServiceSpec{}, istioAuthorizationPolicySpec{}} {
		for _, k := range fieldKeys(reflect.TypeOf(v), map[reflect.Type]bool{}) {
			if !seen[k] {
				t.Errorf("no input sets %s: add one to upstreamInputs", k)
			}
		}
	}

	for _, tc := range upstreamErrors {
		t.Run(tc.desc, func(t *testing.T) {
			docs, err := readDocs(Input{Name: "bad.yaml", Data: []byte(tc.data)})
			if err != nil || len(docs) != 1 {
				t.Fatalf("%d documents, %v", len(docs), err)
			}
			_, _, mineErr, upErr, ok := decodeBoth(docs[0])
			if !ok {
				t.Fatal("not a kind the test decodes")
			}
			if upErr == nil {
				t.Errorf("upstream's types decode it: not a case for this table")
			}
			if mineErr == nil || !strings.Contains(mineErr.Error(), tc.want) {
				t.Errorf("the importer's error %v, want one containing %q (upstream's: %v)", mineErr, tc.want, upErr)
			}
		})
	}
}

// protoNameVariants returns each Istio object of docs twice more: with
// every key in lowerCamelCase (the JSON names) and in snake_case (the
// proto names), so that both names of every field are compared.
func protoNameVariants(t *testing.T, docs []*doc) []*doc {
	var out []*doc
	for _, d := range docs {
		if !strings.Contains(d.apiVersion, "istio.io/") {
			continue
		}
		var raw any
		if err := d.root.Decode(&raw); err != nil {
			t.Fatal(err)
		}
		for _, rename := range []func(string) string{camelName, snakeName} {
			data, err := yaml.Marshal(renameKeys(jsonable(raw), rename))
			if err != nil {
				t.Fatal(err)
			}
			vs, err := readDocs(Input{Name: d.file + " (keys renamed)", Data: data})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, vs...)
		}
	}
	return out
}

func renameKeys(v any, rename func(string) string) any {
	switch t := v.(type) {
	case map[string]any:
		m := map[string]any{}
		for k, e := range t {
			if k != "apiVersion" && k != "metadata" {
				k = rename(k)
			}
			m[k] = renameKeys(e, rename)
		}
		return m
	case []any:
		for i, e := range t {
			t[i] = renameKeys(e, rename)
		}
	}
	return v
}

func camelName(s string) string {
	var sb strings.Builder
	up := false
	for _, c := range s {
		switch {
		case c == '_':
			up = true
		case up:
			sb.WriteString(strings.ToUpper(string(c)))
			up = false
		default:
			sb.WriteRune(c)
		}
	}
	return sb.String()
}

func snakeName(s string) string {
	var sb strings.Builder
	for _, c := range s {
		if 'A' <= c && c <= 'Z' {
			sb.WriteByte('_')
			c += 'a' - 'A'
		}
		sb.WriteRune(c)
	}
	return sb.String()
}

// decodeBoth decodes an object into the importer's struct and upstream's
// type, each the way the importer does (or did).
func decodeBoth(d *doc) (mine, up any, mineErr, upErr error, ok bool) {
	group, _, _ := strings.Cut(d.apiVersion, "/")
	switch {
	case group == "networking.istio.io" && d.kind == "VirtualService":
		var m istioVirtualServiceSpec
		var u networkingv1alpha3.VirtualService
		return &m, &u, decodeSpec(d, &m, virtualServiceName), upstreamProtoJSON(d, &u), true
	case group == "security.istio.io" && d.kind == "AuthorizationPolicy":
		var m istioAuthorizationPolicySpec
		var u securityv1beta1.AuthorizationPolicy
		return &m, &u, decodeSpec(d, &m, authorizationPolicyName), upstreamProtoJSON(d, &u), true
	case group == "gateway.networking.k8s.io" && d.kind == "HTTPRoute":
		var m httpRoute
		var u gwapiv1.HTTPRoute
		return &m, &u, decodeNode(d.root, &m), decodeNode(d.root, &u), true
	case d.kind == "Ingress":
		var m ingress
		var u networkingv1.Ingress
		return &m, &u, decodeNode(d.root, &m), decodeNode(d.root, &u), true
	}
	return nil, nil, nil, nil, false
}

// upstreamProtoJSON decodes a spec as the importer did with istio.io/api's
// types: Go durations rewritten into seconds, then protojson.
func upstreamProtoJSON(d *doc, m proto.Message) error {
	spec := lookupExact(d.root, "spec")
	if spec == nil {
		return nil
	}
	var raw any
	if err := spec.Decode(&raw); err != nil {
		return err
	}
	js, err := json.Marshal(goDurations(jsonable(raw)))
	if err != nil {
		return err
	}
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(js, m)
}

func goDurations(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = goDurations(e)
		}
	case []any:
		for i, e := range t {
			t[i] = goDurations(e)
		}
	case string:
		if d, err := time.ParseDuration(t); err == nil && strings.ContainsAny(strings.TrimSuffix(t, "s"), "hmuµn") {
			return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
		}
	}
	return v
}

// upstreamMismatches compares a value of the importer's struct with the
// upstream value, field by field of the importer's struct (upstream's of
// the same Go name, embedded structs followed), and records in seen the
// fields (key: "type.Field") that hold a value.
func upstreamMismatches(mine, up reflect.Value, path, key string, seen map[string]bool) []string {
	if path == "" {
		path = typeName(mine.Type())
	}
	mark := func() { seen[key] = true }
	// The importer's StringMatch and BoolValue: upstream has a oneof and
	// a wrapper message.
	var mv any
	if mine.CanInterface() {
		mv = mine.Interface()
	}
	switch m := mv.(type) {
	case *istioStringMatch:
		u, _ := up.Interface().(*networkingv1alpha3.StringMatch)
		if (m == nil) != (u == nil) {
			return []string{fmt.Sprintf("%s: set %v, upstream %v", path, m != nil, u != nil)}
		}
		if m == nil {
			return nil
		}
		mark()
		var out []string
		for _, f := range []struct {
			name       string
			mine       *string
			up         string
			upIsMember bool
		}{
			{"Exact", m.Exact, u.GetExact(), isType[*networkingv1alpha3.StringMatch_Exact](u.GetMatchType())},
			{"Prefix", m.Prefix, u.GetPrefix(), isType[*networkingv1alpha3.StringMatch_Prefix](u.GetMatchType())},
			{"Regex", m.Regex, u.GetRegex(), isType[*networkingv1alpha3.StringMatch_Regex](u.GetMatchType())},
		} {
			if (f.mine != nil) != f.upIsMember || f.mine != nil && *f.mine != f.up {
				out = append(out, fmt.Sprintf("%s.%s: %v, upstream %q (set %v)", path, f.name, f.mine, f.up, f.upIsMember))
			}
			if f.mine != nil {
				seen["istioStringMatch."+f.name] = true
			}
		}
		return out
	case *bool:
		if u, ok := up.Interface().(*wrapperspb.BoolValue); ok {
			if (m == nil) != (u == nil) || m != nil && *m != u.GetValue() {
				return []string{fmt.Sprintf("%s: %v, upstream %v", path, m, u)}
			}
			if m != nil {
				mark()
			}
			return nil
		}
	}
	if up.Kind() == reflect.Pointer && mine.Kind() != reflect.Pointer {
		if up.IsNil() {
			if !mine.IsZero() {
				return []string{fmt.Sprintf("%s: set, upstream not", path)}
			}
			return nil
		}
		up = up.Elem()
	}
	switch mine.Kind() {
	case reflect.Pointer:
		if up.Kind() != reflect.Pointer {
			return []string{fmt.Sprintf("%s: a pointer, upstream a %s", path, up.Kind())}
		}
		if mine.IsNil() != up.IsNil() {
			return []string{fmt.Sprintf("%s: set %v, upstream %v", path, !mine.IsNil(), !up.IsNil())}
		}
		if mine.IsNil() {
			return nil
		}
		mark()
		return upstreamMismatches(mine.Elem(), up.Elem(), path, key, seen)
	case reflect.Struct:
		if !mine.IsZero() {
			mark()
		}
		var out []string
		for i := range mine.NumField() {
			f := mine.Type().Field(i)
			if f.Anonymous {
				out = append(out, upstreamMismatches(mine.Field(i), up, path, key, seen)...)
				continue
			}
			uf := up.FieldByName(f.Name)
			if !uf.IsValid() {
				out = append(out, fmt.Sprintf("%s: upstream %s has no field %s", path, up.Type(), f.Name))
				continue
			}
			out = append(out, upstreamMismatches(mine.Field(i), uf, path+"."+f.Name, mine.Type().Name()+"."+f.Name, seen)...)
		}
		return out
	case reflect.Slice:
		if up.Kind() != reflect.Slice || mine.Len() != up.Len() {
			return []string{fmt.Sprintf("%s: %d items, upstream %v", path, mine.Len(), up)}
		}
		var out []string
		for i := range mine.Len() {
			mark()
			out = append(out, upstreamMismatches(mine.Index(i), up.Index(i), fmt.Sprintf("%s[%d]", path, i), key, seen)...)
		}
		return out
	case reflect.Map:
		if up.Kind() != reflect.Map || mine.Len() != up.Len() {
			return []string{fmt.Sprintf("%s: %d entries, upstream %v", path, mine.Len(), up)}
		}
		var out []string
		for _, k := range mine.MapKeys() {
			mark()
			uv := up.MapIndex(k.Convert(up.Type().Key()))
			if !uv.IsValid() {
				out = append(out, fmt.Sprintf("%s[%q]: not upstream", path, k))
				continue
			}
			out = append(out, upstreamMismatches(mine.MapIndex(k), uv, fmt.Sprintf("%s[%q]", path, k), key, seen)...)
		}
		return out
	case reflect.String:
		if up.Kind() != reflect.String || mine.String() != up.String() {
			return []string{fmt.Sprintf("%s: %q, upstream %v", path, mine.String(), up)}
		}
	case reflect.Bool:
		if up.Kind() != reflect.Bool || mine.Bool() != up.Bool() {
			return []string{fmt.Sprintf("%s: %v, upstream %v", path, mine.Bool(), up)}
		}
	case reflect.Int32, reflect.Int64:
		if !up.CanInt() || mine.Int() != up.Int() {
			return []string{fmt.Sprintf("%s: %d, upstream %v", path, mine.Int(), up)}
		}
	case reflect.Uint32:
		if !up.CanUint() || mine.Uint() != up.Uint() {
			return []string{fmt.Sprintf("%s: %d, upstream %v", path, mine.Uint(), up)}
		}
	default:
		return []string{fmt.Sprintf("%s: a %s, which this test does not compare", path, mine.Kind())}
	}
	if !mine.IsZero() {
		mark()
	}
	return nil
}

func isType[T any](v any) bool { _, ok := v.(T); return ok }

// fieldKeys lists the fields of the struct types t reaches, as
// upstreamMismatches records them ("type.Field").
func fieldKeys(t reflect.Type, done map[reflect.Type]bool) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || done[t] {
		return nil
	}
	done[t] = true
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.Anonymous && f.Tag.Get("pj") == "" && f.Tag.Get("json") == "" {
			continue // protoDuration's fields: compared, not named
		}
		if !f.Anonymous {
			out = append(out, t.Name()+"."+f.Name)
		}
		out = append(out, fieldKeys(f.Type, done)...)
	}
	return out
}

func typeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Name()
}
