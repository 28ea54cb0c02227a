package corsauthzcaddy

import (
	"context"
	"encoding/json"
	"io"
	"net"
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
	_ "github.com/caddyserver/caddy/v2/modules/filestorage"            // TestExampleCaddyfile keeps its storage in a temporary directory
	"github.com/prometheus/client_golang/prometheus"

	"github.com/corsauthz/corsauthz/internal/docs"
	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
	"github.com/corsauthz/corsauthz/xdsconfig"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		desc    string
		input   string
		want    Handler
		wantErr []string // each in the one error
	}{
		{desc: "the documented directive", input: "corsauthz {\n address 127.0.0.1:9001\n mode local\n policy orders\n}",
			want: Handler{Address: "127.0.0.1:9001", Mode: "local", Policy: "orders"}},
		{desc: "remote with a timeout", input: "corsauthz {\n address corsauthz:9001\n mode remote\n timeout 100ms\n startup_wait 2s\n}",
			want: Handler{Address: "corsauthz:9001", Mode: "remote", Timeout: caddy.Duration(100 * time.Millisecond), StartupWait: caddy.Duration(2 * time.Second)}},
		{desc: "a larger configuration", input: "corsauthz {\n address 127.0.0.1:9001\n max_config_bytes 8388608\n}",
			want: Handler{Address: "127.0.0.1:9001", MaxConfigBytes: 8 << 20}},
		{desc: "max_config_bytes not a number", input: "corsauthz {\n address 127.0.0.1:9001\n max_config_bytes 8MiB\n}", wantErr: []string{`max_config_bytes "8MiB": write a positive number of bytes`}},
		{desc: "max_config_bytes zero", input: "corsauthz {\n address 127.0.0.1:9001\n max_config_bytes 0\n}", wantErr: []string{`max_config_bytes "0"`}},
		{desc: "an argument on the line", input: "corsauthz 127.0.0.1:9001", wantErr: []string{"takes no arguments"}},
		{desc: "unknown subdirective", input: "corsauthz {\n adress 127.0.0.1:9001\n}", wantErr: []string{`unknown subdirective "adress"`}},
		{desc: "missing value", input: "corsauthz {\n address\n}", wantErr: []string{"address needs a value"}},
		{desc: "two values", input: "corsauthz {\n address 127.0.0.1:9001\n mode local remote\n}", wantErr: []string{"mode takes one value, got 2"}},
		{desc: "given twice", input: "corsauthz {\n address 127.0.0.1:9001\n policy a\n policy b\n}", wantErr: []string{"policy given twice"}},
		{desc: "bad duration", input: "corsauthz {\n address 127.0.0.1:9001\n timeout soon\n}", wantErr: []string{`timeout "soon"`}},
		{desc: "no address", input: "corsauthz {\n mode local\n}", wantErr: []string{"address: required"}},
		{desc: "every problem at once, each at its line", input: "corsauthz extra {\n adress 127.0.0.1:9001\n address corsauthz\n mode cached\n policy Orders\n timeout -1s\n startup_wait\n mode local\n}",
			wantErr: []string{
				"takes no arguments",
				`unknown subdirective "adress"`,
				`address "corsauthz": write host:port`,
				`mode "cached": write local`,
				`policy "Orders": a policy name is`,
				"timeout -1s: must be positive",
				"startup_wait needs a value",
				"mode given twice",
				"Testfile:2", "Testfile:3", "Testfile:4", "Testfile:5", "Testfile:6", "Testfile:7", "Testfile:8",
			}},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error does not say %q:\n%v", w, err)
					}
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
		{desc: "a negative max_config_bytes", h: Handler{Address: "127.0.0.1:9001", MaxConfigBytes: -1}, want: []string{"max_config_bytes -1: must be positive"}},
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

// TestProvisionMaxConfigBytes: max_config_bytes reaches the xDS
// subscription. Under a limit smaller than corsauthz's configuration every
// version is refused and requests are answered 503; at the default the
// same configuration is in force.
func TestProvisionMaxConfigBytes(t *testing.T) {
	t.Parallel()
	srv := startCorsauthz(t, "test.yaml", []byte("policies:\n  - name: orders\n    allowed_origins: [https://app.example.com]\n"))
	for _, tt := range []struct {
		desc       string
		max        int64
		wantStatus int
	}{
		{desc: "a limit below the configuration's size", max: 16, wantStatus: http.StatusServiceUnavailable},
		{desc: "the default", max: 0, wantStatus: http.StatusNoContent},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			h := &Handler{Address: srv.GRPCAddr().String(), Policy: "orders", MaxConfigBytes: tt.max, StartupWait: caddy.Duration(500 * time.Millisecond)}
			cctx, cancelCtx := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancelCtx()
			if err := h.Provision(cctx); err != nil {
				t.Fatal(err)
			}
			defer h.Cleanup()
			r := httptest.NewRequest(http.MethodOptions, "http://api.example.com/", nil)
			r.Header.Set("Origin", "https://app.example.com")
			r.Header.Set("Access-Control-Request-Method", "GET")
			rec := httptest.NewRecorder()
			_ = h.ServeHTTP(rec, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
			if rec.Code != tt.wantStatus {
				t.Errorf("preflight answered %d, want %d", rec.Code, tt.wantStatus)
			}
		})
	}
}

// startCorsauthz serves config on loopback until the test ends.
func startCorsauthz(t *testing.T, name string, config []byte) *server.Server {
	t.Helper()
	e, _, err := policy.Load(name, config)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(policy.NewHolder(e), server.Options{GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", HTTPAddr: "", Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv
}

// TestProvisionRefusesUnconfiguredPolicy: a policy (or a name in a group)
// that corsauthz's configuration does not have fails provisioning, so
// caddy validate and caddy run say so, in both modes; when corsauthz
// cannot be asked, provisioning goes on (and logs it).
func TestProvisionRefusesUnconfiguredPolicy(t *testing.T) {
	t.Parallel()
	srv := startCorsauthz(t, "corsauthz.yaml", []byte("policies:\n  - name: orders\n    allowed_origins: [https://app.example.com]\n  - name: partners\n    allowed_origins: [https://partner.example.net]\n"))
	addr := srv.GRPCAddr().String()
	nobody := freeAddr(t)
	for _, tt := range []struct {
		desc    string
		h       Handler
		wantErr string // "" : provisioned
	}{
		{desc: "local, configured", h: Handler{Address: addr, Policy: "orders"}},
		{desc: "local, a configured group", h: Handler{Address: addr, Policy: "orders,partners"}},
		{desc: "local, not configured", h: Handler{Address: addr, Policy: "nope"},
			wantErr: `corsauthz: policy "nope": the configuration corsauthz at ` + addr + ` serves (` + xdsconfig.PublishedSource + `) has no policy "nope"; its policies: orders, partners. Name one of them, or add it to that configuration (every request here would be answered 503)`},
		{desc: "local, one name of a group not configured", h: Handler{Address: addr, Policy: "orders,nope,other"},
			wantErr: `has no policy "nope", "other"; its policies: orders, partners.`},
		{desc: "remote, configured", h: Handler{Address: addr, Mode: "remote", Policy: "partners"}},
		{desc: "remote, not configured", h: Handler{Address: addr, Mode: "remote", Policy: "nope"},
			wantErr: `corsauthz: policy "nope": the configuration corsauthz at ` + addr + ` serves (corsauthz.yaml) has no policy "nope"; its policies: orders, partners.`},
		{desc: "local, corsauthz away: provisioned, the check left to requests", h: Handler{Address: nobody, Policy: "nope", StartupWait: caddy.Duration(100 * time.Millisecond)}},
		{desc: "remote, corsauthz away: provisioned, the check left to requests", h: Handler{Address: nobody, Mode: "remote", Policy: "nope"}},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			cctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			h := tt.h
			err := h.Provision(cctx)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Provision: %v", err)
				}
				if err := h.Cleanup(); err != nil {
					t.Error(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Provision = %v, want an error containing %q", err, tt.wantErr)
			}
			if h.mw != nil {
				t.Error("a refused handler kept its middleware")
			}
		})
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// adaptExample adapts Caddyfile.example with the environment as it is.
func adaptExample(t *testing.T) []byte {
	t.Helper()
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
	return out
}

// TestExampleCaddyfile: the Caddyfile the docs point to adapts with its
// defaults to the corsauthz handler ahead of the proxy, listening on
// 127.0.0.1:8000 only, with no admin endpoint and no autosave; then, with
// its variables set to test ports, it runs: Caddy on 127.0.0.1 answers a
// preflight and an actual request with corsauthz's decision for the
// built-in example configuration, in both modes.
func TestExampleCaddyfile(t *testing.T) {
	// Not parallel: t.Setenv, and Caddy's running configuration is global.
	dir := t.TempDir()
	for _, v := range []string{"HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"} {
		t.Setenv(v, dir) // Caddy's instance ID, never in the user's directories
	}
	for _, v := range []string{"CADDY_PORT", "CORSAUTHZ_ADDR", "CORSAUTHZ_MODE", "API_ADDR"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}

	var cfg struct {
		Admin struct {
			Disabled bool `json:"disabled"`
			Config   struct {
				Persist *bool `json:"persist"`
			} `json:"config"`
		} `json:"admin"`
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen []string `json:"listen"`
					Routes []struct {
						Handle []json.RawMessage `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	data, err := os.ReadFile("Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	out := adaptExample(t)
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	if !cfg.Admin.Disabled || cfg.Admin.Config.Persist == nil || *cfg.Admin.Config.Persist {
		t.Errorf("admin %+v: want admin off and persist_config off", cfg.Admin)
	}
	var listen []string
	for _, srv := range cfg.Apps.HTTP.Servers {
		listen = append(listen, srv.Listen...)
	}
	if len(listen) != 1 || listen[0] != "127.0.0.1:8000" {
		t.Errorf("listens on %q, want only 127.0.0.1:8000", listen)
	}
	// The README shows the site block as it is in the file.
	if shown := docs.Example(t, "caddyfile"); !strings.Contains(string(data), shown.Text) {
		t.Errorf("%s is not Caddyfile.example's site block as it is:\n%s", shown, shown.Text)
	}
	i, j := strings.Index(string(out), `"handler":"corsauthz"`), strings.Index(string(out), `"handler":"reverse_proxy"`)
	if i < 0 || j < 0 || i > j || !strings.Contains(string(out), `"address":"127.0.0.1:9001"`) || !strings.Contains(string(out), `"policy":"api"`) {
		t.Errorf("Caddyfile.example adapts to\n%s\nwant corsauthz (127.0.0.1:9001, policy api) before reverse_proxy", out)
	}

	// Run it, with its variables pointing at test ports.
	example, err := os.ReadFile("../../deploy/corsauthz.yaml") // what the docs' corsauthz serve --config names
	if err != nil {
		t.Fatal(err)
	}
	srv := startCorsauthz(t, "deploy/corsauthz.yaml", example)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*") // the module replaces it
		w.Write([]byte("api " + r.Method + " " + r.URL.Path))
	}))
	t.Cleanup(api.Close)
	port := freeAddr(t)[len("127.0.0.1:"):]
	t.Setenv("CADDY_PORT", port)
	t.Setenv("CORSAUTHZ_ADDR", srv.GRPCAddr().String())
	t.Setenv("API_ADDR", api.Listener.Addr().String())
	base := "http://127.0.0.1:" + port
	for _, mode := range []string{"local", "remote"} {
		t.Run(mode, func(t *testing.T) {
			t.Setenv("CORSAUTHZ_MODE", mode)
			// Caddy's storage (certificate maintenance runs even without
			// certificates) in the test's directory, not the user's: Caddy
			// reads HOME once, at start.
			var run map[string]any
			if err := json.Unmarshal(adaptExample(t), &run); err != nil {
				t.Fatal(err)
			}
			run["storage"] = map[string]any{"module": "file_system", "root": dir}
			cfgJSON, err := json.Marshal(run)
			if err != nil {
				t.Fatal(err)
			}
			if err := caddy.Load(cfgJSON, true); err != nil {
				t.Fatalf("caddy.Load: %v", err)
			}
			defer caddy.Stop()
			do := func(method, origin string, headers ...string) (*http.Response, string) {
				t.Helper()
				req, _ := http.NewRequest(method, base+"/v1/orders", nil)
				req.Host = "api.example.com"
				req.Header.Set("Origin", origin)
				for i := 0; i+1 < len(headers); i += 2 {
					req.Header.Set(headers[i], headers[i+1])
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				return resp, string(body)
			}
			resp, _ := do("OPTIONS", "https://app.example.com", "Access-Control-Request-Method", "PUT")
			if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" || resp.Header.Get("Access-Control-Allow-Methods") != "PUT" {
				t.Errorf("preflight: %d %v, want 204 allowing PUT from the app", resp.StatusCode, resp.Header)
			}
			resp, body := do("GET", "https://app.example.com")
			if resp.StatusCode != http.StatusOK || body != "api GET /v1/orders" || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" || resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
				t.Errorf("actual request: %d %v %q, want the API's answer with the app's CORS headers", resp.StatusCode, resp.Header, body)
			}
			resp, _ = do("GET", "https://evil.example")
			if got := resp.Header.Values("Access-Control-Allow-Origin"); len(got) != 0 {
				t.Errorf("an origin not allowed got Access-Control-Allow-Origin %q (the API's own must not pass)", got)
			}
			// Only loopback: not on the machine's other addresses.
			for _, ip := range nonLoopbackIPs(t) {
				if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, port), time.Second); err == nil {
					c.Close()
					t.Errorf("Caddy answers on %s:%s: the example must bind 127.0.0.1 only", ip, port)
				}
			}
		})
	}
}

// nonLoopbackIPs are this machine's addresses other than loopback.
func nonLoopbackIPs(t *testing.T) []string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Logf("interface addresses: %v", err)
		return nil
	}
	var ips []string
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			ips = append(ips, n.IP.String())
		}
	}
	return ips
}
