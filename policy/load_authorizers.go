package policy

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

var (
	authorizerFields     = []string{"name", "http", "grpc", "on_error"}
	httpAuthorizerFields = []string{"url", "forward_path", "headers", "upstream_headers", "timeout"}
	grpcAuthorizerFields = []string{"address", "timeout"}
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
					}
				})
			}
		})
		cfg.Authorizers = append(cfg.Authorizers, a)
	}
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
