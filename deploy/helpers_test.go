package deploy_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	kjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/corsauthz/corsauthz/deploy"
)

// serveArgs is the command line every deployment gives the image's
// ENTRYPOINT (/corsauthz): the Dockerfile's CMD, the compose service and the
// Kubernetes Deployment must agree on it.
var serveArgs = []string{
	"serve",
	"--config", "/etc/corsauthz/corsauthz.yaml",
	"--grpc-addr", "0.0.0.0:9001",
	"--admin-addr", "0.0.0.0:9002",
	"--http-addr", "0.0.0.0:9003",
}

const (
	grpcPort      = 9001
	adminPort     = 9002
	authzHTTPPort = 9003 // HTTP authorization (NGINX auth_request, Envoy's http_service)
	// configPath is where every deployment puts the policy file.
	configPath = "/etc/corsauthz/corsauthz.yaml"
)

// examplePolicy is the part of a policy in deploy/corsauthz.yaml that the
// deployment files refer to. The policy package owns the real type; this
// minimal one keeps these tests independent of it.
type examplePolicy struct {
	Name  string `yaml:"name"`
	Match struct {
		Hosts        []string `yaml:"hosts"`
		PathPrefixes []string `yaml:"path_prefixes"`
	} `yaml:"match"`
}

// examplePolicies returns the policies of deploy/corsauthz.yaml by name.
func examplePolicies(t *testing.T) map[string]examplePolicy {
	t.Helper()
	var cfg struct {
		Policies []examplePolicy `yaml:"policies"`
	}
	if err := yaml.Unmarshal(deploy.ExampleConfig, &cfg); err != nil {
		t.Fatalf("parse deploy/corsauthz.yaml: %v", err)
	}
	byName := make(map[string]examplePolicy, len(cfg.Policies))
	for _, p := range cfg.Policies {
		byName[p.Name] = p
	}
	for _, want := range []string{"api", "public", "files"} {
		if _, ok := byName[want]; !ok {
			t.Fatalf("deploy/corsauthz.yaml has no policy %q; the deployment examples refer to it", want)
		}
	}
	return byName
}

// exampleHosts returns every host named in a match rule of deploy/corsauthz.yaml.
func exampleHosts(t *testing.T) map[string]bool {
	t.Helper()
	hosts := make(map[string]bool)
	for _, p := range examplePolicies(t) {
		for _, h := range p.Match.Hosts {
			hosts[h] = true
		}
	}
	return hosts
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.FromSlash(path))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// strictProtoYAML decodes a YAML document into m the way Envoy and istiod
// read their configuration: YAML is turned into JSON (duplicate keys are
// errors) and decoded with protojson, where unknown fields are errors and
// every google.protobuf.Any must name a registered type.
func strictProtoYAML(data []byte, m proto.Message) error {
	js, err := sigsyaml.YAMLToJSONStrict(data)
	if err != nil {
		return fmt.Errorf("yaml to json: %w", err)
	}
	return strictProtoJSON(js, m)
}

func strictProtoJSON(js []byte, m proto.Message) error {
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, m); err != nil {
		return fmt.Errorf("decode %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}

// decodeStrictJSON decodes js into v the way the Kubernetes API server does
// with strict field validation: field names match case-sensitively (unlike
// encoding/json), and unknown or duplicate fields are errors.
func decodeStrictJSON(js []byte, v any) error {
	strictErrs, err := kjson.UnmarshalStrict(js, v)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

// validator is what protoc-gen-validate generates for every Envoy message.
type validator interface {
	ValidateAll() error
}

// validateDeep runs m's ValidateAll, then unpacks every Any below m
// (recursively: an Any inside an unpacked Any too), validates each unpacked
// message and returns them in the order met. protoc-gen-validate does not
// look inside an Any, so without this an HttpConnectionManager or ExtAuthz
// with a broken field would pass.
func validateDeep(m proto.Message) ([]proto.Message, error) {
	var (
		unpacked []proto.Message
		errs     []error
	)
	var visit func(name string, m proto.Message)
	visit = func(name string, m proto.Message) {
		if v, ok := m.(validator); ok {
			if err := v.ValidateAll(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
		var anys []*anypb.Any
		collectAnys(m.ProtoReflect(), &anys)
		for _, a := range anys {
			inner, err := a.UnmarshalNew()
			if err != nil {
				errs = append(errs, fmt.Errorf("unpack %s: %w", a.GetTypeUrl(), err))
				continue
			}
			unpacked = append(unpacked, inner)
			visit(string(inner.ProtoReflect().Descriptor().FullName()), inner)
		}
	}
	visit(string(m.ProtoReflect().Descriptor().FullName()), m)
	return unpacked, errors.Join(errs...)
}

// collectAnys appends every Any set in m (not descending into the Anys).
func collectAnys(m protoreflect.Message, out *[]*anypb.Any) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		*out = append(*out, a)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					collectAnys(mv.Message(), out)
					return true
				})
			}
		case fd.IsList():
			if fd.Message() != nil {
				for i := range v.List().Len() {
					collectAnys(v.List().Get(i).Message(), out)
				}
			}
		case fd.Message() != nil:
			collectAnys(v.Message(), out)
		}
		return true
	})
}

// ofType returns the messages of type T among msgs.
func ofType[T proto.Message](msgs []proto.Message) []T {
	var out []T
	for _, m := range msgs {
		if t, ok := m.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// splitHostPort splits "host:port" where the port is all digits.
func splitHostPort(s string) (host, port string, ok bool) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}
