package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const composePath = "compose/compose.yaml"

// composeFile is the part of a Compose file these tests read.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image string `yaml:"image"`
	Build struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Command []string `yaml:"command"`
	Volumes []string `yaml:"volumes"`
	Ports   []string `yaml:"ports"`
}

// mount is a bind mount "SOURCE:TARGET[:MODE]", SOURCE relative to the
// compose file as Compose resolves it, but relative to deploy/ here.
type mount struct{ source, target string }

func (s composeService) mounts() []mount {
	var out []mount
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			continue
		}
		out = append(out, mount{
			source: filepath.ToSlash(filepath.Join(filepath.Dir(composePath), parts[0])),
			target: parts[1],
		})
	}
	return out
}

// publishes reports whether the service publishes containerPort on the host.
func (s composeService) publishes(containerPort int) bool {
	for _, p := range s.Ports {
		if _, c, ok := splitHostPort(p); ok && c == strconv.Itoa(containerPort) {
			return true
		}
	}
	return false
}

// flagValue returns the value after flag in args, or "".
func flagValue(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	var c composeFile
	if err := yaml.Unmarshal(readFile(t, composePath), &c); err != nil {
		t.Fatalf("%s: %v", composePath, err)
	}
	return c
}

// TestComposeMatchesEnvoy checks that every cluster of envoy.yaml points at
// a compose service, on the port that service listens on, and that the files
// each container reads are the ones in deploy/.
func TestComposeMatchesEnvoy(t *testing.T) {
	t.Parallel()
	c := loadCompose(t)
	envoyCfg := loadEnvoyConfig(t)

	// The port each service listens on, from its command line.
	listenPort := func(name string, s composeService) string {
		switch name {
		case "corsauthz":
			_, port, _ := splitHostPort(flagValue(s.Command, "--grpc-addr"))
			return port
		case "upstream":
			_, port, _ := splitHostPort(flagValue(s.Command, "-listen"))
			return port
		}
		return ""
	}
	for _, cl := range envoyCfg.bootstrap.GetStaticResources().GetClusters() {
		for _, a := range socketAddresses(cl) {
			s, ok := c.Services[a.GetAddress()]
			if !ok {
				t.Errorf("envoy cluster %q sends to %q, which is no compose service", cl.GetName(), a.GetAddress())
				continue
			}
			if got, want := listenPort(a.GetAddress(), s), strconv.Itoa(int(a.GetPortValue())); got != want {
				t.Errorf("envoy cluster %q sends to port %s, service %q listens on %q", cl.GetName(), want, a.GetAddress(), got)
			}
		}
	}

	envoy, ok := c.Services["envoy"]
	if !ok {
		t.Fatal("no envoy service")
	}
	envoyConfigIn := flagValue(envoy.Command, "-c")
	if !slices.Contains(envoy.mounts(), mount{source: envoyPath, target: envoyConfigIn}) {
		t.Errorf("envoy runs -c %q, but %s is not mounted there (mounts %v)", envoyConfigIn, envoyPath, envoy.mounts())
	}
	for _, l := range envoyCfg.bootstrap.GetStaticResources().GetListeners() {
		if port := int(l.GetAddress().GetSocketAddress().GetPortValue()); !envoy.publishes(port) {
			t.Errorf("envoy listener port %d is not published (ports %v)", port, envoy.Ports)
		}
	}

	ca, ok := c.Services["corsauthz"]
	if !ok {
		t.Fatal("no corsauthz service")
	}
	if !slices.Equal(ca.Command, serveArgs) {
		t.Errorf("corsauthz command = %q, want %q", ca.Command, serveArgs)
	}
	if !slices.Contains(ca.mounts(), mount{source: "corsauthz.yaml", target: flagValue(ca.Command, "--config")}) {
		t.Errorf("corsauthz reads %q, but deploy/corsauthz.yaml is not mounted there (mounts %v)", flagValue(ca.Command, "--config"), ca.mounts())
	}
	dockerfile := filepath.Join(filepath.Dir(composePath), ca.Build.Context, ca.Build.Dockerfile)
	if filepath.Clean(dockerfile) != filepath.Join("..", "Dockerfile") {
		t.Errorf("corsauthz builds from %s, want the repository's Dockerfile", dockerfile)
	}
	if _, err := os.Stat(dockerfile); err != nil {
		t.Error(err)
	}
}

// dockerfileStage is the last stage of a Dockerfile: the image that runs.
type dockerfileStage struct {
	from       string
	user       string
	expose     []string
	entrypoint []string
	cmd        []string
}

// parseFinalStage reads the instructions of a Dockerfile's last stage,
// joining continuation lines. Exec-form (JSON) ENTRYPOINT and CMD only.
func parseFinalStage(t *testing.T, data []byte) (dockerfileStage, string) {
	t.Helper()
	var (
		stage   dockerfileStage
		all     strings.Builder
		pending string
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		if l, ok := strings.CutSuffix(line, "\\"); ok {
			pending += l + " "
			continue
		}
		line, pending = pending+line, ""
		all.WriteString(line + "\n")
		instr, args, _ := strings.Cut(line, " ")
		args = strings.TrimSpace(args)
		switch strings.ToUpper(instr) {
		case "FROM":
			stage = dockerfileStage{from: args}
		case "USER":
			stage.user = args
		case "EXPOSE":
			stage.expose = append(stage.expose, strings.Fields(args)...)
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(args), &stage.entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT is not in exec form: %v", err)
			}
		case "CMD":
			if err := json.Unmarshal([]byte(args), &stage.cmd); err != nil {
				t.Fatalf("CMD is not in exec form: %v", err)
			}
		}
	}
	return stage, all.String()
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	stage, all := parseFinalStage(t, readFile(t, "../Dockerfile"))
	if !strings.HasPrefix(stage.from, "gcr.io/distroless/static") || !strings.HasSuffix(stage.from, ":nonroot") {
		t.Errorf("final stage FROM %s, want gcr.io/distroless/static…:nonroot", stage.from)
	}
	if u, _, _ := strings.Cut(stage.user, ":"); u != "65532" {
		t.Errorf("USER %q, want 65532 (numeric, so runAsNonRoot can check it)", stage.user)
	}
	for _, p := range []int{grpcPort, adminPort, authzHTTPPort} {
		if !slices.Contains(stage.expose, strconv.Itoa(p)) {
			t.Errorf("EXPOSE %v lacks %d", stage.expose, p)
		}
	}
	if !slices.Equal(stage.entrypoint, []string{"/corsauthz"}) {
		t.Errorf("ENTRYPOINT %q, want [/corsauthz]", stage.entrypoint)
	}
	if !slices.Equal(stage.cmd, serveArgs) {
		t.Errorf("CMD %q, want %q", stage.cmd, serveArgs)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w `, "./cmd/corsauthz", "COPY deploy/corsauthz.yaml " + configPath,
		// The version: the build context has no .git, so -X sets it (internal/cli).
		"-X github.com/corsauthz/corsauthz/internal/cli.version=${VERSION}", "-X github.com/corsauthz/corsauthz/internal/cli.revision=${REVISION}"} {
		if !strings.Contains(all, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}

	// .dockerignore must keep what the build reads.
	for _, line := range strings.Split(string(readFile(t, "../.dockerignore")), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "!") {
			continue
		}
		for _, needed := range []string{"go.mod", "go.sum", "cmd/corsauthz/main.go", "deploy/corsauthz.yaml", "deploy/example.go"} {
			if ok, _ := filepath.Match(strings.TrimPrefix(line, "/"), needed); ok || strings.HasPrefix(needed, strings.TrimSuffix(strings.TrimPrefix(line, "/"), "/")+"/") {
				t.Errorf(".dockerignore line %q excludes %s, which the build needs", line, needed)
			}
		}
	}
}
