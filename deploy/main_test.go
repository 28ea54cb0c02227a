package deploy_test

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/corsauthz/corsauthz/internal/cli"
)

// serveEnv, set in the environment of a child process of this test
// binary, makes the child run `corsauthz serve` with its arguments
// instead of the tests: startCorsauthz runs a real corsauthz process (its
// own GOMEMLIMIT, signals and /metrics) without building cmd/corsauthz,
// whose main only wires cli.Main to the process as this does.
const serveEnv = "CORSAUTHZ_DEPLOY_TEST_SERVE"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		code := cli.Main(ctx, os.Args[1:], cli.IO{Stdout: os.Stdout, Stderr: os.Stderr, Env: os.LookupEnv})
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}
