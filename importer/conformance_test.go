package importer_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	// The blank import makes the conformance module a requirement of this
	// module: go.mod pins its version and go.sum its hash, and building this
	// test puts its source in the module cache, where the suite below reads
	// GEP-1767's routes and cases. The package itself is small (the
	// conformance report's types); the suite's own packages need a cluster.
	_ "sigs.k8s.io/gateway-api/conformance/apis/v1"

	"github.com/corsauthz/corsauthz/importer"
	"github.com/corsauthz/corsauthz/policy"
)

// The GEP-1767 conformance test: its Go file (cases) and, named there,
// its manifests (routes), both read from the module as released.
const (
	conformanceModule = "sigs.k8s.io/gateway-api/conformance"
	corsConformanceGo = "tests/httproute-cors.go"
	// gatewayHost is the Host of a case that names none: the gateway's
	// address, as the suite's requests carry it.
	gatewayHost = "192.0.2.10"
)

// conformanceDifferences are the GEP-1767 cases where corsauthz answers
// otherwise on purpose, each by the case's name in the suite's Go file,
// with what differs and the Fetch standard's reason. TestConformanceGEP1767
// fails when a case disagrees in another way, and when one listed here
// agrees, so that the list (and docs/import.md, which gives it) stays true.
var conformanceDifferences = []struct {
	name    string
	differs []string // keys of the mismatches, see conformanceCompare
	because string
}{
	{
		name:    "CORS preflight request from an exact matching origin should be allowed",
		differs: []string{"header access-control-allow-methods", "header access-control-expose-headers"},
		because: listMethodsExposeHeaders,
	},
	{
		name:    "CORS preflight request from a wildcard matching origin should be allowed",
		differs: []string{"header access-control-allow-methods", "header access-control-expose-headers"},
		because: listMethodsExposeHeaders,
	},
	{
		name:    "CORS preflight request from a wildcard matching any number of periods left to '*' should be allowed",
		differs: []string{"header access-control-allow-methods", "header access-control-expose-headers"},
		because: listMethodsExposeHeaders,
	},
	{
		name:    "CORS preflight request requesting specific method and headers should be allowed and always echo the origin with allowCredentials set to true",
		differs: []string{"header access-control-allow-credentials", "header access-control-allow-origin"},
		because: anyOriginCredentials,
	},
	{
		name:    "CORS request should receive access-control-allow-credentials header with allowCredentials set to true",
		differs: []string{"header access-control-allow-credentials", "header access-control-allow-origin"},
		because: anyOriginCredentials,
	},
}

const (
	listMethodsExposeHeaders = "a preflight only needs Access-Control-Allow-Methods to hold the requested method " +
		"(Fetch, CORS-preflight fetch), so corsauthz names that one instead of every configured method; and Fetch " +
		"reads Access-Control-Expose-Headers on the actual response only, where corsauthz sends it"
	anyOriginCredentials = "allowOrigins \"*\" with allowCredentials: true makes the GEP echo every origin with " +
		"Access-Control-Allow-Credentials: true, so that any site reads responses with the user's cookies, which " +
		"is what Fetch forbids \"*\" with credentials for; corsauthz refuses it, and the import (with an unsafe " +
		"finding) answers \"*\" without credentials"
)

// TestConformanceGEP1767 runs the GEP-1767 conformance cases, read from
// the pinned sigs.k8s.io/gateway-api/conformance module (never retyped),
// through corsauthz import --from gateway-api on the suite's routes and
// the decision engine, and compares each answer with what the case
// expects, as the suite's own comparison does. Every case agrees or is a
// listed deliberate difference.
func TestConformanceGEP1767(t *testing.T) {
	dir, version := conformanceModuleDir(t)
	suite := loadConformanceSuite(t, dir)
	t.Logf("%s@%s %s: %s, %d cases, routes %s", conformanceModule, version, corsConformanceGo, suite.shortName, len(suite.cases), suite.manifest)

	routes, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(suite.manifest)))
	if err != nil {
		t.Fatal(err)
	}
	backendNS := routesNamespace(t, routes)
	name := conformanceModule + "@" + version + "/" + suite.manifest
	res, err := importer.Import(importer.GatewayAPI, []importer.Input{{Name: name, Data: routes}})
	if err != nil {
		t.Fatalf("import --from gateway-api %s: %v", name, err)
	}
	e, _, err := policy.Load(name+" (imported)", res.YAML())
	if err != nil {
		t.Fatalf("the imported configuration does not load: %v\n%s", err, res.YAML())
	}

	listed := map[string]int{}
	for i, d := range conformanceDifferences {
		listed[d.name] = i
	}
	seen := map[string]bool{}
	agree, differ := 0, 0
	for _, c := range suite.cases {
		if seen[c.TestCaseName] {
			t.Errorf("two cases are named %q", c.TestCaseName)
		}
		seen[c.TestCaseName] = true
		x, err := conformanceExchange(e, c, backendNS)
		if err != nil {
			t.Errorf("%s: %v", c.TestCaseName, err)
			continue
		}
		got := conformanceCompare(c, x)
		i, isListed := listed[c.TestCaseName]
		switch {
		case len(got) == 0 && !isListed:
			agree++
		case len(got) == 0:
			t.Errorf("%q agrees now: remove it from conformanceDifferences and from docs/import.md", c.TestCaseName)
		case !isListed:
			t.Errorf("%q disagrees, and is not a listed deliberate difference:\n%s", c.TestCaseName, got)
		case !slices.Equal(got.keys(), conformanceDifferences[i].differs):
			t.Errorf("%q disagrees on %q, the listed difference is %q:\n%s", c.TestCaseName, got.keys(), conformanceDifferences[i].differs, got)
		default:
			differ++
		}
	}
	for _, d := range conformanceDifferences {
		if !seen[d.name] {
			t.Errorf("listed difference %q is not a case of %s", d.name, corsConformanceGo)
		}
	}
	t.Logf("%d cases: %d agree, %d differ as listed", len(suite.cases), agree, differ)

	// docs/import.md gives the figure and the list.
	doc, err := os.ReadFile("../docs/import.md")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%d cases", len(suite.cases)); !bytes.Contains(doc, []byte(want)) {
		t.Errorf("docs/import.md does not say %q", want)
	}
	for _, d := range conformanceDifferences {
		if !bytes.Contains(doc, []byte(d.name)) {
			t.Errorf("docs/import.md does not list the difference %q", d.name)
		}
	}

	// TestGolden and TestDecisions import a copy of the routes: it must be
	// the module's file under its source comment.
	cp, err := os.ReadFile("testdata/gateway-api/gep-1767-conformance-routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	header, body := splitComment(cp)
	if !bytes.Equal(body, routes) {
		t.Errorf("testdata/gateway-api/gep-1767-conformance-routes.yaml is not %s under its comment: copy it again", name)
	}
	if !bytes.Contains(header, []byte(version)) {
		t.Errorf("the comment of testdata/gateway-api/gep-1767-conformance-routes.yaml does not name %s", version)
	}
}

// splitComment splits the leading comment lines off a YAML file.
func splitComment(b []byte) (comment, rest []byte) {
	i := 0
	for i < len(b) && b[i] == '#' {
		nl := bytes.IndexByte(b[i:], '\n')
		if nl < 0 {
			return b, nil
		}
		i += nl + 1
	}
	return b[:i], b[i:]
}

// conformanceModuleDir asks the go command where the required conformance
// module is; building this test has put it in the module cache.
func conformanceModuleDir(t *testing.T) (dir, version string) {
	t.Helper()
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command locates module %s: %v", conformanceModule, err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(gocmd, "list", "-m", "-json", conformanceModule)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v\n%s", conformanceModule, err, stderr.Bytes())
	}
	var m struct{ Dir, Version string }
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if m.Dir == "" {
		t.Fatalf("module %s@%s is not in the module cache: go mod download %s", conformanceModule, m.Version, conformanceModule)
	}
	return m.Dir, m.Version
}

// routesNamespace is the namespace of the suite's routes, where their
// backends run: the echo backend reports it for a request it received.
func routesNamespace(t *testing.T, routes []byte) string {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(routes))
	var ns []string
	for {
		var obj struct {
			Kind     string `yaml:"kind"`
			Metadata struct {
				Namespace string `yaml:"namespace"`
			} `yaml:"metadata"`
		}
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if obj.Kind == "HTTPRoute" && !slices.Contains(ns, obj.Metadata.Namespace) {
			ns = append(ns, obj.Metadata.Namespace)
		}
	}
	if len(ns) != 1 {
		t.Fatalf("the routes are in namespaces %q: the test knows one backend namespace", ns)
	}
	return ns[0]
}

// confCase is an http.ExpectedResponse of the suite, with the fields its
// CORS cases use. Decoding refuses any other field, so a case that
// starts using one fails here until the test models it.
type confCase struct {
	TestCaseName    string
	Namespace       string
	Request         confRequest
	ExpectedRequest *struct{ Request confRequest }
	Response        struct {
		StatusCode        int
		StatusCodes       []int
		Headers           map[string]string
		ValidHeaderValues map[string][]string
		AbsentHeaders     []string
		IgnoreWhitespace  bool
	}
}

type confRequest struct {
	Host, Method, Path string
	Headers            map[string]string
}

type confSuite struct {
	shortName string
	manifest  string
	cases     []confCase
}

// loadConformanceSuite reads the cases of httproute-cors.go from its
// syntax tree: the []http.ExpectedResponse literal, whose values are
// literals or names bound in the file (ns := confsuite.InfrastructureNamespace)
// or constants of the suite's packages.
func loadConformanceSuite(t *testing.T, dir string) confSuite {
	t.Helper()
	file := filepath.Join(dir, filepath.FromSlash(corsConformanceGo))
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	ev := &evaluator{fset: fset, dir: dir, imports: map[string]string{}, locals: map[string]ast.Expr{}, consts: map[string]map[string]string{}}
	for _, im := range f.Imports {
		p, _ := strconv.Unquote(im.Path.Value)
		name := path.Base(p)
		if im.Name != nil {
			name = im.Name.Name
		}
		ev.imports[name] = p
	}
	httpPkg, suitePkg := "", ""
	for name, p := range ev.imports {
		switch p {
		case conformanceModule + "/utils/http":
			httpPkg = name
		case conformanceModule + "/utils/suite":
			suitePkg = name
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		if as, ok := n.(*ast.AssignStmt); ok && as.Tok == token.DEFINE && len(as.Lhs) == len(as.Rhs) {
			for i, l := range as.Lhs {
				if id, ok := l.(*ast.Ident); ok {
					if _, dup := ev.locals[id.Name]; dup {
						ev.locals[id.Name] = nil // bound twice: not usable
					} else {
						ev.locals[id.Name] = as.Rhs[i]
					}
				}
			}
		}
		return true
	})

	var suite confSuite
	var tests, caseLists []*ast.CompositeLit
	ast.Inspect(f, func(n ast.Node) bool {
		cl, ok := n.(*ast.CompositeLit)
		if !ok {
			return true
		}
		if isSelector(cl.Type, suitePkg, "ConformanceTest") {
			tests = append(tests, cl)
		}
		if at, ok := cl.Type.(*ast.ArrayType); ok && isSelector(at.Elt, httpPkg, "ExpectedResponse") {
			caseLists = append(caseLists, cl)
		}
		return true
	})
	if len(tests) != 1 || len(caseLists) != 1 {
		t.Fatalf("%s: %d ConformanceTest literals and %d []http.ExpectedResponse literals, want one of each: the file changed shape", file, len(tests), len(caseLists))
	}
	for _, el := range tests[0].Elts {
		kv, ok := el.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		switch key := kv.Key.(*ast.Ident); {
		case key == nil:
		case key.Name == "ShortName":
			v, err := ev.eval(kv.Value)
			if err != nil {
				t.Fatal(err)
			}
			suite.shortName, _ = v.(string)
		case key.Name == "Manifests":
			v, err := ev.eval(kv.Value)
			if err != nil {
				t.Fatal(err)
			}
			if l, ok := v.([]any); ok && len(l) == 1 {
				suite.manifest, _ = l[0].(string)
			}
		}
	}
	if suite.manifest == "" {
		t.Fatalf("%s: no single manifest in the ConformanceTest", file)
	}
	for _, el := range caseLists[0].Elts {
		v, err := ev.eval(el)
		if err != nil {
			t.Fatal(err)
		}
		js, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		var c confCase
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("%s: a case does not decode as the test models it: %v\n%s", fset.Position(el.Pos()), err, js)
		}
		if c.TestCaseName == "" {
			t.Fatalf("%s: a case without TestCaseName", fset.Position(el.Pos()))
		}
		suite.cases = append(suite.cases, c)
	}
	if len(suite.cases) == 0 {
		t.Fatalf("%s: no cases", file)
	}
	return suite
}

func isSelector(e ast.Expr, pkg, name string) bool {
	s, ok := e.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	x, ok := s.X.(*ast.Ident)
	return ok && pkg != "" && x.Name == pkg && s.Sel.Name == name
}

// evaluator turns the literals of the suite's Go file into values:
// strings, ints and booleans, composite literals as maps keyed by field
// name or map key, or as lists; anything else is an error, so a case
// written another way fails instead of being misread.
type evaluator struct {
	fset    *token.FileSet
	dir     string            // the module's directory
	imports map[string]string // local name -> import path
	locals  map[string]ast.Expr
	consts  map[string]map[string]string // import path -> constant -> string value
}

func (ev *evaluator) errorf(n ast.Node, format string, args ...any) error {
	return fmt.Errorf("%s: %s", ev.fset.Position(n.Pos()), fmt.Sprintf(format, args...))
}

func (ev *evaluator) eval(e ast.Expr) (any, error) {
	switch e := e.(type) {
	case *ast.BasicLit:
		switch e.Kind {
		case token.STRING:
			return strconv.Unquote(e.Value)
		case token.INT:
			return strconv.Atoi(e.Value)
		}
	case *ast.ParenExpr:
		return ev.eval(e.X)
	case *ast.UnaryExpr:
		if e.Op == token.AND {
			return ev.eval(e.X)
		}
	case *ast.Ident:
		switch e.Name {
		case "true", "false":
			return e.Name == "true", nil
		case "nil":
			return nil, nil
		}
		if x := ev.locals[e.Name]; x != nil {
			return ev.eval(x)
		}
	case *ast.SelectorExpr:
		if x, ok := e.X.(*ast.Ident); ok {
			if p, ok := ev.imports[x.Name]; ok {
				return ev.constant(e, p, e.Sel.Name)
			}
		}
	case *ast.CompositeLit:
		if len(e.Elts) == 0 {
			if _, ok := e.Type.(*ast.ArrayType); ok {
				return []any{}, nil
			}
			return map[string]any{}, nil
		}
		if _, ok := e.Elts[0].(*ast.KeyValueExpr); !ok {
			var list []any
			for _, el := range e.Elts {
				v, err := ev.eval(el)
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			return list, nil
		}
		m := map[string]any{}
		for _, el := range e.Elts {
			kv, ok := el.(*ast.KeyValueExpr)
			if !ok {
				return nil, ev.errorf(el, "a composite literal mixes keyed and unkeyed elements")
			}
			var key string
			switch k := kv.Key.(type) {
			case *ast.Ident: // a struct field
				key = k.Name
			default: // a map key
				v, err := ev.eval(k)
				if err != nil {
					return nil, err
				}
				s, ok := v.(string)
				if !ok {
					return nil, ev.errorf(k, "a map key that is not a string")
				}
				key = s
			}
			v, err := ev.eval(kv.Value)
			if err != nil {
				return nil, err
			}
			m[key] = v
		}
		return m, nil
	}
	return nil, ev.errorf(e, "the test cannot evaluate %T here", e)
}

// constant returns a string constant of a package of the conformance
// module, read from its source.
func (ev *evaluator) constant(at ast.Node, importPath, name string) (any, error) {
	rel, ok := strings.CutPrefix(importPath, conformanceModule+"/")
	if !ok {
		return nil, ev.errorf(at, "%s is not a package of %s", importPath, conformanceModule)
	}
	if ev.consts[importPath] == nil {
		consts := map[string]string{}
		files, _ := filepath.Glob(filepath.Join(ev.dir, filepath.FromSlash(rel), "*.go"))
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.SkipObjectResolution)
			if err != nil {
				return nil, err
			}
			for _, decl := range f.Decls {
				gd, ok := decl.(*ast.GenDecl)
				if !ok || gd.Tok != token.CONST {
					continue
				}
				for _, spec := range gd.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, id := range vs.Names {
						if i < len(vs.Values) {
							if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
								consts[id.Name], _ = strconv.Unquote(lit.Value)
							}
						}
					}
				}
			}
		}
		ev.consts[importPath] = consts
	}
	v, ok := ev.consts[importPath][name]
	if !ok {
		return nil, ev.errorf(at, "no string constant %s in %s", name, importPath)
	}
	return v, nil
}

// exchange is what the suite's round tripper would capture: the
// response, and the request as the echo backend reports it (nothing when
// the gateway answered itself).
type exchange struct {
	status   int
	header   http.Header
	captured confRequest
	// namespace is the echo backend's, "" when the gateway answered.
	namespace string
}

// conformanceExchange decides the case's request with e, as a gateway in
// front of the suite's echo backend would apply the decision: a direct
// answer is the gateway's; otherwise the backend answers 200 (it sends no
// CORS headers of its own) and the decision's headers are added.
func conformanceExchange(e *policy.Engine, c confCase, backendNS string) (exchange, error) {
	method := c.Request.Method
	if method == "" {
		method = "GET"
	}
	reqHeader := http.Header{}
	for k, v := range c.Request.Headers {
		reqHeader.Set(k, v)
	}
	host := c.Request.Host
	if host == "" {
		host = gatewayHost
	}
	p, _, _ := strings.Cut(c.Request.Path, "?")
	d, err := e.Decide(&policy.Request{
		Method:         method,
		Host:           host,
		Path:           p,
		Origin:         reqHeader.Get(policy.HeaderOrigin),
		OriginPresent:  len(reqHeader.Values(policy.HeaderOrigin)) > 0,
		RequestMethod:  reqHeader.Get(policy.HeaderRequestMethod),
		RequestHeaders: reqHeader.Get(policy.HeaderRequestHeaders),
	})
	if err != nil {
		return exchange{}, err
	}
	x := exchange{header: http.Header{}, captured: confRequest{Method: method}}
	for _, h := range d.AppendHeaders(nil) {
		if h.Append {
			x.header.Add(h.Name, h.Value)
		} else {
			x.header.Set(h.Name, h.Value)
		}
	}
	if d.Direct() {
		x.status = d.Status
		return x, nil
	}
	x.status = 200
	x.captured = confRequest{Host: host, Method: method, Path: c.Request.Path, Headers: c.Request.Headers}
	x.namespace = backendNS
	return x, nil
}

type mismatch struct{ key, message string }

type mismatches []mismatch

// keys returns the sorted keys of the mismatches, without repeats.
func (ms mismatches) keys() []string {
	var keys []string
	for _, m := range ms {
		if !slices.Contains(keys, m.key) {
			keys = append(keys, m.key)
		}
	}
	slices.Sort(keys)
	return keys
}

func (ms mismatches) String() string {
	var sb strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&sb, "\t%s: %s\n", m.key, m.message)
	}
	return sb.String()
}

// conformanceCompare checks x against the case as the suite's
// CompareRoundTrip does (status first; the request that reached the
// backend and the headers only for 200 and 204), but reports every
// mismatch instead of the first. Keys: "status", "request", and
// "header NAME" in lower case.
func conformanceCompare(c confCase, x exchange) mismatches {
	var ms mismatches
	add := func(key, format string, args ...any) {
		ms = append(ms, mismatch{key, fmt.Sprintf(format, args...)})
	}
	codes := slices.Clone(c.Response.StatusCodes)
	if c.Response.StatusCode != 0 && !slices.Contains(codes, c.Response.StatusCode) {
		codes = append(codes, c.Response.StatusCode)
	}
	if len(codes) == 0 {
		codes = []int{200}
	}
	if !slices.Contains(codes, x.status) {
		add("status", "%d, want one of %v", x.status, codes)
		return ms
	}
	if x.status != 200 && x.status != 204 {
		return ms
	}

	want := c.Request
	if c.ExpectedRequest != nil {
		want = c.ExpectedRequest.Request
	}
	if want.Method == "" {
		want.Method = "GET"
	}
	if want.Host != "" && want.Host != x.captured.Host {
		add("request", "host %q, want %q", x.captured.Host, want.Host)
	}
	if want.Path != x.captured.Path {
		add("request", "path %q, want %q (an empty path: answered by the gateway)", x.captured.Path, want.Path)
	}
	if want.Method != x.captured.Method {
		add("request", "method %q, want %q", x.captured.Method, want.Method)
	}
	if c.Namespace != x.namespace {
		add("request", "backend namespace %q, want %q (an empty namespace: answered by the gateway)", x.namespace, c.Namespace)
	}
	for name, v := range want.Headers {
		got, ok := headerLookup(x.captured.Headers, name)
		if !ok || got != v {
			add("request", "request header %s %q, want %q", name, got, v)
		}
	}

	strip := func(s string) string {
		if c.Response.IgnoreWhitespace {
			return strings.ReplaceAll(s, " ", "")
		}
		return s
	}
	for name, vals := range c.Response.ValidHeaderValues {
		key := "header " + strings.ToLower(name)
		got, ok := x.header[http.CanonicalHeaderKey(name)]
		if !ok {
			add(key, "absent, want one of %q", vals)
			continue
		}
		if !slices.ContainsFunc(vals, func(v string) bool { return strip(v) == strip(strings.Join(got, ",")) }) {
			add(key, "%q, want one of %q", strings.Join(got, ","), vals)
		}
	}
	for name, v := range c.Response.Headers {
		key := "header " + strings.ToLower(name)
		got, ok := x.header[http.CanonicalHeaderKey(name)]
		if !ok {
			add(key, "absent, want %q", v)
			continue
		}
		if strip(strings.Join(got, ",")) != strip(v) {
			add(key, "%q, want %q", strings.Join(got, ","), v)
		}
	}
	for _, name := range c.Response.AbsentHeaders {
		if got, ok := x.header[http.CanonicalHeaderKey(name)]; ok {
			add("header "+strings.ToLower(name), "%q, want none", strings.Join(got, ","))
		}
	}
	slices.SortStableFunc(ms, func(a, b mismatch) int { return strings.Compare(a.key, b.key) })
	return ms
}

func headerLookup(h map[string]string, name string) (string, bool) {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

// TestConformanceCompare: the comparison finds each kind of mismatch the
// suite's own comparison would fail on, and accepts what it accepts.
func TestConformanceCompare(t *testing.T) {
	preflight := func(edit ...func(*confCase)) confCase {
		var c confCase
		c.TestCaseName = "preflight"
		c.Request = confRequest{Path: "/p", Method: "OPTIONS"}
		c.ExpectedRequest = &struct{ Request confRequest }{confRequest{Method: "OPTIONS"}}
		c.Response.StatusCodes = []int{200, 204}
		c.Response.ValidHeaderValues = map[string][]string{"access-control-allow-methods": {"GET, PUT", "PUT, GET"}}
		c.Response.AbsentHeaders = []string{"access-control-allow-credentials"}
		c.Response.IgnoreWhitespace = true
		for _, e := range edit {
			e(&c)
		}
		return c
	}
	actual := func() confCase {
		var c confCase
		c.TestCaseName = "actual"
		c.Namespace = "infra"
		c.Request = confRequest{Path: "/p"}
		c.Response.Headers = map[string]string{"access-control-allow-origin": "https://a.example"}
		return c
	}
	// gateway is an answer of the gateway; backend one of the echo
	// backend in namespace ns; h are header names and values.
	gateway := func(status int, method string, h ...string) exchange {
		x := exchange{status: status, header: http.Header{}, captured: confRequest{Method: method}}
		for i := 0; i+1 < len(h); i += 2 {
			x.header.Set(h[i], h[i+1])
		}
		return x
	}
	backend := func(status int, ns string, h ...string) exchange {
		x := gateway(status, "GET", h...)
		x.captured.Path, x.namespace = "/p", ns
		return x
	}
	const acao, acam = "Access-Control-Allow-Origin", "Access-Control-Allow-Methods"
	for _, tc := range []struct {
		desc string
		c    confCase
		x    exchange
		want []string
	}{
		{desc: "agrees, whitespace ignored", c: preflight(), x: gateway(204, "OPTIONS", acam, "PUT,GET"), want: nil},
		{desc: "another status", c: preflight(), x: gateway(403, "OPTIONS"), want: []string{"status"}},
		{desc: "a listed status other than 200 and 204 checks nothing more", c: preflight(func(c *confCase) { c.Response.StatusCodes = append(c.Response.StatusCodes, 403) }), x: gateway(403, "OPTIONS"), want: nil},
		{desc: "a value not listed", c: preflight(), x: gateway(204, "OPTIONS", acam, "PUT"), want: []string{"header access-control-allow-methods"}},
		{desc: "a header missing", c: preflight(), x: gateway(204, "OPTIONS"), want: []string{"header access-control-allow-methods"}},
		{desc: "a header that must be absent", c: preflight(), x: gateway(204, "OPTIONS", acam, "GET, PUT", "Access-Control-Allow-Credentials", "true"), want: []string{"header access-control-allow-credentials"}},
		{desc: "whitespace counts without IgnoreWhitespace", c: preflight(func(c *confCase) { c.Response.IgnoreWhitespace = false }), x: gateway(204, "OPTIONS", acam, "GET,PUT"), want: []string{"header access-control-allow-methods"}},
		{desc: "a preflight that reached the backend", c: preflight(), x: backend(200, "infra", acam, "GET, PUT"), want: []string{"request"}},
		{desc: "forwarded, agrees", c: actual(), x: backend(200, "infra", acao, "https://a.example"), want: nil},
		{desc: "the default status is 200", c: actual(), x: backend(204, "infra", acao, "https://a.example"), want: []string{"status"}},
		{desc: "answered by the gateway where the backend should have", c: actual(), x: gateway(200, "GET", acao, "https://a.example"), want: []string{"request"}},
		{desc: "an exact header differs", c: actual(), x: backend(200, "infra", acao, "*"), want: []string{"header access-control-allow-origin"}},
		{desc: "the backend in another namespace", c: actual(), x: backend(200, "other", acao, "https://a.example"), want: []string{"request"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got := conformanceCompare(tc.c, tc.x)
			if !slices.Equal(got.keys(), tc.want) {
				t.Errorf("mismatches %q, want %q:\n%s", got.keys(), tc.want, got)
			}
		})
	}
}

// TestConformanceEvaluator: the literals of the suite's cases evaluate to
// their values; any other expression is refused, not misread.
func TestConformanceEvaluator(t *testing.T) {
	for _, tc := range []struct {
		desc, expr string
		want       string // the value as JSON; "" for an error
	}{
		{desc: "a struct literal", expr: `http.Request{Path: "/p", Method: "OPTIONS", Headers: nil}`, want: `{"Headers":null,"Method":"OPTIONS","Path":"/p"}`},
		{desc: "a map of lists with elided types", expr: `map[string][]string{"a": {"x", "y"}}`, want: `{"a":["x","y"]}`},
		{desc: "ints, a pointer, a bound name, a constant", expr: `&X{Codes: []int{200, 204}, NS: ns, C: suite.Infra, B: true}`, want: `{"B":true,"C":"infra-ns","Codes":[200,204],"NS":"infra-ns"}`},
		{desc: "empty literals", expr: `X{L: []string{}, M: map[string]string{}}`, want: `{"L":[],"M":{}}`},
		{desc: "a call", expr: `X{A: f()}`},
		{desc: "a name bound twice", expr: `X{A: twice}`},
		{desc: "an unknown name", expr: `X{A: unknown}`},
		{desc: "a binary expression", expr: `X{A: "a" + "b"}`},
		{desc: "a constant of a package outside the module", expr: `X{A: types.Name}`},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "utils", "suite"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "utils", "suite", "consts.go"), []byte("package suite\n\nconst Infra = \"infra-ns\"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			fset := token.NewFileSet()
			e, err := parser.ParseExprFrom(fset, "case.go", tc.expr, 0)
			if err != nil {
				t.Fatal(err)
			}
			ev := &evaluator{fset: fset, dir: dir,
				imports: map[string]string{"suite": conformanceModule + "/utils/suite", "types": "k8s.io/apimachinery/pkg/types"},
				locals:  map[string]ast.Expr{"ns": &ast.SelectorExpr{X: ast.NewIdent("suite"), Sel: ast.NewIdent("Infra")}, "twice": nil},
				consts:  map[string]map[string]string{}}
			v, err := ev.eval(e)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("evaluated to %v, want an error", v)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			js, _ := json.Marshal(v)
			if string(js) != tc.want {
				t.Errorf("%s, want %s", js, tc.want)
			}
		})
	}
}
