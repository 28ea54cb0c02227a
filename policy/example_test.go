package policy_test

import (
	"errors"
	"fmt"

	"github.com/corsauthz/corsauthz/policy"
)

const exampleConfig = `
policies:
  - name: api
    match:
      hosts: [api.example.com]
    allowed_origins:
      - https://app.example.com
      - https://*.preview.example.com
    allowed_methods: [GET, POST, PUT, DELETE]
    allowed_headers: [Content-Type, Authorization]
    exposed_headers: [X-Request-Id]
    allow_credentials: true
    max_age_seconds: 600
`

// A preflight is answered directly: the gateway sends Status and the headers.
func Example() {
	engine, _, err := policy.Load("corsauthz.yaml", []byte(exampleConfig))
	if err != nil {
		fmt.Println(err)
		return
	}
	d, err := engine.Decide(&policy.Request{
		Method:         "OPTIONS",
		Host:           "api.example.com",
		Path:           "/v1/orders",
		Origin:         "https://app.example.com",
		RequestMethod:  "PUT",
		RequestHeaders: "authorization,content-type",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(d.Kind, d.Policy, d.Status, d.Direct())
	for _, h := range d.AppendHeaders(nil) {
		fmt.Printf("%s: %s\n", h.Name, h.Value)
	}
	// Output:
	// preflight_allowed api 204 true
	// Access-Control-Allow-Origin: https://app.example.com
	// Access-Control-Allow-Methods: PUT
	// Access-Control-Allow-Headers: authorization,content-type
	// Access-Control-Allow-Credentials: true
	// Access-Control-Max-Age: 600
	// Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers
}

// An actual request goes on upstream; the headers are added to the
// upstream's response, Vary appended to any it sets, the others replacing
// any it sets. A buffer of MaxHeaders makes this allocation-free.
func ExampleDecision_AppendHeaders() {
	engine, _, err := policy.Load("corsauthz.yaml", []byte(exampleConfig))
	if err != nil {
		fmt.Println(err)
		return
	}
	buf := make([]policy.Header, 0, policy.MaxHeaders)
	for _, origin := range []string{"https://pr-7.preview.example.com", "https://evil.example.net"} {
		d, err := engine.Decide(&policy.Request{Method: "GET", Host: "api.example.com", Path: "/v1/orders", Origin: origin})
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(origin, d.Kind, d.Direct())
		buf = d.AppendHeaders(buf[:0])
		for _, h := range buf {
			action := "set"
			if h.Append {
				action = "append"
			}
			fmt.Printf("  %s %s: %s\n", action, h.Name, h.Value)
		}
	}
	// Output:
	// https://pr-7.preview.example.com actual_allowed false
	//   set Access-Control-Allow-Origin: https://pr-7.preview.example.com
	//   set Access-Control-Allow-Credentials: true
	//   set Access-Control-Expose-Headers: X-Request-Id
	//   append Vary: Origin
	// https://evil.example.net actual_disallowed false
	//   append Vary: Origin
}

// Load reports every problem at once, each with its position, the field
// and what to write instead.
func ExampleLoad_errors() {
	_, _, err := policy.Load("corsauthz.yaml", []byte(`
policies:
  - name: api
    allowed_origins: ["*"]
    allow_credentials: true
    allowed_methods: [GET, TRACE]
    max_age_secs: 600
`))
	for _, fe := range policy.FieldErrors(err) {
		fmt.Println(fe)
	}
	// Output:
	// corsauthz.yaml:4:23: policies[0].allowed_origins[0]: allowed_origins "*" cannot be used with allow_credentials: browsers refuse "Access-Control-Allow-Origin: *" on credentialed requests, and allowing every origin with cookies would expose your users; list the origins exactly
	// corsauthz.yaml:6:28: policies[0].allowed_methods[1]: TRACE is a forbidden method: browsers never send it from scripts, and allowing it only helps attacks; remove it
	// corsauthz.yaml:7:5: policies[0].max_age_secs: unknown field "max_age_secs": did you mean "max_age_seconds"?
}

// Origins an operator writes differently from browsers are normalised, with
// a warning, so that they still match.
func ExampleLoad_warnings() {
	engine, warnings, err := policy.Load("corsauthz.yaml", []byte(`
policies:
  - name: api
    allowed_origins: [https://App.Example.com:443]
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, w := range warnings {
		fmt.Println("warning:", w)
	}
	fmt.Println(engine.Config().Policies[0].AllowedOrigins)
	// Output:
	// warning: corsauthz.yaml:4:23: policies[0].allowed_origins[0]: default port 443 removed: browsers leave it out of Origin; write "https://app.example.com"
	// warning: corsauthz.yaml:4:23: policies[0].allowed_origins[0]: host "App.Example.com" normalised to "app.example.com": browsers send host names in lower case; write "https://app.example.com"
	// [https://app.example.com]
}

// Origins are compared byte for byte with what browsers send, and a
// wildcard stands for one or more whole labels, never for the domain itself.
func ExampleEngine_Decide_origins() {
	engine, _, err := policy.Load("corsauthz.yaml", []byte(exampleConfig))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, origin := range []string{
		"https://app.example.com",
		"https://APP.example.com",
		"https://app.example.com:443",
		"https://a.b.preview.example.com",
		"https://preview.example.com",
		"https://evilpreview.example.com",
		"https://a.preview.example.com.evil.net",
		"http://a.preview.example.com",
	} {
		d, _ := engine.Decide(&policy.Request{Method: "GET", Policy: "api", Origin: origin})
		fmt.Printf("%-40s %v\n", origin, d.Kind)
	}
	// Output:
	// https://app.example.com                  actual_allowed
	// https://APP.example.com                  actual_disallowed
	// https://app.example.com:443              actual_disallowed
	// https://a.b.preview.example.com          actual_allowed
	// https://preview.example.com              actual_disallowed
	// https://evilpreview.example.com          actual_disallowed
	// https://a.preview.example.com.evil.net   actual_disallowed
	// http://a.preview.example.com             actual_disallowed
}

// A gateway that names a policy the configuration does not have gets an
// error, never a decision: the request must not be let through silently.
func ExampleErrUnknownPolicy() {
	engine, _, err := policy.Load("corsauthz.yaml", []byte(exampleConfig))
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = engine.Decide(&policy.Request{Method: "GET", Policy: "orders", Origin: "https://app.example.com"})
	fmt.Println(errors.Is(err, policy.ErrUnknownPolicy))
	fmt.Println(err)
	// Output:
	// true
	// policy "orders" is not configured (the gateway's cors_policy names a policy this configuration does not have)
}
