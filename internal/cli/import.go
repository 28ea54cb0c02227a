package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/corsauthz/corsauthz/importer"
	"github.com/corsauthz/corsauthz/internal/configfile"
	"github.com/corsauthz/corsauthz/policy"
)

const importUsage = `Usage: corsauthz import --from FORMAT FILE...

Reads the CORS configuration a gateway already runs and prints the
corsauthz configuration that does the same on stdout; on stderr, one line
per finding, FILE:LINE:COL: KIND: message, KIND being unsafe (the source
allowed something unsafe), changed (corsauthz answers differently, and
how) or unsupported (cannot be expressed; what to do instead).

FORMAT is one of: istio (VirtualService corsPolicy, AuthorizationPolicy),
envoy (route and virtual host CorsPolicy), ingress-nginx (Ingress
annotations), gateway-api (HTTPRoute CORS filters), envoy-gateway
(SecurityPolicy cors). FILEs are YAML or JSON, one or more documents each,
as kubectl get -o yaml or the gateway's own configuration writes them.

Exit status: 0 when nothing is unsafe or unsupported, 1 otherwise (the
configuration is still printed), 2 when an input cannot be read or parsed.
The migration guide is docs/import.md.

`

func runImport(args []string, io IO) int {
	fs := newFlagSet("import", io)
	from := fs.String("from", "", "the format of the FILEs: "+formatNames())
	fs.Usage = func() {
		fmt.Fprint(io.Stderr, importUsage)
		fs.PrintDefaults()
	}
	files, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if err := applyEnv(fs, io.Env); err != nil {
		fmt.Fprintf(io.Stderr, "corsauthz import: %v\n", err)
		return 2
	}
	if *from == "" {
		fmt.Fprintf(io.Stderr, "corsauthz import: --from FORMAT is required: one of %s\n", formatNames())
		return 2
	}
	if len(files) == 0 {
		fmt.Fprintln(io.Stderr, "corsauthz import: give one or more files to import")
		return 2
	}
	var inputs []importer.Input
	for _, f := range files {
		data, err := configfile.Read(f, importer.MaxInputBytes)
		if err != nil {
			fmt.Fprintf(io.Stderr, "corsauthz import: %v\n", err)
			return 2
		}
		inputs = append(inputs, importer.Input{Name: f, Data: data})
	}
	res, err := importer.Import(importer.Format(*from), inputs)
	var pe *importer.ParseError
	switch {
	case errors.As(err, &pe):
		fmt.Fprintln(io.Stderr, pe)
		return 2
	case errors.Is(err, importer.ErrUnknownFormat):
		fmt.Fprintf(io.Stderr, "corsauthz import: --from: %v\n", err)
		return 2
	case err != nil:
		fmt.Fprintf(io.Stderr, "corsauthz import: %v\n", err)
		return 2
	}
	out := res.YAML()
	if len(res.Policies) > 0 {
		// The output must load as it is; a failure here is the importer's
		// bug, and nothing half-right is printed.
		if _, _, err := policy.Load("import", out); err != nil {
			fmt.Fprintf(io.Stderr, "corsauthz import: internal error: the imported configuration does not load:\n")
			printConfigError(io.Stderr, err)
			return 2
		}
	}
	io.Stdout.Write(out)
	for _, n := range res.Notes {
		fmt.Fprintln(io.Stderr, n)
	}
	for _, f := range res.Findings {
		fmt.Fprintln(io.Stderr, f)
	}
	if res.Failed() {
		return 1
	}
	return 0
}

func formatNames() string {
	var names []string
	for _, f := range importer.Formats() {
		names = append(names, string(f))
	}
	return strings.Join(names, ", ")
}
