// Package agreement holds only tests: the agreement tables that run the
// same requests through every front end (ext_authz Check on the fast and
// the typed path, the decision API, the HTTP authorization listener, the
// Go middleware in both modes) and require the same answer from each, so
// that a rule of the decision core is checked on every path at once.
package agreement
