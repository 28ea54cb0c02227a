package policy_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/corsauthz/corsauthz/policy"
)

// FuzzLoad: Load never panics; it returns an engine or a non-empty list of
// problems, each located by a field path or a line.
func FuzzLoad(f *testing.F) {
	files, err := filepath.Glob("testdata/*.*")
	if err != nil {
		f.Fatal(err)
	}
	files = append(files, "../deploy/corsauthz.yaml")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(decideConfig))
	f.Add([]byte(selectionConfig))
	f.Add([]byte("policies: &a [*a]\n"))
	f.Add([]byte("policies:\n  - &p {name: a, allowed_origins: [https://a.example]}\n  - *p\n"))
	f.Add([]byte("policies:\n  - <<: {name: a}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, warnings, err := policy.Load("fuzz.yaml", data)
		if (e == nil) == (err == nil) {
			t.Fatalf("Load = engine %v, error %v: want exactly one", e != nil, err)
		}
		for _, w := range warnings {
			if w.Path == "" {
				t.Errorf("warning without a path: %v", w)
			}
		}
		if err == nil {
			// Whatever was accepted can decide.
			req := policy.Request{Method: "OPTIONS", Origin: "https://app.example.com", RequestMethod: "PUT", RequestHeaders: "x-a"}
			for _, name := range e.PolicyNames() {
				req.Policy = name
				if _, err := e.Decide(&req); err != nil {
					t.Errorf("Decide with policy %q: %v", name, err)
				}
			}
			return
		}
		fes := policy.FieldErrors(err)
		if len(fes) == 0 {
			t.Fatalf("error %v holds no FieldError", err)
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok && len(j.Unwrap()) != len(fes) {
			t.Errorf("%d errors joined, %d FieldErrors", len(j.Unwrap()), len(fes))
		}
		for _, fe := range fes {
			if fe.Path == "" && fe.Line == 0 {
				t.Errorf("error without a path or a line: %q", fe.Error())
			}
			if fe.File != "fuzz.yaml" {
				t.Errorf("error without the file name: %q", fe.Error())
			}
			if fe.Message == "" {
				t.Errorf("error without a message: %q", fe.Error())
			}
		}
	})
}

// fuzzEngine is decideConfig with routes, so that the fuzzer reaches
// selection by host and path as well as by name.
const fuzzRoutes = `
  - name: routed
    match:
      hosts: [api.example.com, "*.api.example.com"]
      path_prefixes: [/v1/]
    allowed_origins: [https://app.example.com, https://*.example.com, "null"]
    allowed_methods: [PUT]
    allowed_headers: [X-A]
  - name: routed-partners
    match:
      hosts: [api.example.com, "*.api.example.com"]
      path_prefixes: [/v1/]
    allowed_origins: ["*"]
default_policy: exact
`

// FuzzDecide: Decide never panics, and its decisions keep the rules every
// front end relies on.
func FuzzDecide(f *testing.F) {
	e := mustLoad(f, decideConfig+fuzzRoutes)
	names := e.PolicyNames()
	index := func(name string) uint8 {
		for i, n := range names {
			if n == name {
				return uint8(i)
			}
		}
		return uint8(len(names)) // no policy named
	}
	add := func(r policy.Request) {
		f.Add(r.Method, r.Host, r.Path, index(r.Policy), r.Origin, r.OriginPresent, r.RequestMethod, r.RequestHeaders, r.RequestPrivateNetwork)
	}
	for _, tc := range decideCases {
		add(tc.req)
	}
	for _, tc := range originCases {
		add(actual(tc.policy, "GET", tc.origin))
	}
	for _, tc := range methodCases {
		add(preflight(tc.policy, "https://app.example.com", tc.method, ""))
	}
	for _, tc := range requestHeadersCases {
		add(preflight(tc.policy, "https://app.example.com", "GET", tc.headers))
	}
	add(policy.Request{Method: "OPTIONS", Host: "t.api.example.com", Path: "/v1/x", Origin: "https://a.example.com", RequestMethod: "PUT", RequestHeaders: "x-a"})
	add(policy.Request{Method: "GET", Host: "www.example.com", Origin: "https://app.example.com", Policy: "nope"})

	f.Fuzz(func(t *testing.T, method, host, path string, pol uint8, origin string, originPresent bool, reqMethod, reqHeaders, reqPrivNet string) {
		req := policy.Request{
			Method: method, Host: host, Path: path, Origin: origin, OriginPresent: originPresent,
			RequestMethod: reqMethod, RequestHeaders: reqHeaders, RequestPrivateNetwork: reqPrivNet,
		}
		switch i := int(pol) % (len(names) + 2); {
		case i < len(names):
			req.Policy = names[i]
		case i == len(names):
			req.Policy = ""
		default:
			req.Policy = "no-such-policy"
		}
		d, err := e.Decide(&req)
		if req.Policy == "no-such-policy" {
			if !errors.Is(err, policy.ErrUnknownPolicy) {
				t.Fatalf("Decide with an unknown policy: err = %v, want ErrUnknownPolicy", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Decide: %v", err)
		}
		if again, _ := e.Decide(&req); again.Kind != d.Kind || again.Status != d.Status || again.Reason != d.Reason {
			t.Fatalf("Decide is not deterministic: %+v, then %+v", d, again)
		}

		hs := d.AppendHeaders(make([]policy.Header, 0, policy.MaxHeaders))
		if len(hs) > policy.MaxHeaders {
			t.Errorf("%d headers, more than MaxHeaders (%d): %v", len(hs), policy.MaxHeaders, hs)
		}
		for _, h := range hs {
			if strings.ContainsAny(h.Value, "\r\n\x00") {
				t.Errorf("header %s holds a control character: %q", h.Name, h.Value)
			}
		}
		acao := headerValue(hs, policy.HeaderAllowOrigin)
		switch d.Status {
		case 0, 204, 403:
		default:
			t.Errorf("Status = %d", d.Status)
		}

		switch d.Kind {
		case policy.KindNotCORS:
			cors := origin != "" || originPresent
			if d.Status != 0 || (len(hs) != 0 && (cors || d.Policy == "")) {
				t.Errorf("not CORS, but Status %d and headers %v", d.Status, hs)
			}
			if cors && d.Reason != policy.ReasonNoPolicy {
				t.Errorf("not CORS with Origin %q: Reason %v", origin, d.Reason)
			}
			// Without Origin: Access-Control-Allow-Origin "*" or Vary: Origin,
			// so that no cache hands the answer to a CORS request.
			if !cors && d.Policy != "" && acao != "*" && !slices.Contains(hs, varyOrigin) {
				t.Errorf("no Origin under policy %q: headers %v, want Vary: Origin or Access-Control-Allow-Origin: *", d.Policy, hs)
			}
		case policy.KindPreflightAllowed:
			if d.Status != 204 || acao == "" {
				t.Errorf("preflight allowed: Status %d, Access-Control-Allow-Origin %q", d.Status, acao)
			}
		case policy.KindPreflightRejected:
			if d.Status != 403 {
				t.Errorf("preflight rejected: Status %d", d.Status)
			}
			for _, h := range hs {
				if strings.HasPrefix(h.Name, "Access-Control-Allow-") {
					t.Errorf("preflight rejected with %s: %q", h.Name, h.Value)
				}
			}
		case policy.KindActualAllowed:
			if d.Status != 0 {
				t.Errorf("actual allowed: Status %d", d.Status)
			}
		case policy.KindActualDisallowed:
			if d.Status != 0 && d.Status != 403 {
				t.Errorf("actual disallowed: Status %d", d.Status)
			}
			if len(hs) != 1 || hs[0] != varyOrigin {
				t.Errorf("actual disallowed: headers %v, want only Vary: Origin", hs)
			}
		default:
			t.Errorf("Kind = %v", d.Kind)
		}

		if d.Kind == policy.KindActualAllowed || d.Kind == policy.KindPreflightAllowed {
			want := origin
			if d.Policy == "public" || d.Policy == "routed-partners" {
				want = "*"
			}
			// In a group another origin may get another policy's
			// answer, so every answer varies on Origin.
			if d.Group != "" && d.Kind == policy.KindActualAllowed && !slices.Contains(hs, varyOrigin) {
				t.Errorf("policy %q of group %q: headers %v, want Vary: Origin", d.Policy, d.Group, hs)
			}
			if acao != want {
				t.Errorf("policy %q allowed Origin %q with Access-Control-Allow-Origin %q", d.Policy, origin, acao)
			}
		}
		if origin == "" && !originPresent && d.Kind != policy.KindNotCORS {
			t.Errorf("no Origin, but %v", d.Kind)
		}
	})
}
