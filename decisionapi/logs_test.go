package decisionapi_test

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/corsauthz/corsauthz/decisionapi"
	th "github.com/corsauthz/corsauthz/internal/testharness"

	"github.com/corsauthz/corsauthz/policy"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
)

// TestDecideLogs: a Decide is logged as the same Check would be: rejected
// preflights and origins not allowed at info, everything at debug.
func TestDecideLogs(t *testing.T) {
	t.Parallel()
	holder := policy.NewHolder(th.LoadEngine(t, th.Config))
	for _, tc := range []struct {
		desc  string
		level slog.Level
		req   *corsauthzv1.DecideRequest
		want  string
	}{{
		desc:  "rejected preflight at info",
		level: slog.LevelInfo,
		req:   &corsauthzv1.DecideRequest{Method: "OPTIONS", Host: "api.example.com", Path: "/", Origin: th.App, AccessControlRequestMethod: "PATCH"},
		want:  `level=INFO msg="preflight rejected" front_end=decision_api policy=api kind=preflight_rejected reason=method_not_allowed detail=PATCH action=respond status=403 report_only=false origin=https://app.example.com method=OPTIONS host=api.example.com path=/` + "\n",
	}, {
		desc:  "origin not allowed at info",
		level: slog.LevelInfo,
		req:   &corsauthzv1.DecideRequest{Method: "GET", Host: "strict.example.com", Path: "/x?y=1", Origin: th.Evil, OmitReasons: true},
		want:  `level=INFO msg="origin not allowed" front_end=decision_api policy=strict kind=actual_disallowed reason=origin_not_allowed detail="" action=respond status=403 report_only=false origin=https://evil.example method=GET host=strict.example.com path=/x` + "\n",
	}, {
		desc:  "allowed: nothing at info",
		level: slog.LevelInfo,
		req:   &corsauthzv1.DecideRequest{Method: "GET", Host: "api.example.com", Path: "/", Origin: th.App},
		want:  "",
	}} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
				Level: tc.level,
				ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey && len(groups) == 0 {
						return slog.Attr{}
					}
					return a
				},
			}))
			if _, err := decisionapi.New(th.NewCore(t, holder, logger)).Decide(th.CtxTimeout(t), tc.req); err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != tc.want {
				t.Errorf("log:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}
