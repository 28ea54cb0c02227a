package policy

import (
	"go.yaml.in/yaml/v3"
)

// Canonical is the configuration in force written back as YAML in one
// canonical form: the keys of the configuration file in a fixed order,
// normalised values, no comments, no file path. It is what corsauthz
// publishes to gateways over xDS, so that a gateway compiles exactly what
// the service decides with and learns nothing of the file beyond it.
// Authorizer credentials are never part of it: a static header names
// where its value comes from (an environment variable or a file, resolved
// where the call is made), never the value. Load(name, e.Canonical())
// compiles to the same configuration.
func (e *Engine) Canonical() ([]byte, error) {
	return yaml.Marshal(canonicalConfig(e.Config()))
}

// The canonical form's YAML shapes: the file's keys, in the order the
// documentation writes them, empty values left out.
type (
	yamlConfig struct {
		Authorizers   []Authorizer `yaml:"authorizers,omitempty"` // Authorizer.MarshalYAML
		Policies      []yamlPolicy `yaml:"policies"`
		DefaultPolicy string       `yaml:"default_policy,omitempty"`
	}
	yamlPolicy struct {
		Name                    string     `yaml:"name"`
		Match                   *yamlMatch `yaml:"match,omitempty"`
		AllowedOrigins          []string   `yaml:"allowed_origins"`
		AllowedMethods          []string   `yaml:"allowed_methods,omitempty"`
		AllowedHeaders          []string   `yaml:"allowed_headers,omitempty"`
		ExposedHeaders          []string   `yaml:"exposed_headers,omitempty"`
		AllowCredentials        bool       `yaml:"allow_credentials,omitempty"`
		MaxAgeInSeconds         int        `yaml:"max_age_seconds,omitempty"`
		AllowPrivateNetwork     bool       `yaml:"allow_private_network,omitempty"`
		RejectDisallowedOrigins bool       `yaml:"reject_disallowed_origins,omitempty"`
		ReportOnly              bool       `yaml:"report_only,omitempty"`
		Authorizer              string     `yaml:"authorizer,omitempty"`
	}
	yamlMatch struct {
		Hosts        []string `yaml:"hosts,omitempty"`
		PathPrefixes []string `yaml:"path_prefixes,omitempty"`
	}
)

func canonicalConfig(cfg Config) yamlConfig {
	out := yamlConfig{DefaultPolicy: cfg.DefaultPolicy, Policies: make([]yamlPolicy, 0, len(cfg.Policies))}
	for _, p := range cfg.Policies {
		yp := yamlPolicy{
			Name:                    p.Name,
			AllowedOrigins:          p.AllowedOrigins,
			AllowedMethods:          p.AllowedMethods,
			AllowedHeaders:          p.AllowedHeaders,
			ExposedHeaders:          p.ExposedHeaders,
			AllowCredentials:        p.AllowCredentials,
			MaxAgeInSeconds:         p.MaxAgeInSeconds,
			AllowPrivateNetwork:     p.AllowPrivateNetwork,
			RejectDisallowedOrigins: p.RejectDisallowedOrigins,
			ReportOnly:              p.ReportOnly,
			Authorizer:              p.Authorizer,
		}
		if len(p.Match.Hosts) > 0 || len(p.Match.PathPrefixes) > 0 {
			yp.Match = &yamlMatch{Hosts: p.Match.Hosts, PathPrefixes: p.Match.PathPrefixes}
		}
		out.Policies = append(out.Policies, yp)
	}
	out.Authorizers = cfg.Authorizers
	return out
}
