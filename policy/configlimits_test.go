package policy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/corsauthz/corsauthz/internal/childproc"
	"github.com/corsauthz/corsauthz/internal/racedetector"
	"github.com/corsauthz/corsauthz/policy"
)

// Hostile configurations: before these limits nothing capped
// a configuration's size or its YAML alias expansion: a 35 KB file of
// 1,000 aliased policies of 1,000 origins took 389 MB and 2.7 s to refuse.

// aliasedPolicies is a file of policies each naming, by alias, one list of
// origins: tiny, but policies × origins once expanded.
func aliasedPolicies(policies, origins int) string {
	var b strings.Builder
	b.WriteString("x-origins: &o\n")
	for i := range origins {
		fmt.Fprintf(&b, "  - https://o%d.example.com\n", i)
	}
	b.WriteString("policies:\n")
	for i := range policies {
		fmt.Fprintf(&b, "  - {name: p%d, allowed_origins: *o}\n", i)
	}
	return b.String()
}

// billionLaughs nests aliases ten deep, ten wide: 10^10 nodes expanded.
func billionLaughs() string {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [", i, i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]\n")
	}
	b.WriteString("policies: *a10\n")
	return b.String()
}

// manyPolicies is a valid file of n policies of one origin each.
func manyPolicies(n int) string {
	var b strings.Builder
	b.WriteString("policies:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: p%d\n    allowed_origins: [https://o%d.example.com]\n", i, i)
	}
	return b.String()
}

// manyOrigins is a valid file of one policy of n origins.
func manyOrigins(n int) string {
	var b strings.Builder
	b.WriteString("policies:\n  - name: big\n    allowed_origins:\n")
	for i := range n {
		fmt.Fprintf(&b, "      - https://o%d.example.com\n", i)
	}
	return b.String()
}

var hostileConfigs = []struct {
	desc, data string
	wantErr    string // "" when the file is valid
}{
	{desc: "1,000 aliased policies of 1,000 origins", data: aliasedPolicies(1000, 1000), wantErr: "policy.MaxYAMLNodes"},
	{desc: "200 aliased policies of 1,000 origins", data: aliasedPolicies(200, 1000), wantErr: "policy.MaxOrigins"},
	{desc: "billion laughs", data: billionLaughs(), wantErr: "too many YAML nodes once aliases are expanded"},
	{desc: "alias inside itself", data: "policies: &a [*a]\n", wantErr: "once aliases are expanded"},
	{desc: "1,001 policies", data: manyPolicies(1001), wantErr: "too many policies: 1001, more than the limit of 1000 (policy.MaxPolicies)"},
	{desc: "1,000 policies", data: manyPolicies(1000)},
	{desc: "50,000 origins", data: manyOrigins(50_000)},
	{desc: "50,001 origins", data: manyOrigins(50_001), wantErr: "policy.MaxOrigins"},
	{desc: "4 MiB flow list", data: "[" + strings.Repeat("a,", 2<<20-1) + "]", wantErr: "policy.MaxYAMLNodes"},
	{desc: "4 MiB block list", data: strings.Repeat("- a\n", 1<<20), wantErr: "policy.MaxYAMLNodes"},
	{desc: "4 MiB mapping", data: strings.Repeat("a: \n", 1<<20), wantErr: "policy.MaxYAMLNodes"},
	{desc: "largest flow list the estimate lets through", data: "x: [" + strings.Repeat("a,", policy.MaxYAMLNodes/2-5) + "]\npolicies: []\n", wantErr: "no policies"},
	{desc: "largest block list the estimate lets through", data: "x:\n" + strings.Repeat("- a\n", policy.MaxYAMLNodes-10) + "policies: []\n", wantErr: "no policies"},
}

// TestConfigLimits: each hostile file is refused with a message naming the
// limit it passed, at a position; files at the limits load.
func TestConfigLimits(t *testing.T) {
	t.Parallel()
	for _, tc := range hostileConfigs {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			_, _, err := policy.Load("hostile.yaml", []byte(tc.data))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Load: %.500v", err)
			case tc.wantErr == "":
				return
			case err == nil:
				t.Fatalf("Load accepted the file, want an error containing %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Load: %.500v\nwant an error containing %q", err, tc.wantErr)
			}
			if len(err.Error()) > 4096 {
				t.Errorf("the error is %d bytes long", len(err.Error()))
			}
			for _, fe := range policy.FieldErrors(err) {
				if fe.Line == 0 {
					t.Errorf("problem without a position: %v", fe)
				}
			}
		})
	}
}

// memoryBound is the bound on loading any configuration
// (docs/operations-and-limits.md, "Limits").
const memoryBound = 256 << 20

// TestLoadMemoryBound loads each hostile file in a child process of its
// own, with a soft memory limit (GOMEMLIMIT) at the bound, and checks the
// child's peak resident memory (VmHWM) stays under the bound.
func TestLoadMemoryBound(t *testing.T) {
	if file := os.Getenv("CORSAUTHZ_LOAD_CHILD"); file != "" {
		t.Skip("in the child")
	}
	if testing.Short() {
		t.Skip("-short: child processes")
	}
	racedetector.SkipMemoryMeasure(t)
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for i, tc := range hostileConfigs {
		t.Run(tc.desc, func(t *testing.T) {
			path := fmt.Sprintf("%s/%d.yaml", dir, i)
			if err := os.WriteFile(path, []byte(tc.data), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(exe, "-test.run=^TestLoadMemoryChild$", "-test.v")
			cmd.Env = append(os.Environ(), "CORSAUTHZ_LOAD_CHILD="+path, "GOMEMLIMIT="+strconv.Itoa(memoryBound))
			out, err := childproc.CombinedOutput(t, cmd)
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			peak := -1
			sc := bufio.NewScanner(bytes.NewReader(out))
			for sc.Scan() {
				if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "configlimits_test.go:"); ok {
					if _, kb, ok := strings.Cut(v, "peak_rss_kib="); ok {
						peak, _ = strconv.Atoi(strings.Fields(kb)[0])
					}
				}
			}
			if peak < 0 {
				t.Fatalf("no peak in the child's output:\n%s", out)
			}
			t.Logf("%d bytes: peak RSS %d MiB", len(tc.data), peak>>10)
			if peak<<10 >= memoryBound {
				t.Errorf("loading took a peak of %d MiB, want under %d MiB", peak>>10, memoryBound>>20)
			}
		})
	}
}

// TestLoadMemoryChild is TestLoadMemoryBound's child: it loads the file
// and prints its peak resident memory.
func TestLoadMemoryChild(t *testing.T) {
	file := os.Getenv("CORSAUTHZ_LOAD_CHILD")
	if file == "" {
		t.Skip("run by TestLoadMemoryBound")
	}
	_, _, err := policy.LoadFile(file)
	status, rerr := os.ReadFile("/proc/self/status")
	if rerr != nil {
		t.Fatal(rerr)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			t.Logf("peak_rss_kib=%s refused=%v", strings.TrimSuffix(strings.TrimSpace(v), " kB"), err != nil)
		}
	}
}

// FuzzLoadAliases loads files with anchors and aliases in every place a
// configuration has values: Load must refuse or accept them, never panic,
// and stay within the limits.
func FuzzLoadAliases(f *testing.F) {
	for _, tc := range hostileConfigs {
		if len(tc.data) < 4<<10 {
			f.Add([]byte(tc.data))
		}
	}
	f.Add([]byte(aliasedPolicies(3, 3)))
	f.Add([]byte("o: &o [https://a.example]\nm: &m {hosts: [a.example]}\npolicies:\n  - &p {name: a, match: *m, allowed_origins: *o}\n  - *p\n"))
	f.Add([]byte("policies:\n  - name: &n a\n    allowed_origins: [&x https://a.example, *x]\n    allowed_methods: [&m PUT, *m]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, _, err := policy.Load("fuzz.yaml", data)
		if err == nil && e == nil {
			t.Fatal("no engine and no error")
		}
		if err == nil {
			origins := 0
			for _, p := range e.Config().Policies {
				origins += len(p.AllowedOrigins)
			}
			if len(e.PolicyNames()) > policy.MaxPolicies || origins > policy.MaxOrigins {
				t.Fatalf("accepted %d policies and %d origins", len(e.PolicyNames()), origins)
			}
		}
	})
}

// TestFileValuesCut: a value from the file reaches a problem's message cut
// (before, in full: a 100 KB origin made a 100 KB message).
func TestFileValuesCut(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 100_000)
	for _, tc := range []struct{ desc, data string }{
		{desc: "invalid origin", data: "policies:\n  - name: api\n    allowed_origins: [\"https://" + long + "/\"]\n"},
		{desc: "invalid name", data: "policies:\n  - name: " + long + "\n    allowed_origins: [https://a.example]\n"},
		{desc: "unknown field", data: "policies:\n  - name: api\n    allowed_origins: [https://a.example]\n    " + strings.Repeat("k", 1000) + ": 1\n"},
		{desc: "wrong type", data: "policies:\n  - name: api\n    allowed_origins: [https://a.example]\n    allow_credentials: \"" + long + "\"\n"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			_, _, err := policy.Load("c.yaml", []byte(tc.data))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, fe := range policy.FieldErrors(err) {
				if n := len(fe.Error()); n > 1024 {
					t.Errorf("a problem's message is %d bytes: %.300s", n, fe.Error())
				}
				if !strings.Contains(fe.Error(), "…[cut: ") {
					t.Errorf("the message does not say the value was cut: %.300s", fe.Error())
				}
			}
		})
	}
}
