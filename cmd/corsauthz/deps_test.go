package main_test

import (
	"os/exec"
	"strings"
	"testing"
)

// notLinked are module paths whose packages must stay out of the corsauthz
// binary: their init functions (the Kubernetes scheme, klog, Istio's
// protobuf registry) run in every process and cost about 7 MiB of memory
// at start (docs/performance.md, "Memory at the caps"). The importer reads
// those objects into structs of its own; only its tests link the upstream
// types. go-control-plane's xDS server, cache and resource packages link
// every Envoy resource type (clusters, listeners, the HTTP connection
// manager…, about 3 MB of binary and 1.5 MiB resident); the xDS publisher
// serves its one type on the generated discovery types instead, and the
// importer reads Envoy's route configuration into structs of its own (the
// route and CORS filter types cost about 2 MiB resident).
var notLinked = []string{"k8s.io/", "sigs.k8s.io/gateway-api", "istio.io/",
	"github.com/envoyproxy/go-control-plane/pkg/server/",
	"github.com/envoyproxy/go-control-plane/pkg/cache/",
	"github.com/envoyproxy/go-control-plane/pkg/resource/",
	"github.com/envoyproxy/go-control-plane/envoy/config/cluster/",
	"github.com/envoyproxy/go-control-plane/envoy/config/listener/",
	"github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/",
	"github.com/envoyproxy/go-control-plane/envoy/config/route/",
	"github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/",
}

func TestLinkedPackages(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	pkgs := strings.Fields(string(out))
	if len(pkgs) < 100 {
		t.Fatalf("go list -deps listed %d packages", len(pkgs))
	}
	for _, p := range pkgs {
		for _, bad := range notLinked {
			if strings.HasPrefix(p, bad) {
				t.Errorf("corsauthz links %s", p)
			}
		}
	}
}
