package corsauthzcaddy

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy" // for the Caddyfile
	"github.com/prometheus/client_golang/prometheus"

	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		desc    string
		input   string
		want    Handler
		wantErr string
	}{
		{desc: "the contract's directive", input: "corsauthz {\n address 127.0.0.1:9001\n mode local\n policy orders\n}",
			want: Handler{Address: "127.0.0.1:9001", Mode: "local", Policy: "orders"}},
		{desc: "remote with a timeout", input: "corsauthz {\n address corsauthz:9001\n mode remote\n timeout 100ms\n startup_wait 2s\n}",
			want: Handler{Address: "corsauthz:9001", Mode: "remote", Timeout: caddy.Duration(100 * time.Millisecond), StartupWait: caddy.Duration(2 * time.Second)}},
		{desc: "an argument on the line", input: "corsauthz 127.0.0.1:9001", wantErr: "takes no arguments"},
		{desc: "unknown subdirective", input: "corsauthz {\n adress 127.0.0.1:9001\n}", wantErr: `unknown subdirective "adress"`},
		{desc: "missing value", input: "corsauthz {\n address\n}", wantErr: "address needs a value"},
		{desc: "two values", input: "corsauthz {\n mode local remote\n}", wantErr: "mode takes one value"},
		{desc: "given twice", input: "corsauthz {\n policy a\n policy b\n}", wantErr: "policy given twice"},
		{desc: "bad duration", input: "corsauthz {\n timeout soon\n}", wantErr: `timeout "soon"`},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h != tt.want {
				t.Errorf("got %+v, want %+v", h, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		desc string
		h    Handler
		want []string // each must appear in the one error
	}{
		{desc: "valid", h: Handler{Address: "127.0.0.1:9001"}},
		{desc: "a group of policies", h: Handler{Address: "127.0.0.1:9001", Policy: "shared-app,shared-partners"}},
		{desc: "an empty name in a group", h: Handler{Address: "127.0.0.1:9001", Policy: "app,"}, want: []string{`policy "app,"`}},
		{desc: "no address", h: Handler{}, want: []string{"address: required"}},
		{desc: "address without a port", h: Handler{Address: "corsauthz"}, want: []string{`address "corsauthz": write host:port`}},
		{desc: "port out of range", h: Handler{Address: "127.0.0.1:70000"}, want: []string{"write host:port"}},
		{desc: "every problem at once", h: Handler{Address: ":9001", Mode: "cached", Policy: "Orders", Timeout: -1},
			want: []string{`address ":9001"`, `mode "cached": write local`, `policy "Orders"`, "timeout"}},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			err := tt.h.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("valid, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestCaddyfileAdapts: the directive is registered, ordered before the
// proxy, and adapts to the handler's JSON.
func TestCaddyfileAdapts(t *testing.T) {
	t.Parallel()
	input := ":8080 {\n\treverse_proxy 127.0.0.1:9\n\tcorsauthz {\n\t\taddress 127.0.0.1:9001\n\t\tpolicy orders\n\t}\n}\n"
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
	if err != nil {
		t.Fatalf("adapt: %v (warnings %v)", err, warnings)
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []json.RawMessage `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	var handlers []string
	for _, srv := range cfg.Apps.HTTP.Servers {
		for _, rt := range srv.Routes {
			for _, h := range rt.Handle {
				handlers = append(handlers, string(h))
			}
		}
	}
	joined := strings.Join(handlers, "\n")
	want := `{"address":"127.0.0.1:9001","handler":"corsauthz","policy":"orders"}`
	if len(handlers) != 2 || handlers[0] != want || !strings.Contains(handlers[1], `"handler":"reverse_proxy"`) {
		t.Errorf("handlers:\n%s\nwant corsauthz (%s) first, then reverse_proxy", joined, want)
	}
}

// TestProvisionServeCleanup: provisioned against a running corsauthz, the
// handler decides with its policies and Cleanup ends the stream.
func TestProvisionServeCleanup(t *testing.T) {
	t.Parallel()
	e, _, err := policy.Load("test.yaml", []byte("policies:\n  - name: orders\n    allowed_origins: [https://app.example.com]\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(policy.NewHolder(e), server.Options{GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	for _, mode := range []string{"local", "remote"} {
		h := &Handler{Address: srv.GRPCAddr().String(), Mode: mode, Policy: "orders"}
		cctx, cancelCtx := caddy.NewContext(caddy.Context{Context: context.Background()})
		if err := h.Provision(cctx); err != nil {
			t.Fatalf("%s: Provision: %v", mode, err)
		}
		r := httptest.NewRequest(http.MethodGet, "http://api.example.com/", nil)
		r.Header.Set("Origin", "https://app.example.com")
		rec := httptest.NewRecorder()
		next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
			w.Header().Set("Access-Control-Allow-Origin", "*")
			return caddyhttp.Error(http.StatusTeapot, nil)
		})
		err := h.ServeHTTP(rec, r, next)
		if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "https://app.example.com" {
			t.Errorf("%s: Access-Control-Allow-Origin %q", mode, got)
		}
		if herr, ok := err.(caddyhttp.HandlerError); !ok || herr.StatusCode != http.StatusTeapot {
			t.Errorf("%s: ServeHTTP = %v, want next's error", mode, err)
		}
		if err := h.Cleanup(); err != nil {
			t.Errorf("%s: Cleanup: %v", mode, err)
		}
		cancelCtx()
	}

	bad := &Handler{Address: "nowhere", Mode: "remote"}
	cctx, cancelCtx := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancelCtx()
	if err := bad.Provision(cctx); err == nil || !strings.Contains(err.Error(), `address "nowhere"`) {
		t.Errorf("Provision with a bad address = %v, want a clear error", err)
	}
}

// TestExampleCaddyfile: the Caddyfile the README points to adapts, with
// the corsauthz handler ahead of the proxy.
func TestExampleCaddyfile(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(data, nil)
	if err != nil {
		t.Fatalf("adapt Caddyfile.example: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("Caddyfile.example: %s", w.Message) // "input is not formatted": run caddy fmt --overwrite
	}
	i, j := strings.Index(string(out), `"handler":"corsauthz"`), strings.Index(string(out), `"handler":"reverse_proxy"`)
	if i < 0 || j < 0 || i > j || !strings.Contains(string(out), `"policy":"api"`) {
		t.Errorf("Caddyfile.example adapts to\n%s\nwant corsauthz (policy api) before reverse_proxy", out)
	}
}
