// Command corsauthz is the CORS decision service for API gateways.
//
// See the README for the commands; this file only wires the process
// (arguments, environment, signals) to package cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/corsauthz/corsauthz/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := cli.Main(ctx, os.Args[1:], cli.IO{Stdout: os.Stdout, Stderr: os.Stderr, Env: os.LookupEnv, TuneRuntime: true})
	stop()
	os.Exit(code)
}
