package extauthz

import (
	"context"
	"testing"

	"github.com/corsauthz/corsauthz/decision"
	"github.com/corsauthz/corsauthz/policy"
)

// TestFixedAnswersDoNotAllocate: once answered, a request without Origin
// (and every other answer that depends only on its policy) is answered
// with the shared, pre-encoded answer of its policy, without allocating.
func TestFixedAnswersDoNotAllocate(t *testing.T) {
	e, _, err := policy.Load("test.yaml", []byte(`
policies:
  - name: api
    match:
      hosts: [api.example.com]
    allowed_origins: [https://app.example.com]
    allow_credentials: true
  - name: open
    match:
      hosts: [open.example.com]
    allowed_origins: ["*"]
    exposed_headers: [X-Total]
`))
	if err != nil {
		t.Fatal(err)
	}
	holder := policy.NewHolder(e)
	a := New(decision.New(holder, decision.Options{}))
	ctx := context.Background()
	for _, tc := range []struct {
		desc string
		r    policy.Request
	}{
		{"no Origin, Vary: Origin", policy.Request{Method: "GET", Host: "api.example.com", Path: "/"}},
		{"no Origin, *", policy.Request{Method: "GET", Host: "open.example.com", Path: "/"}},
		{"actual, *", policy.Request{Method: "GET", Host: "open.example.com", Path: "/", Origin: "https://a.example"}},
		{"origin not allowed", policy.Request{Method: "GET", Host: "api.example.com", Path: "/", Origin: "https://evil.example"}},
	} {
		in := &wireCheck{r: tc.r}
		first, err := a.checkWire(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		allocs := testing.AllocsPerRun(100, func() {
			again, _ := a.checkWire(ctx, in)
			if again != first {
				t.Fatalf("%s: a new answer, not the shared one", tc.desc)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per answer, want 0", tc.desc, allocs)
		}
	}

	// A reload brings its own answers: the same policy name may answer
	// differently.
	e2, _, err := policy.Load("test.yaml", []byte(`
policies:
  - name: open
    match:
      hosts: [open.example.com]
    allowed_origins: ["*"]
`))
	if err != nil {
		t.Fatal(err)
	}
	holder.Store(e2)
	got, err := a.checkWire(ctx, &wireCheck{r: policy.Request{Method: "GET", Host: "open.example.com", Path: "/"}})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := e2.Decide(&policy.Request{Method: "GET", Host: "open.example.com", Path: "/"})
	if want := encodeDecision(&d); string(got.(*wireResponse).bytes()) != string(want.bytes()) {
		t.Errorf("after a reload: answer %x, want %x", got.(*wireResponse).bytes(), want.bytes())
	}
}
