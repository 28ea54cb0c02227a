package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"testing"
	"time"

	th "github.com/corsauthz/corsauthz/internal/testharness"

	"go.uber.org/goleak"

	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// reloadConfig is a configuration whose one policy allows origin only.
func reloadConfig(origin string) string {
	return fmt.Sprintf(`policies:
  - name: api
    match:
      hosts: [api.example.com]
    allowed_origins: [%s]
    allowed_methods: [PUT]
`, origin)
}

// invalidReloadConfig has two problems, and would allow a third origin if
// any of it were ever used.
const invalidReloadConfig = `policies:
  - name: api
    match:
      hosts: [api.example.com]
    allowed_origins: [https://c.example.com, https://c.example.com/]
    allowed_methods: [PUT]
    max_age_seconds: -1
`

// preflightStatus asks the server for a PUT preflight from origin and
// returns the HTTP status it answers (204 or 403).
func preflightStatus(tb testing.TB, ts *th.Server, origin string) int {
	tb.Helper()
	resp, err := ts.Authz().Check(th.CtxTimeout(tb), th.CheckRequest("OPTIONS", "api.example.com", "/", th.Hdrs{
		"origin": origin, "access-control-request-method": "PUT",
	}, ""))
	if err != nil {
		tb.Fatalf("Check: %v", err)
	}
	return int(resp.GetDeniedResponse().GetStatus().GetCode())
}

func TestReload(t *testing.T) {
	t.Parallel()
	const source = "reload.yaml"
	a, b := reloadConfig("https://a.example.com"), reloadConfig("https://b.example.com")
	engineA, engineB := th.LoadEngine(t, a), th.LoadEngine(t, b)
	_, _, invalidErr := policy.Load(source, []byte(invalidReloadConfig))
	problems := policy.FieldErrors(invalidErr)
	if len(problems) != 2 {
		t.Fatalf("the invalid configuration has %d problems, want 2: %v", len(problems), invalidErr)
	}
	unreadable := &fs.PathError{Op: "open", Path: source, Err: fs.ErrPermission}

	var logs th.LogBuffer
	holder := policy.NewHolder(engineA)
	ts := th.StartServer(t, holder, server.Options{Logger: logs.Logger(slog.LevelInfo)})

	type metrics struct{ successes, failures, lastOK float64 }
	for _, step := range []struct {
		desc       string
		reload     func() error
		wantErr    error
		inForce    *policy.Engine
		allowed    string // the origin whose preflight gets 204; the others get 403
		metrics    metrics
		wantLogMsg string
	}{
		{
			desc:       "a valid new configuration is put in force",
			reload:     func() error { return ts.Srv.Reload(context.Background(), source, []byte(b)) },
			inForce:    engineB,
			allowed:    "https://b.example.com",
			metrics:    metrics{successes: 1, failures: 0, lastOK: 1},
			wantLogMsg: "configuration reloaded",
		},
		{
			desc:       "an invalid one changes nothing but the metrics",
			reload:     func() error { return ts.Srv.Reload(context.Background(), source, []byte(invalidReloadConfig)) },
			wantErr:    invalidErr,
			inForce:    engineB,
			allowed:    "https://b.example.com",
			metrics:    metrics{successes: 1, failures: 1, lastOK: 0},
			wantLogMsg: "configuration reload failed: keeping the configuration in force",
		},
		{
			desc:       "the content in force again is no reload, and no longer a failure",
			reload:     func() error { return ts.Srv.Reload(context.Background(), source, []byte(b)) },
			inForce:    engineB,
			allowed:    "https://b.example.com",
			metrics:    metrics{successes: 1, failures: 1, lastOK: 1},
			wantLogMsg: "configuration unchanged: nothing to reload",
		},
		{
			desc:       "an unreadable file is a failure",
			reload:     func() error { ts.Srv.ReloadFailed(context.Background(), source, unreadable); return nil },
			inForce:    engineB,
			allowed:    "https://b.example.com",
			metrics:    metrics{successes: 1, failures: 2, lastOK: 0},
			wantLogMsg: "configuration reload failed: keeping the configuration in force",
		},
		{
			desc:       "back to the first configuration",
			reload:     func() error { return ts.Srv.Reload(context.Background(), source, []byte(a)) },
			inForce:    engineA,
			allowed:    "https://a.example.com",
			metrics:    metrics{successes: 2, failures: 2, lastOK: 1},
			wantLogMsg: "configuration reloaded",
		},
	} {
		before := len(logs.Records(t))
		start := time.Now()
		err := step.reload()
		if !errors.Is(err, step.wantErr) && (err == nil || step.wantErr == nil || err.Error() != step.wantErr.Error()) {
			t.Errorf("%s: Reload = %v, want %v", step.desc, err, step.wantErr)
		}
		if got := holder.Load().Hash(); got != step.inForce.Hash() {
			t.Errorf("%s: hash in force %s, want %s", step.desc, got, step.inForce.Hash())
		}
		for _, origin := range []string{"https://a.example.com", "https://b.example.com", "https://c.example.com"} {
			want := 403
			if origin == step.allowed {
				want = 204
			}
			if got := preflightStatus(t, ts, origin); got != want {
				t.Errorf("%s: preflight from %s answered %d, want %d", step.desc, origin, got, want)
			}
		}
		_, body := ts.Get(t, "/metrics")
		got := metrics{
			successes: th.Metric(body, `corsauthz_config_reloads_total{result="success"}`),
			failures:  th.Metric(body, `corsauthz_config_reloads_total{result="failure"}`),
			lastOK:    th.Metric(body, `corsauthz_config_last_reload_successful`),
		}
		if got != step.metrics {
			t.Errorf("%s: metrics %+v, want %+v", step.desc, got, step.metrics)
		}
		if got := th.Metric(body, `corsauthz_config_info{hash="`+step.inForce.Hash()+`"}`); got != 1 {
			t.Errorf("%s: corsauthz_config_info of the hash in force = %v, want 1", step.desc, got)
		}
		ts := th.Metric(body, "corsauthz_config_last_reload_success_timestamp_seconds")
		if step.wantLogMsg == "configuration reloaded" && ts < float64(start.Unix()) {
			t.Errorf("%s: last success timestamp %v, before the reload at %v", step.desc, ts, start.Unix())
		}
		recs := logs.Records(t)[before:]
		if !slices.ContainsFunc(recs, func(rec map[string]any) bool { return rec["msg"] == step.wantLogMsg }) {
			t.Errorf("%s: log %v, want a line %q", step.desc, recs, step.wantLogMsg)
		}
	}

	// Every problem of the invalid configuration was logged as validate
	// prints it, and the unreadable file with its error.
	var got []string
	for _, rec := range logs.WithMsg(t, "invalid configuration") {
		got = append(got, rec["error"].(string))
	}
	var want []string
	for _, fe := range problems {
		want = append(want, fe.Error())
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems logged:\n%q\nwant:\n%q", got, want)
	}
	failed := logs.WithMsg(t, "configuration reload failed: keeping the configuration in force")
	sum := sha256.Sum256([]byte(invalidReloadConfig))
	if len(failed) != 2 ||
		failed[0]["problems"] != 2.0 || failed[0]["config_hash"] != engineB.Hash() || failed[0]["rejected_hash"] != hex.EncodeToString(sum[:]) ||
		failed[1]["problems"] != 1.0 || failed[1]["error"] != unreadable.Error() {
		t.Errorf("failure lines: %v", failed)
	}
}

// TestReloadUnderLoad swaps configurations while Checks run from many
// goroutines: every answer is one of the two configurations', and no
// call fails.
func TestReloadUnderLoad(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a, b := reloadConfig("https://a.example.com"), reloadConfig("https://b.example.com")
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, a)), server.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type tally struct{ a, b, bad int }
	results := make(chan tally)
	const workers = 8
	for range workers {
		go func() {
			var tl tally
			client := ts.Authz()
			req := th.CheckRequest("OPTIONS", "api.example.com", "/", th.Hdrs{
				"origin": "https://a.example.com", "access-control-request-method": "PUT",
			}, "")
			for ctx.Err() == nil {
				resp, err := client.Check(ctx, req)
				switch {
				case ctx.Err() != nil:
				case err != nil:
					tl.bad++
				case resp.GetDeniedResponse().GetStatus().GetCode() == 204:
					tl.a++
				case resp.GetDeniedResponse().GetStatus().GetCode() == 403:
					tl.b++
				default:
					tl.bad++
				}
			}
			results <- tl
		}()
	}
	const reloads = 200
	for i := range reloads {
		data := a
		if i%2 == 0 {
			data = b
		}
		if i%3 == 0 {
			data = invalidReloadConfig
		}
		_ = ts.Srv.Reload(ctx, "reload.yaml", []byte(data))
		time.Sleep(time.Millisecond)
	}
	cancel()
	var sum tally
	for range workers {
		tl := <-results
		sum.a, sum.b, sum.bad = sum.a+tl.a, sum.b+tl.b, sum.bad+tl.bad
	}
	t.Logf("%d reloads under load: %d answers from configuration a, %d from b, %d failed or other", reloads, sum.a, sum.b, sum.bad)
	if sum.bad != 0 || sum.a == 0 || sum.b == 0 {
		t.Errorf("answers: %+v; want some from each configuration and none other", sum)
	}
	ts.Conn.Close()
	<-ts.Shutdown()
}
