package cli

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestBuildVersion(t *testing.T) {
	t.Parallel()
	vcs := func(rev, time, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.time", Value: time}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "0123456789abcdef0123456789abcdef01234567"
	suffix := " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	for _, tt := range []struct {
		desc                 string
		ldVersion, ldRevison string
		bi                   *debug.BuildInfo
		wantShort, wantLine  string
	}{
		{
			desc:      "go build in a git clone (Go 1.24+: a pseudo-version)",
			bi:        &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261205130800-0123456789ab+dirty"}, Settings: vcs(rev, "2026-12-05T13:08:00Z", "true")},
			wantShort: "v0.0.0-20261205130800-0123456789ab+dirty",
			wantLine:  "corsauthz v0.0.0-20261205130800-0123456789ab+dirty (revision " + rev + ", 2026-12-05T13:08:00Z, modified)",
		},
		{
			desc:      "a tagged release installed with go install",
			bi:        &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}},
			wantShort: "v1.2.3",
			wantLine:  "corsauthz v1.2.3 (revision unknown:",
		},
		{
			desc:      "a work tree build with vcs information but no version",
			bi:        &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "2026-12-05T13:08:00Z", "false")},
			wantShort: "devel-0123456789ab",
			wantLine:  "corsauthz devel (revision " + rev + ", 2026-12-05T13:08:00Z)",
		},
		{
			desc:      "go run: nothing recorded",
			bi:        &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			wantShort: "devel",
			wantLine:  "corsauthz devel (revision unknown: built without version control information",
		},
		{
			desc:      "the Dockerfile's -ldflags -X",
			ldVersion: "v1.2.3", ldRevison: rev,
			bi:        &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			wantShort: "v1.2.3",
			wantLine:  "corsauthz v1.2.3 (revision " + rev + ")" + suffix,
		},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			v := readBuildVersion(tt.ldVersion, tt.ldRevison, tt.bi)
			if got := v.short(); got != tt.wantShort {
				t.Errorf("short() = %q, want %q", got, tt.wantShort)
			}
			line := v.line()
			if !strings.HasPrefix(line, tt.wantLine) || !strings.HasSuffix(line, suffix) {
				t.Errorf("line() = %q, want it to start %q and end %q", line, tt.wantLine, suffix)
			}
			if strings.Contains(line, "(devel)") {
				t.Errorf("line() = %q says a bare (devel)", line)
			}
		})
	}
}
