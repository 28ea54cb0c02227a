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
	"regexp"
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
such as CORSAUTHZ_CONFIG or CORSAUTHZ_GRPC_ADDR. Run 'corsauthz COMMAND --help'
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
		fmt.Fprintln(io.Stdout, currentVersion().line())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(io.Stdout, usage)
		return 0
	default:
		fmt.Fprintf(io.Stderr, "corsauthz: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

// discard is io.Discard, for functions whose IO parameter hides package io.
var discard = io.Discard

// newFlagSet returns a flag set for a command that reports its own errors.
func newFlagSet(name string, io IO) *flag.FlagSet {
	fs := flag.NewFlagSet("corsauthz "+name, flag.ContinueOnError)
	fs.SetOutput(discard) // parseFlags says what went wrong, and prints the help
	fs.Usage = func() {}
	return fs
}

// commandHelp is what a command's --help prints above its flags.
type commandHelp struct {
	usage       string // the synopsis, after "Usage: "
	description string // what the command does, a paragraph or more
}

// parseFlags parses a command's flags, before and after its positional
// arguments when interspersed (as curl users write them). --help, -help
// or -h prints the help on stdout: exit 0. A flag that does not parse is
// said on stderr with the help: exit 2. ok is false in both cases, code
// then being the exit code.
func parseFlags(fs *flag.FlagSet, args []string, interspersed bool, help commandHelp, io IO) (positional []string, code int, ok bool) {
	var err error
	if interspersed {
		positional, err = parseInterspersed(fs, args)
	} else {
		err = fs.Parse(args)
		positional = fs.Args()
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		printHelp(io.Stdout, fs, help)
		return nil, 0, false
	case err != nil:
		fmt.Fprintf(io.Stderr, "%s: %s\n\n", fs.Name(), twoDashes(err.Error()))
		printHelp(io.Stderr, fs, help)
		return nil, 2, false
	}
	return positional, 0, true
}

// printHelp prints a command's help: its synopsis, what it does, and its
// flags as the README writes them (--name, or -X for curl's one-letter
// flags), each with its environment variable and default.
func printHelp(w io.Writer, fs *flag.FlagSet, help commandHelp) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\n\nFlags:\n", help.usage, strings.TrimSpace(help.description))
	fs.VisitAll(func(f *flag.Flag) {
		dashes := "--"
		if len(f.Name) == 1 {
			dashes = "-"
		}
		arg, usage := flag.UnquoteUsage(f)
		if arg != "" {
			arg = " " + arg
		}
		fmt.Fprintf(w, "  %s%s%s  [$%s]\n", dashes, f.Name, arg, EnvName(f.Name))
		if !isZeroDefault(f) {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "        %s\n", usage)
	})
}

// flagInMessage finds the flags the flag package names in its errors
// ("flag provided but not defined: -bogus").
var flagInMessage = regexp.MustCompile(`(^|[ :])-([a-z][a-z0-9-]+)`)

// twoDashes writes the long flags of a flag package error with two dashes,
// as the help and the README do.
func twoDashes(msg string) string {
	return flagInMessage.ReplaceAllString(msg, "$1--$2")
}

// isZeroDefault reports whether f's default is its type's zero value,
// which the help leaves out.
func isZeroDefault(f *flag.Flag) bool {
	switch f.DefValue {
	case "", "0", "0s", "false", "[]":
		return true
	}
	return false
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
	return fs.Int64("max-config-bytes", policy.DefaultMaxConfigBytes, "largest configuration file read, in `BYTES`; a larger one is refused (at start and on reload)")
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
