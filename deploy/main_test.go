package deploy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binDir holds the corsauthz binary the tests build, once.
var binDir string

// buildCorsauthz builds ./cmd/corsauthz once for every test that runs it
// and returns the binary's path.
var buildCorsauthz = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "corsauthz-deploy-test-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "corsauthz")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/corsauthz/corsauthz/cmd/corsauthz").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/corsauthz: %v\n%s", err, out)
	}
	return bin, nil
})
