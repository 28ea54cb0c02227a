package limits

import (
	"testing"
	"time"
)

func TestLogLimiter(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type call struct {
		at         time.Duration // since t0
		wantOK     bool
		wantReport int
	}
	for _, tc := range []struct {
		desc  string
		rate  float64
		calls []call
	}{
		{
			desc: "burst, then refused, the first refusal reported at once",
			rate: 2,
			calls: []call{
				{0, true, 0},
				{0, true, 0},
				{0, false, 1},
				{0, false, 0},
				{100 * time.Millisecond, false, 0},
			},
		},
		{
			desc: "tokens come back at the rate",
			rate: 2,
			calls: []call{
				{0, true, 0},
				{0, true, 0},
				{0, false, 1},
				{500 * time.Millisecond, true, 0}, // one token back
				{500 * time.Millisecond, false, 0},
				{time.Second, true, 1}, // a second after the first report: the count since
			},
		},
		{
			desc: "the bucket never holds more than the burst",
			rate: 1,
			calls: []call{
				{time.Hour, true, 0},
				{time.Hour, false, 1},
				{2 * time.Hour, true, 0},
				{2 * time.Hour, false, 1},
			},
		},
		{
			desc:  "no limit",
			rate:  0,
			calls: []call{{0, true, 0}, {0, true, 0}, {0, true, 0}},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			l := NewLogLimiter(tc.rate)
			for i, c := range tc.calls {
				ok, report := l.Allow(t0.Add(c.at))
				if ok != c.wantOK || report != c.wantReport {
					t.Errorf("call %d at +%v: allow = %v, %d; want %v, %d", i, c.at, ok, report, c.wantOK, c.wantReport)
				}
			}
		})
	}
}
