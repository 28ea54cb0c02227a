package cli

import "runtime/debug"

// Version returns the module version the binary was built from, or
// "(devel)" for a build from a work tree.
func Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
