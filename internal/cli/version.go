package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set at link time by builds without version control information, such as
// the Dockerfile's (the build context has no .git):
//
//	go build -ldflags "-X github.com/corsauthz/corsauthz/internal/cli.version=v1.2.3 -X github.com/corsauthz/corsauthz/internal/cli.revision=$(git rev-parse HEAD)" ./cmd/corsauthz
var version, revision string

// buildVersion is what a binary knows of where it comes from.
type buildVersion struct {
	version  string // v1.2.3, a pseudo-version, or "" for a work tree build
	revision string // the commit, or ""
	time     string // the commit's time, or ""
	modified bool   // built from a work tree with uncommitted changes
}

// readBuildVersion combines the link-time values with the build
// information the go command records (module version; with -buildvcs,
// the default for go build and go install in a git checkout, the commit,
// its time and whether the tree was modified).
func readBuildVersion(ldVersion, ldRevision string, bi *debug.BuildInfo) buildVersion {
	v := buildVersion{version: ldVersion, revision: ldRevision}
	if bi == nil {
		return v
	}
	if v.version == "" && bi.Main.Version != "(devel)" {
		v.version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if v.revision == "" {
				v.revision = s.Value
			}
		case "vcs.time":
			v.time = s.Value
		case "vcs.modified":
			v.modified = s.Value == "true"
		}
	}
	return v
}

// short is the version for logs and the corsauthz_build_info metric:
// the module version, else "devel" with the commit when it is known, so
// that it never reads a bare "(devel)".
func (v buildVersion) short() string {
	switch {
	case v.version != "":
		return v.version
	case v.revision != "":
		s := "devel-" + shortRevision(v.revision)
		if v.modified {
			s += "-modified"
		}
		return s
	}
	return "devel"
}

// line is what `corsauthz version` prints.
func (v buildVersion) line() string {
	var b strings.Builder
	b.WriteString("corsauthz ")
	if v.version != "" {
		b.WriteString(v.version)
	} else {
		b.WriteString("devel")
	}
	if v.revision == "" {
		b.WriteString(" (revision unknown: built without version control information, as by go run, with -buildvcs=false or outside a git clone;" +
			" go build in a git clone records it, or set -ldflags \"-X github.com/corsauthz/corsauthz/internal/cli.revision=COMMIT\")")
	} else {
		details := []string{"revision " + v.revision}
		if v.time != "" {
			details = append(details, v.time)
		}
		if v.modified {
			details = append(details, "modified")
		}
		b.WriteString(" (" + strings.Join(details, ", ") + ")")
	}
	fmt.Fprintf(&b, " %s %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return b.String()
}

func shortRevision(r string) string {
	if len(r) > 12 {
		return r[:12]
	}
	return r
}

// currentVersion is this binary's buildVersion.
func currentVersion() buildVersion {
	bi, _ := debug.ReadBuildInfo()
	return readBuildVersion(version, revision, bi)
}

// Version returns the version this binary was built as: the module
// version or the one set at link time, else "devel" with the commit when
// it is known ("devel-0123456789ab"), else "devel".
func Version() string { return currentVersion().short() }
