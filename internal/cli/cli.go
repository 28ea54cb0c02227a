// Package cli is the corsauthz command line: serve, validate, explain and
// import.
// It parses flags (each also read from a CORSAUTHZ_<FLAG> environment
// variable), loads configurations and prints results; the deciding is done
// by package policy and the serving by package server.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/corsauthz/corsauthz/deploy"
	"github.com/corsauthz/corsauthz/internal/configfile"
	"github.com/corsauthz/corsauthz/policy"
)

// Env looks up an environment variable; os.LookupEnv in production.
type Env func(name string) (string, bool)

// IO is what a command reads and writes.
type IO struct {
	Stdout, Stderr io.Writer
	Env            Env
	// TuneRuntime lets serve set the garbage collector's target and soft
	// memory limit (runtime.go): the corsauthz process does; tests, which
	// run many commands in one process, do not.
	TuneRuntime bool
}

const usage = `corsauthz: the CORS decision service for API gateways.

Usage:
  corsauthz serve    [--config FILE] [--grpc-addr ADDR] [--admin-addr ADDR]
  corsauthz validate --config FILE
  corsauthz explain  [--config FILE] [--policy NAME] [-X METHOD] [-H 'Name: value']... [--json] URL
  corsauthz import   --from FORMAT FILE...
  corsauthz version

Every flag can also be set with an environment variable CORSAUTHZ_<FLAG>,
such as CORSAUTHZ_CONFIG or CORSAUTHZ_GRPC_ADDR. Run 'corsauthz COMMAND -h'
for a command's flags.
`

// Main runs the command line args (without the program name) and returns
// the process exit code.
func Main(ctx context.Context, args []string, io IO) int {
	if len(args) == 0 {
		fmt.Fprint(io.Stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, io)
	case "validate":
		return runValidate(rest, io)
	case "explain":
		return runExplain(rest, io)
	case "import":
		return runImport(rest, io)
	case "version", "--version":
		fmt.Fprintln(io.Stdout, "corsauthz", Version())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(io.Stdout, usage)
		return 0
	default:
		fmt.Fprintf(io.Stderr, "corsauthz: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

// newFlagSet returns a flag set for a command that reports its own errors.
func newFlagSet(name string, io IO) *flag.FlagSet {
	fs := flag.NewFlagSet("corsauthz "+name, flag.ContinueOnError)
	fs.SetOutput(io.Stderr)
	return fs
}

// applyEnv sets each flag not given on the command line from its
// CORSAUTHZ_<FLAG> variable. It runs after parsing, so the command line wins.
func applyEnv(fs *flag.FlagSet, env Env) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || env == nil {
			return
		}
		name := EnvName(f.Name)
		if v, ok := env(name); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %v", name, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

// EnvName returns the environment variable that can set flag name.
func EnvName(flagName string) string {
	return "CORSAUTHZ_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseInterspersed parses flags that may come before or after the
// positional arguments, as curl users write them.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// loadConfig loads the file at path, a regular file of at most maxBytes
// (configfile.Read), or the built-in example when path is empty, and
// prints its warnings.
func loadConfig(path string, maxBytes int64, io IO) (*policy.Engine, error) {
	var (
		e        *policy.Engine
		warnings []*policy.FieldError
		err      error
	)
	if path == "" {
		e, warnings, err = policy.Load(deploy.ExampleConfigName, deploy.ExampleConfig)
	} else {
		var data []byte
		if data, err = configfile.Read(path, maxBytes); err != nil {
			return nil, err
		}
		e, warnings, err = policy.Load(path, data)
	}
	for _, w := range warnings {
		fmt.Fprintf(io.Stderr, "warning: %s\n", w)
	}
	return e, err
}

// maxConfigBytesFlag adds --max-config-bytes to fs.
func maxConfigBytesFlag(fs *flag.FlagSet) *int64 {
	return fs.Int64("max-config-bytes", policy.DefaultMaxConfigBytes, "largest configuration file read, in bytes; a larger one is refused (at start and on reload)")
}

// printConfigError prints a load error: every problem on its own line.
func printConfigError(w io.Writer, err error) {
	problems := policy.FieldErrors(err)
	if len(problems) == 0 {
		fmt.Fprintf(w, "corsauthz: %v\n", err)
		return
	}
	for _, fe := range problems {
		fmt.Fprintln(w, fe)
	}
}

func orExample(path string) string {
	if path == "" {
		return deploy.ExampleConfigName
	}
	return path
}
