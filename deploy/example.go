// Package deploy holds the example configuration and the deployment files
// (Envoy, Istio, Kubernetes, Docker) that refer to it.
package deploy

import _ "embed"

// ExampleConfig is corsauthz.yaml: the configuration `corsauthz serve` runs
// when no --config is given, and the one every file under deploy/ refers to.
//
//go:embed corsauthz.yaml
var ExampleConfig []byte

// ExampleConfigName is the name errors and logs give ExampleConfig.
const ExampleConfigName = "deploy/corsauthz.yaml (built-in example)"
