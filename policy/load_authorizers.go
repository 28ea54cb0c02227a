package policy

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

var (
	authorizerFields     = []string{"name", "http", "grpc", "on_error", "static_headers"}
	httpAuthorizerFields = []string{"url", "forward_path", "headers", "upstream_headers", "timeout"}
	grpcAuthorizerFields = []string{"address", "timeout", "tls"}
	tlsClientFields      = []string{"ca_file", "cert_file", "key_file", "server_name"}
	staticHeaderFields   = []string{"name", "value_from", "value"}
	valueSourceFields    = []string{"env", "file"}
)

// authorizers reads the authorizers list (docs/authorizers.md).
func (p *parser) authorizers(n *yaml.Node, path string, cfg *Config) {
	if n.Kind != yaml.SequenceNode {
		if isNull(n) {
			return
		}
		p.errorf(n, path, "authorizers must be a list of authorizers (each item starting with \"- name: ...\")")
		return
	}
	for i, item := range n.Content {
		item = resolve(item)
		ip := fmt.Sprintf("%s[%d]", path, i)
		p.pos[ip] = position{item.Line, item.Column}
		var a Authorizer
		p.mapping(item, ip, authorizerFields, func(key string, v *yaml.Node, fp string) {
			switch key {
			case "name":
				a.Name, _ = p.str(v, fp)
			case "on_error":
				a.OnError, _ = p.str(v, fp)
			case "static_headers":
				a.StaticHeaders = p.staticHeaders(v, fp)
			case "http":
				a.HTTP = &HTTPAuthorizer{}
				p.mapping(v, fp, httpAuthorizerFields, func(key string, v *yaml.Node, hp string) {
					switch key {
					case "url":
						a.HTTP.URL, _ = p.str(v, hp)
					case "forward_path":
						a.HTTP.ForwardPath = p.boolean(v, hp)
					case "headers":
						a.HTTP.Headers = p.strList(v, hp)
					case "upstream_headers":
						a.HTTP.UpstreamHeaders = p.strList(v, hp)
					case "timeout":
						a.HTTP.Timeout = p.duration(v, hp)
					}
				})
			case "grpc":
				a.GRPC = &GRPCAuthorizer{}
				p.mapping(v, fp, grpcAuthorizerFields, func(key string, v *yaml.Node, gp string) {
					switch key {
					case "address":
						a.GRPC.Address, _ = p.str(v, gp)
					case "timeout":
						a.GRPC.Timeout = p.duration(v, gp)
					case "tls":
						// Present, even empty (tls: {}), means TLS: a
						// half-written tls: block never dials in plain text.
						a.GRPC.TLS = &TLSClient{}
						p.mapping(v, gp, tlsClientFields, func(key string, v *yaml.Node, tp string) {
							var s string
							s, _ = p.str(v, tp)
							switch key {
							case "ca_file":
								a.GRPC.TLS.CAFile = s
							case "cert_file":
								a.GRPC.TLS.CertFile = s
							case "key_file":
								a.GRPC.TLS.KeyFile = s
							case "server_name":
								a.GRPC.TLS.ServerName = s
							}
						})
					}
				})
			}
		})
		cfg.Authorizers = append(cfg.Authorizers, a)
	}
}

// staticHeaders reads an authorizer's static_headers: a list of
// {name, value_from: {env | file}}. A value written in the file is
// refused: credentials are not configuration text.
func (p *parser) staticHeaders(n *yaml.Node, path string) []StaticHeader {
	if n.Kind != yaml.SequenceNode {
		if isNull(n) {
			return nil
		}
		p.errorf(n, path, "static_headers must be a list of {name: ..., value_from: {env: VARIABLE}} or {name: ..., value_from: {file: /path}}")
		return nil
	}
	out := make([]StaticHeader, 0, len(n.Content))
	for i, item := range n.Content {
		item = resolve(item)
		ip := fmt.Sprintf("%s[%d]", path, i)
		p.pos[ip] = position{item.Line, item.Column}
		var h StaticHeader
		p.mapping(item, ip, staticHeaderFields, func(key string, v *yaml.Node, fp string) {
			switch key {
			case "name":
				h.Name, _ = p.str(v, fp)
			case "value":
				p.bad = append(p.bad, ip+".value_from") // the one problem, said once
				p.errorf(v, fp, "a credential's value is never written in the configuration (it would be logged and published to gateways): write value_from: {env: VARIABLE} or value_from: {file: /path/to/secret}")
			case "value_from":
				p.mapping(v, fp, valueSourceFields, func(key string, v *yaml.Node, vp string) {
					switch key {
					case "env":
						h.ValueFrom.Env, _ = p.str(v, vp)
					case "file":
						h.ValueFrom.File, _ = p.str(v, vp)
					}
				})
			}
		})
		out = append(out, h)
	}
	return out
}

// duration reads a Go duration such as "250ms" or "1s". A problem is
// reported here, so the compiler's "timeout is required" is not repeated.
func (p *parser) duration(n *yaml.Node, path string) time.Duration {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		p.errorf(n, path, "must be a duration such as \"250ms\" or \"1s\", not %s", describe(n))
		return 0
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		p.errorf(n, path, "%q is not a duration: write a number with a unit, such as \"250ms\" or \"1s\"", n.Value)
		return 0
	}
	return d
}

// The YAML form of the authorizers, as the file writes them: what
// Authorizer.MarshalYAML writes, so that a configuration serialized by Go
// (the canonical form published to gateways) reads back with Load. A
// static header is written as where its value is read; the value is never
// in a Config to be written.
type (
	authorizerYAML struct {
		Name          string              `yaml:"name"`
		HTTP          *httpAuthorizerYAML `yaml:"http,omitempty"`
		GRPC          *grpcAuthorizerYAML `yaml:"grpc,omitempty"`
		OnError       string              `yaml:"on_error,omitempty"`
		StaticHeaders []staticHeaderYAML  `yaml:"static_headers,omitempty"`
	}
	httpAuthorizerYAML struct {
		URL             string   `yaml:"url"`
		ForwardPath     bool     `yaml:"forward_path,omitempty"`
		Headers         []string `yaml:"headers,omitempty"`
		UpstreamHeaders []string `yaml:"upstream_headers,omitempty"`
		Timeout         string   `yaml:"timeout"`
	}
	grpcAuthorizerYAML struct {
		Address string         `yaml:"address"`
		Timeout string         `yaml:"timeout"`
		TLS     *tlsClientYAML `yaml:"tls,omitempty"`
	}
	tlsClientYAML struct {
		CAFile     string `yaml:"ca_file,omitempty"`
		CertFile   string `yaml:"cert_file,omitempty"`
		KeyFile    string `yaml:"key_file,omitempty"`
		ServerName string `yaml:"server_name,omitempty"`
	}
	staticHeaderYAML struct {
		Name      string          `yaml:"name"`
		ValueFrom valueSourceYAML `yaml:"value_from"`
	}
	valueSourceYAML struct {
		Env  string `yaml:"env,omitempty"`
		File string `yaml:"file,omitempty"`
	}
)

// MarshalYAML writes a as an item of the file's authorizers list, which
// Load reads back to an equal Authorizer.
func (a Authorizer) MarshalYAML() (any, error) {
	out := authorizerYAML{Name: a.Name, OnError: a.OnError}
	if a.HTTP != nil {
		out.HTTP = &httpAuthorizerYAML{
			URL: a.HTTP.URL, ForwardPath: a.HTTP.ForwardPath,
			Headers: a.HTTP.Headers, UpstreamHeaders: a.HTTP.UpstreamHeaders,
			Timeout: a.HTTP.Timeout.String(),
		}
	}
	if a.GRPC != nil {
		out.GRPC = &grpcAuthorizerYAML{Address: a.GRPC.Address, Timeout: a.GRPC.Timeout.String()}
		if t := a.GRPC.TLS; t != nil {
			out.GRPC.TLS = &tlsClientYAML{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName}
		}
	}
	for _, h := range a.StaticHeaders {
		out.StaticHeaders = append(out.StaticHeaders, staticHeaderYAML{Name: h.Name, ValueFrom: valueSourceYAML{Env: h.ValueFrom.Env, File: h.ValueFrom.File}})
	}
	return out, nil
}
