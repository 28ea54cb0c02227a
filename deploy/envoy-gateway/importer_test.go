package envoygateway_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	"go.yaml.in/yaml/v3"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/corsauthz/corsauthz/importer"
)

// corsauthz import --from envoy-gateway decodes SecurityPolicy cors and
// target references into small local structs (importer/envoygateway.go),
// so that the corsauthz binary does not depend on Envoy Gateway. The tests
// below check those structs, and the importer's Envoy Gateway test files,
// against Envoy Gateway's own Go types.
const (
	importerTestData = "../../importer/testdata/envoy-gateway"
	importerSource   = "../../importer/envoygateway.go"
)

// TestImporterTestData decodes every document of the importer's Envoy
// Gateway test files strictly (unknown fields refused) with Envoy
// Gateway's and Gateway API's own types, and checks that the import
// names every SecurityPolicy that sets cors.
func TestImporterTestData(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(importerTestData, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files in %s: %v", importerTestData, err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var withCORS []string
			for i, doc := range yamlDocuments(t, data) {
				var meta struct{ APIVersion, Kind string }
				decodeLoose(t, doc, &meta)
				switch meta.APIVersion + " " + meta.Kind {
				case egv1a1.GroupVersion.String() + " SecurityPolicy":
					var sp egv1a1.SecurityPolicy
					decodeStrict(t, doc, &sp)
					if sp.Spec.CORS != nil {
						withCORS = append(withCORS, "SecurityPolicy "+ref(sp.Namespace, sp.Name))
					}
				case gwapiv1.GroupVersion.String() + " HTTPRoute":
					var r gwapiv1.HTTPRoute
					decodeStrict(t, doc, &r)
				default:
					t.Errorf("document %d is a %s %s, which this test does not decode: add its type", i, meta.APIVersion, meta.Kind)
				}
			}

			res, err := importer.Import(importer.EnvoyGateway, []importer.Input{{Name: file, Data: data}})
			if err != nil {
				t.Fatalf("import: %v", err)
			}
			var said []string
			for _, p := range res.Policies {
				said = append(said, p.Source)
			}
			said = append(said, res.Skipped...)
			for _, name := range withCORS {
				if !slices.ContainsFunc(said, func(s string) bool { return strings.HasPrefix(s, name+" ") }) {
					t.Errorf("%s sets cors, and the import has no policy or skipped entry for it:\n%s", name, strings.Join(said, "\n"))
				}
			}
		})
	}
}

func ref(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// yamlDocuments splits a YAML stream into its documents.
func yamlDocuments(t *testing.T, data []byte) [][]byte {
	t.Helper()
	var docs [][]byte
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := yaml.Marshal(&n)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, b)
	}
}

func decodeLoose(t *testing.T, doc []byte, v any) {
	t.Helper()
	var raw any
	if err := yaml.Unmarshal(doc, &raw); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, v); err != nil {
		t.Fatal(err)
	}
}

// TestLocalStructs reads the importer's local structs from its source
// and checks each field against Envoy Gateway's types by JSON name: the
// field exists there, with the same shape (a pointer where Envoy Gateway
// has one, a list, a string, a bool); and the structs Envoy Gateway
// decodes CORS and target references into have no field the importer
// does not read, so a field added in a later release is noticed here.
func TestLocalStructs(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, importerSource, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	local := map[string]*ast.StructType{}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.TYPE {
			continue
		}
		for _, spec := range gd.Specs {
			ts := spec.(*ast.TypeSpec)
			if st, ok := ts.Type.(*ast.StructType); ok {
				local[ts.Name.Name] = st
			}
		}
	}
	c := &shapeChecker{fset: fset, local: local, complete: map[reflect.Type]bool{
		reflect.TypeFor[egv1a1.CORS]():                                       true,
		reflect.TypeFor[gwapiv1.LocalPolicyTargetReferenceWithSectionName](): true,
	}}
	c.checked = map[string]bool{}
	for _, tc := range []struct {
		local string
		real  reflect.Type
	}{
		{"egSecurityPolicy", reflect.TypeFor[egv1a1.SecurityPolicy]()},
		{"egCORS", reflect.TypeFor[egv1a1.CORS]()},
		{"egTargetRef", reflect.TypeFor[gwapiv1.LocalPolicyTargetReferenceWithSectionName]()},
	} {
		st := local[tc.local]
		if st == nil {
			t.Errorf("%s has no struct type %s: update this test with the importer", importerSource, tc.local)
			continue
		}
		if c.checked[tc.local+" "+tc.real.String()] {
			continue
		}
		c.checked[tc.local+" "+tc.real.String()] = true
		for _, err := range c.structs(tc.local, st, tc.real) {
			t.Error(err)
		}
	}
	// The spec: the importer reads every targeting field of Envoy
	// Gateway's policies (targetRef, targetRefs, targetSelectors).
	spec := c.local["egSecurityPolicy"]
	var specType *ast.StructType
	for _, fld := range spec.Fields.List {
		if jsonName(fld) == "spec" {
			specType, _ = fld.Type.(*ast.StructType)
		}
	}
	if specType == nil {
		t.Fatal("egSecurityPolicy has no spec struct")
	}
	read := map[string]bool{}
	for _, fld := range specType.Fields.List {
		read[jsonName(fld)] = true
	}
	for name := range jsonFields(reflect.TypeFor[egv1a1.PolicyTargetReferences]()) {
		if !read[name] {
			t.Errorf("Envoy Gateway's policies have spec.%s, which the importer's egSecurityPolicy does not read", name)
		}
	}
}

// TestShapeChecker: the comparison refuses what it must.
func TestShapeChecker(t *testing.T) {
	type inner struct {
		A string `json:"a"`
	}
	type real struct {
		Name  string   `json:"name"`
		List  []string `json:"list"`
		Ptr   *bool    `json:"ptr"`
		In    *inner   `json:"in"`
		Extra int      `json:"extra"`
	}
	for _, tc := range []struct {
		desc, src string
		complete  bool
		errs      int
	}{
		{desc: "the same shape", src: "type x struct {\nName string `json:\"name\"`\nList []string `json:\"list\"`\nPtr *bool `json:\"ptr\"`\nIn *y `json:\"in\"`\n}\ntype y struct { A string `json:\"a\"` }"},
		{desc: "a field that is not there", src: "type x struct { Nmae string `json:\"nmae\"` }", errs: 1},
		{desc: "a value for a pointer", src: "type x struct { Ptr bool `json:\"ptr\"` }", errs: 1},
		{desc: "a string for a list", src: "type x struct { List string `json:\"list\"` }", errs: 1},
		{desc: "a bool for a string", src: "type x struct { Name bool `json:\"name\"` }", errs: 1},
		{desc: "an inner field that is not there", src: "type x struct { In *y `json:\"in\"` }\ntype y struct { B string `json:\"b\"` }", errs: 1},
		{desc: "a field not read, where every field must be", src: "type x struct {\nName string `json:\"name\"`\nList []string `json:\"list\"`\nPtr *bool `json:\"ptr\"`\nIn any `json:\"in\"`\n}", complete: true, errs: 1},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, "local.go", "package p\n"+tc.src, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			local := map[string]*ast.StructType{}
			for _, decl := range f.Decls {
				for _, spec := range decl.(*ast.GenDecl).Specs {
					ts := spec.(*ast.TypeSpec)
					local[ts.Name.Name] = ts.Type.(*ast.StructType)
				}
			}
			c := &shapeChecker{fset: fset, local: local, complete: map[reflect.Type]bool{reflect.TypeFor[real](): tc.complete}, checked: map[string]bool{}}
			if errs := c.structs("x", local["x"], reflect.TypeFor[real]()); len(errs) != tc.errs {
				t.Errorf("%d errors, want %d: %v", len(errs), tc.errs, errs)
			}
		})
	}
}

// shapeChecker compares the importer's struct declarations with Envoy
// Gateway's types as encoding/json sees them.
type shapeChecker struct {
	fset  *token.FileSet
	local map[string]*ast.StructType
	// complete: real struct types every field of which the local struct
	// must read.
	complete map[reflect.Type]bool
	checked  map[string]bool // local struct type name + real type, compared once
}

var jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()

// structs compares a local struct with a real one, field by JSON name.
func (c *shapeChecker) structs(where string, st *ast.StructType, real reflect.Type) []error {
	if real.Kind() != reflect.Struct {
		return []error{fmt.Errorf("%s: a struct where Envoy Gateway has a %s", where, real)}
	}
	fields := jsonFields(real)
	var errs []error
	read := map[string]bool{}
	for _, fld := range st.Fields.List {
		name := jsonName(fld)
		read[name] = true
		rf, ok := fields[name]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %s.%s: %s has no JSON field %q", c.fset.Position(fld.Pos()), where, name, real, name))
			continue
		}
		errs = append(errs, c.shape(where+"."+name, fld.Type, rf.Type)...)
	}
	if c.complete[real] {
		for _, name := range slices.Sorted(maps.Keys(fields)) {
			if !read[name] {
				errs = append(errs, fmt.Errorf("%s: %s has field %q, which the importer's struct does not read", where, real, name))
			}
		}
	}
	return errs
}

// shape compares a local field type with a real one: pointers,
// slices, strings, bools and structs must correspond; "any" accepts
// anything (the importer only looks at whether the value is there).
func (c *shapeChecker) shape(where string, local ast.Expr, real reflect.Type) []error {
	errf := func(format string, args ...any) []error {
		return []error{fmt.Errorf("%s: %s: %s", c.fset.Position(local.Pos()), where, fmt.Sprintf(format, args...))}
	}
	if real.Kind() != reflect.Pointer && reflect.PointerTo(real).Implements(jsonUnmarshaler) {
		return errf("%s decodes itself from JSON: compare it by hand", real)
	}
	switch l := local.(type) {
	case *ast.StarExpr:
		if real.Kind() != reflect.Pointer {
			return errf("a pointer where Envoy Gateway has %s", real)
		}
		return c.shape(where, l.X, real.Elem())
	case *ast.ArrayType:
		if l.Len != nil || real.Kind() != reflect.Slice {
			return errf("a list where Envoy Gateway has %s", real)
		}
		return c.shape(where+"[]", l.Elt, real.Elem())
	case *ast.InterfaceType:
		return nil
	case *ast.StructType:
		return c.structs(where, l, real)
	case *ast.Ident:
		switch l.Name {
		case "any":
			return nil
		case "string":
			if real.Kind() != reflect.String {
				return errf("a string where Envoy Gateway has %s", real)
			}
			return nil
		case "bool":
			if real.Kind() != reflect.Bool {
				return errf("a bool where Envoy Gateway has %s", real)
			}
			return nil
		}
		if st := c.local[l.Name]; st != nil {
			key := l.Name + " " + real.String()
			if c.checked[key] {
				return nil
			}
			c.checked[key] = true
			return c.structs(l.Name, st, real)
		}
	}
	return errf("the test cannot compare %T", local)
}

// jsonFields returns the fields encoding/json decodes t's JSON names
// into, with embedded structs (json:",inline") flattened.
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	fields := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" && f.Anonymous {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for n, sub := range jsonFields(ft) {
					if _, ok := fields[n]; !ok {
						fields[n] = sub
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f
	}
	return fields
}

// jsonName is the JSON name of a local field, from its tag.
func jsonName(f *ast.Field) string {
	if f.Tag != nil {
		tag, err := strconv.Unquote(f.Tag.Value)
		if err == nil {
			if name, _, _ := strings.Cut(reflect.StructTag(tag).Get("json"), ","); name != "" {
				return name
			}
		}
	}
	if len(f.Names) > 0 {
		return f.Names[0].Name
	}
	return ""
}
