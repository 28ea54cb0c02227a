package cli

import "fmt"

var validateHelp = commandHelp{
	usage: "corsauthz validate --config FILE",
	description: `Checks a configuration file with the loader serve uses: exit 0 when it is
valid (warnings on stderr, each starting "warning:"), exit 1 when it is not,
with every problem on stderr, one a line, as FILE:LINE:COL: FIELD.PATH: message.`,
}

func runValidate(args []string, io IO) int {
	fs := newFlagSet("validate", io)
	config := fs.String("config", "", "configuration `FILE` to check (required)")
	maxConfigBytes := maxConfigBytesFlag(fs)
	positional, code, ok := parseFlags(fs, args, false, validateHelp, io)
	if !ok {
		return code
	}
	if err := applyEnv(fs, io.Env); err != nil {
		fmt.Fprintf(io.Stderr, "corsauthz validate: %v\n", err)
		return 2
	}
	if len(positional) > 0 {
		fmt.Fprintf(io.Stderr, "corsauthz validate: unexpected argument %q: give the file with --config\n", positional[0])
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
	fmt.Fprintf(io.Stdout, "%s: valid (%s)\n", *config, count(len(e.PolicyNames()), "policy", "policies"))
	return 0
}

// count says n things, in the singular or the plural.
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
