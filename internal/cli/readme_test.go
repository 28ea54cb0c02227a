package cli_test

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEGroupExample: the README's "app with cookies, partners
// without" configuration is testdata/groups.yaml, byte for byte, and the
// explain output it shows is what explain prints for it.
func TestREADMEGroupExample(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	i := strings.Index(section, "### One path, several policies")
	if i < 0 {
		t.Fatal("README has no section on groups")
	}
	section = section[i:]
	block := func(fence string) string {
		j := strings.Index(section, fence)
		if j < 0 {
			t.Fatalf("no %s block in the README's section on groups", fence)
		}
		rest := section[j+len(fence):]
		k := strings.Index(rest, "```")
		section = rest[k+3:]
		return rest[:k]
	}
	yaml, console := block("```yaml\n"), block("```console\n")
	want, err := os.ReadFile("testdata/groups.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if yaml != string(want) {
		t.Errorf("the README's configuration differs from testdata/groups.yaml:\n%s", yaml)
	}
	cmd, output, _ := strings.Cut(console, "\n")
	args := strings.Fields(strings.TrimPrefix(cmd, "$ corsauthz "))
	for i, a := range args {
		a = strings.Trim(a, "'")
		if a == "groups.yaml" {
			a = "testdata/groups.yaml"
		}
		args[i] = a
	}
	// -H 'Origin: https://...' was split at the space: join it again.
	var joined []string
	for i := 0; i < len(args); i++ {
		if args[i] == "-H" && i+2 < len(args) {
			joined = append(joined, "-H", args[i+1]+" "+args[i+2])
			i += 2
			continue
		}
		joined = append(joined, args[i])
	}
	got := run(t, nil, joined...)
	if got.code != 0 || got.stdout != output {
		t.Errorf("explain %q: exit %d, output:\n%s\nthe README shows:\n%s", joined, got.code, got.stdout, output)
	}
}
