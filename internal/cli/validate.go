package cli

import "fmt"

func runValidate(args []string, io IO) int {
	fs := newFlagSet("validate", io)
	config := fs.String("config", "", "configuration file to check (required)")
	maxConfigBytes := maxConfigBytesFlag(fs)
	fs.Usage = func() {
		fmt.Fprint(io.Stderr, "Usage: corsauthz validate --config FILE\n\nChecks a configuration file: exit 0 when it is valid, 1 with every problem listed when it is not.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := applyEnv(fs, io.Env); err != nil {
		fmt.Fprintf(io.Stderr, "corsauthz validate: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(io.Stderr, "corsauthz validate: unexpected argument %q: give the file with --config\n", fs.Arg(0))
		return 2
	}
	if *config == "" {
		fmt.Fprintln(io.Stderr, "corsauthz validate: --config FILE is required")
		return 2
	}
	e, err := loadConfig(*config, *maxConfigBytes, io)
	if err != nil {
		printConfigError(io.Stderr, err)
		return 1
	}
	fmt.Fprintf(io.Stdout, "%s: valid (%d policies)\n", *config, len(e.PolicyNames()))
	return 0
}
