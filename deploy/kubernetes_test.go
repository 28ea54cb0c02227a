package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/corsauthz/corsauthz/deploy"
)

const kustomizeDir = "kubernetes"

// k8sObjects is the output of `kustomize build deploy/kubernetes` or of
// `helm template deploy/helm/corsauthz`, each object decoded strictly into
// its Go type.
type k8sObjects struct {
	namespaces      []*corev1.Namespace
	serviceAccounts []*corev1.ServiceAccount
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	configMaps      []*corev1.ConfigMap
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	pdbs            []*policyv1.PodDisruptionBudget
	networkPolicies []*networkingv1.NetworkPolicy
	serviceMonitors []*monitoringv1.ServiceMonitor
	prometheusRules []*monitoringv1.PrometheusRule
	// namespaceOf holds every namespaced object's namespace, by "Kind/name".
	namespaceOf map[string]string
	// all holds every object, by "Kind/name", in the order met.
	all []k8sObject
}

// k8sObject is one decoded object.
type k8sObject struct {
	key string // Kind/name
	obj any    // the typed object, e.g. *appsv1.Deployment
}

// buildKustomization runs kustomize once for all the tests.
var buildKustomization = sync.OnceValues(func() (*k8sObjects, error) {
	return buildObjects(filesys.MakeFsOnDisk(), kustomizeDir)
})

// buildObjects runs `kustomize build dir` and decodes every object strictly.
func buildObjects(fs filesys.FileSystem, dir string) (*k8sObjects, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resources, err := k.Run(fs, dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	objs := newK8sObjects()
	for _, r := range resources.Resources() {
		js, err := r.MarshalJSON()
		if err != nil {
			return nil, err
		}
		if err := objs.add(js); err != nil {
			return nil, err
		}
	}
	return objs, nil
}

func newK8sObjects() *k8sObjects {
	return &k8sObjects{namespaceOf: make(map[string]string)}
}

// add decodes the object js strictly into the Go type of its kind.
func (objs *k8sObjects) add(js []byte) error {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return err
	}
	apiVersion, kind, name := head.APIVersion, head.Kind, head.Metadata.Name
	var target any
	switch gvk := apiVersion + " " + kind; gvk {
	case "v1 Namespace":
		target = appendNew(&objs.namespaces)
	case "v1 ServiceAccount":
		target = appendNew(&objs.serviceAccounts)
	case "apps/v1 Deployment":
		target = appendNew(&objs.deployments)
	case "v1 Service":
		target = appendNew(&objs.services)
	case "v1 ConfigMap":
		target = appendNew(&objs.configMaps)
	case "autoscaling/v2 HorizontalPodAutoscaler":
		target = appendNew(&objs.hpas)
	case "policy/v1 PodDisruptionBudget":
		target = appendNew(&objs.pdbs)
	case "networking.k8s.io/v1 NetworkPolicy":
		target = appendNew(&objs.networkPolicies)
	case "monitoring.coreos.com/v1 ServiceMonitor":
		target = appendNew(&objs.serviceMonitors)
	case "monitoring.coreos.com/v1 PrometheusRule":
		target = appendNew(&objs.prometheusRules)
	default:
		return fmt.Errorf("%s %s: no test decodes this kind; add it", gvk, name)
	}
	// Strict: an unknown or misplaced field (a typo, a wrong case, or a
	// field at the wrong level) is an error, as with
	// `kubectl apply --validate=strict`.
	if err := decodeStrictJSON(js, target); err != nil {
		return fmt.Errorf("%s %s: %w", kind, name, err)
	}
	if kind != "Namespace" {
		objs.namespaceOf[kind+"/"+name] = head.Metadata.Namespace
	}
	objs.all = append(objs.all, k8sObject{kind + "/" + name, target})
	return nil
}

// appendNew appends a new T to *s and returns it.
func appendNew[T any](s *[]*T) *T {
	v := new(T)
	*s = append(*s, v)
	return v
}

func loadKustomization(t *testing.T) *k8sObjects {
	t.Helper()
	objs, err := buildKustomization()
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// only returns the single element of s, failing the test otherwise.
func only[T any](t *testing.T, what string, s []T) T {
	t.Helper()
	if len(s) != 1 {
		t.Fatalf("%d %s rendered, want 1", len(s), what)
	}
	return s[0]
}

// k8sNamespace is the namespace everything is deployed in.
func k8sNamespace(t *testing.T) string {
	t.Helper()
	return only(t, "Namespaces", loadKustomization(t).namespaces).Name
}

func TestKubernetesPolicyCopy(t *testing.T) {
	t.Parallel()
	if !bytes.Equal(readFile(t, kustomizeDir+"/corsauthz.yaml"), deploy.ExampleConfig) {
		t.Error("deploy/kubernetes/corsauthz.yaml differs from deploy/corsauthz.yaml; run\n" +
			"\tcp deploy/corsauthz.yaml deploy/kubernetes/corsauthz.yaml")
	}
}

func TestKubernetesNamespaces(t *testing.T) {
	t.Parallel()
	objs := loadKustomization(t)
	ns := k8sNamespace(t)
	for obj, got := range objs.namespaceOf {
		if got != ns {
			t.Errorf("%s is in namespace %q, want %q", obj, got, ns)
		}
	}
	if len(objs.namespaceOf) == 0 {
		t.Error("no namespaced objects")
	}
}

func TestKubernetesDeployment(t *testing.T) {
	t.Parallel()
	objs := loadKustomization(t)
	d := only(t, "Deployments", objs.deployments)
	pod := d.Spec.Template.Spec

	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("replicas = %s, want at least 2", ptrString(d.Spec.Replicas))
	}
	if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Error("rolling update must have maxUnavailable: 0 so a bad config never takes a serving pod down")
	}
	sel, err := labels.ValidatedSelectorFromSet(d.Spec.Selector.MatchLabels)
	if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("selector %v does not match the pod labels %v", d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	}

	c := only(t, "containers", pod.Containers)
	if !slices.Equal(c.Args, serveArgs) {
		t.Errorf("args = %q, want %q", c.Args, serveArgs)
	}
	if c.Command != nil {
		t.Errorf("command = %q overrides the image's ENTRYPOINT", c.Command)
	}
	if c.Image != "corsauthz:dev" {
		t.Errorf("image = %q, want corsauthz:dev (from kustomization images:)", c.Image)
	}

	// Ports and probes.
	grpcPortName := ""
	for _, p := range c.Ports {
		if p.ContainerPort == grpcPort {
			grpcPortName = p.Name
		}
	}
	if grpcPortName == "" {
		t.Errorf("no container port %d", grpcPort)
	}
	for _, tt := range []struct {
		name        string
		probe       *corev1.Probe
		wantService []string // any of these
	}{
		{"readinessProbe", c.ReadinessProbe, []string{"", "envoy.service.auth.v3.Authorization"}},
		{"livenessProbe", c.LivenessProbe, []string{""}},
	} {
		if tt.probe == nil || tt.probe.GRPC == nil {
			t.Errorf("%s is not a grpc probe", tt.name)
			continue
		}
		if tt.probe.GRPC.Port != grpcPort {
			t.Errorf("%s probes port %d, want %d", tt.name, tt.probe.GRPC.Port, grpcPort)
		}
		service := ""
		if tt.probe.GRPC.Service != nil {
			service = *tt.probe.GRPC.Service
		}
		if !slices.Contains(tt.wantService, service) {
			t.Errorf("%s asks for health of service %q, want one of %q", tt.name, service, tt.wantService)
		}
	}
	if p := c.StartupProbe; p != nil && (p.GRPC == nil || p.GRPC.Port != grpcPort) {
		t.Error("startupProbe is not a grpc probe on the gRPC port")
	}

	// Resources: requests and limits for both CPU and memory, limits >= requests.
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := c.Resources.Requests[res]
		lim, hasLim := c.Resources.Limits[res]
		if !hasReq || !hasLim {
			t.Errorf("%s: request set %v, limit set %v; want both", res, hasReq, hasLim)
			continue
		}
		if lim.Cmp(req) < 0 {
			t.Errorf("%s: limit %s below request %s", res, lim.String(), req.String())
		}
	}

	// Security: what the pod or the container says, the container winning.
	psc, csc := pod.SecurityContext, c.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if csc == nil {
		t.Fatal("container has no securityContext")
	}
	pick := func(c, p *bool) bool {
		if c != nil {
			return *c
		}
		return p != nil && *p
	}
	if !pick(csc.RunAsNonRoot, psc.RunAsNonRoot) {
		t.Error("runAsNonRoot is not true")
	}
	uid := csc.RunAsUser
	if uid == nil {
		uid = psc.RunAsUser
	}
	if uid == nil || *uid != 65532 {
		t.Errorf("runAsUser = %s, want 65532 (distroless nonroot)", ptrString(uid))
	}
	if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if csc.Capabilities == nil || !slices.Equal(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(csc.Capabilities.Add) > 0 {
		t.Errorf("capabilities = %+v, want drop [ALL] and nothing added", csc.Capabilities)
	}
	seccomp := csc.SeccompProfile
	if seccomp == nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccompProfile = %+v, want RuntimeDefault", seccomp)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("the service account token is mounted; corsauthz never calls the API server")
	}
	if sa := pod.ServiceAccountName; sa != "" {
		if !slices.ContainsFunc(objs.serviceAccounts, func(s *corev1.ServiceAccount) bool { return s.Name == sa }) {
			t.Errorf("serviceAccountName %q is not created", sa)
		}
	}

	// The config: the --config file must be the generated ConfigMap's
	// corsauthz.yaml, mounted as a directory, holding the example policies.
	configFlag := flagValue(c.Args, "--config")
	dir, file := path.Split(configFlag)
	var volumeName string
	for _, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) == path.Clean(configFlag) {
			t.Errorf("volume %q is mounted on the file %s (subPath %q); mount the directory so ConfigMap updates reach the pod", m.Name, m.MountPath, m.SubPath)
		}
		if path.Clean(m.MountPath) == path.Clean(dir) {
			volumeName = m.Name
			if m.SubPath != "" || m.SubPathExpr != "" {
				t.Errorf("volume %q is mounted with a subPath; ConfigMap updates would never reach the pod", m.Name)
			}
			if !m.ReadOnly {
				t.Errorf("volume %q is mounted read-write", m.Name)
			}
		}
	}
	if volumeName == "" {
		t.Fatalf("nothing is mounted at %s, where --config %s points", dir, configFlag)
	}
	var cmName string
	for _, v := range pod.Volumes {
		if v.Name == volumeName && v.ConfigMap != nil {
			cmName = v.ConfigMap.Name
			if len(v.ConfigMap.Items) > 0 {
				t.Errorf("volume %q selects items; mount the whole ConfigMap", v.Name)
			}
		}
	}
	if cmName == "" {
		t.Fatalf("volume %q is not a ConfigMap volume", volumeName)
	}
	i := slices.IndexFunc(objs.configMaps, func(cm *corev1.ConfigMap) bool { return cm.Name == cmName })
	if i < 0 {
		t.Fatalf("ConfigMap %q (mounted at %s) is not in the build", cmName, dir)
	}
	if got, ok := objs.configMaps[i].Data[file]; !ok {
		t.Errorf("ConfigMap %q has no key %q, the file --config names", cmName, file)
	} else if got != string(deploy.ExampleConfig) {
		t.Errorf("ConfigMap %q key %q is not deploy/corsauthz.yaml", cmName, file)
	}
}

func TestKubernetesService(t *testing.T) {
	t.Parallel()
	objs := loadKustomization(t)
	svc := only(t, "Services", objs.services)
	d := only(t, "Deployments", objs.deployments)
	c := only(t, "containers", d.Spec.Template.Spec.Containers)

	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) || len(svc.Spec.Selector) == 0 {
		t.Errorf("Service selector %v does not select the pods (labels %v)", svc.Spec.Selector, d.Spec.Template.Labels)
	}
	// containerPort resolves a Service targetPort against the container.
	containerPort := func(tp intstr.IntOrString) int32 {
		if tp.Type == intstr.Int {
			return tp.IntVal
		}
		for _, p := range c.Ports {
			if p.Name == tp.StrVal {
				return p.ContainerPort
			}
		}
		return -1
	}
	ports := make(map[int32]corev1.ServicePort)
	for _, p := range svc.Spec.Ports {
		ports[p.Port] = p
		if got := containerPort(p.TargetPort); got != p.Port {
			t.Errorf("Service port %d (%s) targets container port %d", p.Port, p.Name, got)
		}
	}
	g, ok := ports[grpcPort]
	switch {
	case !ok:
		t.Errorf("Service has no port %d", grpcPort)
	case g.Name != "grpc":
		t.Errorf("Service port %d is named %q, want grpc", grpcPort, g.Name)
	case g.AppProtocol == nil || *g.AppProtocol != "grpc":
		t.Errorf("Service port %d has appProtocol %s, want grpc", grpcPort, ptrString(g.AppProtocol))
	}
	if _, ok := ports[adminPort]; !ok {
		t.Errorf("Service has no port %d", adminPort)
	}
	if h, ok := ports[authzHTTPPort]; !ok || h.Name != "http" || h.AppProtocol == nil || *h.AppProtocol != "http" {
		t.Errorf("Service port %d: %+v, want one named http, appProtocol http (HTTP authorization)", authzHTTPPort, h)
	}
}

func TestKubernetesAvailability(t *testing.T) {
	t.Parallel()
	objs := loadKustomization(t)
	d := only(t, "Deployments", objs.deployments)
	podLabels := labels.Set(d.Spec.Template.Labels)

	hpa := only(t, "HorizontalPodAutoscalers", objs.hpas)
	if ref := hpa.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != d.Name || ref.APIVersion != "apps/v1" {
		t.Errorf("HPA scales %+v, want the Deployment %q", ref, d.Name)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 {
		t.Fatalf("HPA minReplicas = %s, want at least 2", ptrString(hpa.Spec.MinReplicas))
	}
	if d.Spec.Replicas != nil && hpa.Spec.MinReplicas != nil && *d.Spec.Replicas != *hpa.Spec.MinReplicas {
		t.Errorf("Deployment replicas %d differ from HPA minReplicas %d", *d.Spec.Replicas, *hpa.Spec.MinReplicas)
	}
	if hpa.Spec.MaxReplicas <= *hpa.Spec.MinReplicas {
		t.Errorf("HPA maxReplicas %d leaves no room above minReplicas", hpa.Spec.MaxReplicas)
	}
	cpu := slices.ContainsFunc(hpa.Spec.Metrics, func(m autoscalingv2.MetricSpec) bool {
		return m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU &&
			m.Resource.Target.AverageUtilization != nil
	})
	if !cpu {
		t.Error("HPA does not scale on CPU utilization")
	}

	if d.Spec.Replicas == nil {
		t.Fatal("Deployment sets no replicas")
	}
	pdb := only(t, "PodDisruptionBudgets", objs.pdbs)
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		t.Errorf("PDB selector does not select the pods: %v", err)
	}
	switch {
	case pdb.Spec.MinAvailable != nil:
		if pdb.Spec.MinAvailable.IntValue() < 1 || pdb.Spec.MinAvailable.IntValue() >= int(*d.Spec.Replicas) {
			t.Errorf("PDB minAvailable %v must be at least 1 and below the %d replicas, or drains block", pdb.Spec.MinAvailable, *d.Spec.Replicas)
		}
	case pdb.Spec.MaxUnavailable != nil:
	default:
		t.Error("PDB sets neither minAvailable nor maxUnavailable")
	}
}

// TestKubernetesDecoderIsStrict makes sure buildObjects catches the mistakes
// kubectl's strict validation would: each case breaks one manifest.
func TestKubernetesDecoderIsStrict(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc      string
		file      string
		old, new  string
		wantInErr string
	}{
		{
			desc:      "field name in the wrong case",
			file:      "deployment.yaml",
			old:       "readOnlyRootFilesystem: true",
			new:       "readonlyRootFilesystem: true",
			wantInErr: "readonlyRootFilesystem",
		},
		{
			desc:      "unknown field",
			file:      "deployment.yaml",
			old:       "imagePullPolicy: IfNotPresent",
			new:       "pullPolicy: IfNotPresent",
			wantInErr: "pullPolicy",
		},
		{
			desc:      "field at the wrong level",
			file:      "service.yaml",
			old:       "  type: ClusterIP",
			new:       "  type: ClusterIP\n  appProtocol: grpc",
			wantInErr: "appProtocol",
		},
		{
			desc:      "NetworkPolicy field misspelled",
			file:      "networkpolicy.yaml",
			old:       "policyTypes: [Ingress]",
			new:       "policyType: [Ingress]",
			wantInErr: "policyType",
		},
		{
			desc:      "wrong API version for the kind",
			file:      "hpa.yaml",
			old:       "apiVersion: autoscaling/v2",
			new:       "apiVersion: autoscaling/v1",
			wantInErr: "autoscaling/v1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			fs := filesys.MakeFsInMemory()
			entries, err := os.ReadDir(kustomizeDir)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, e := range entries {
				data := readFile(t, kustomizeDir+"/"+e.Name())
				if e.Name() == tt.file {
					if !bytes.Contains(data, []byte(tt.old)) {
						t.Fatalf("%s no longer contains %q; update this test", tt.file, tt.old)
					}
					data, found = bytes.Replace(data, []byte(tt.old), []byte(tt.new), 1), true
				}
				if err := fs.WriteFile("/k/"+e.Name(), data); err != nil {
					t.Fatal(err)
				}
			}
			if !found {
				t.Fatalf("no %s in %s", tt.file, kustomizeDir)
			}
			_, err = buildObjects(fs, "/k")
			if err == nil {
				t.Fatal("the broken manifest was accepted")
			}
			if !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantInErr)
			}
			t.Logf("rejected as expected: %v", err)
		})
	}
}

func ptrString[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

// TestKubernetesMemoryLimit: GOMEMLIMIT comes from the container's memory
// limit, in bytes (issue 10).
func TestKubernetesMemoryLimit(t *testing.T) {
	t.Parallel()
	objs := loadKustomization(t)
	d := only(t, "Deployment", objs.deployments)
	c := only(t, "container", d.Spec.Template.Spec.Containers)
	var env *corev1.EnvVar
	for i := range c.Env {
		if c.Env[i].Name == "GOMEMLIMIT" {
			env = &c.Env[i]
		}
	}
	if env == nil || env.ValueFrom == nil || env.ValueFrom.ResourceFieldRef == nil {
		t.Fatalf("no GOMEMLIMIT from a resourceFieldRef in %+v", c.Env)
	}
	ref := env.ValueFrom.ResourceFieldRef
	if ref.Resource != "limits.memory" || ref.ContainerName != c.Name {
		t.Errorf("GOMEMLIMIT from %s of container %q, want limits.memory of %q", ref.Resource, ref.ContainerName, c.Name)
	}
	if !ref.Divisor.IsZero() && ref.Divisor.Value() != 1 {
		t.Errorf("GOMEMLIMIT divisor %v: GOMEMLIMIT reads a bare number as bytes", ref.Divisor.String())
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Error("no memory limit for GOMEMLIMIT to follow")
	}
}

// TestKubernetesNetworkPolicy: only pods labelled as the gateway reach the
// gRPC and HTTP authorization ports, only the monitoring namespace the admin port, and the policy
// selects corsauthz's pods (issue 10).
func TestKubernetesNetworkPolicy(t *testing.T) {
	t.Parallel()
	objs := loadKustomization(t)
	np := only(t, "NetworkPolicy", objs.networkPolicies)
	d := only(t, "Deployment", objs.deployments)
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil {
		t.Fatal(err)
	}
	if sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("the NetworkPolicy selects %v, not the Deployment's pods %v", sel, d.Spec.Template.Labels)
	}
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
		t.Errorf("policyTypes %v, want [Ingress]", np.Spec.PolicyTypes)
	}
	ports := map[string]string{} // port name -> who may reach it
	for _, rule := range np.Spec.Ingress {
		if len(rule.From) == 0 || len(rule.Ports) == 0 {
			t.Errorf("a rule lets everyone in, or on every port: %+v", rule)
			continue
		}
		for _, from := range rule.From {
			var who string
			switch {
			case from.PodSelector != nil && from.PodSelector.MatchLabels["corsauthz.io/gateway"] == "true":
				who = "gateway"
			case from.PodSelector == nil && from.NamespaceSelector != nil && from.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == "monitoring":
				who = "monitoring"
			default:
				t.Errorf("unexpected peer %+v", from)
			}
			for _, p := range rule.Ports {
				if p.Port == nil || p.Port.Type != intstr.String {
					t.Errorf("port %v: name the container's port", p.Port)
					continue
				}
				ports[p.Port.StrVal] = who
			}
		}
	}
	want := map[string]string{"grpc": "gateway", "http": "gateway", "admin": "monitoring"}
	if fmt.Sprint(ports) != fmt.Sprint(want) {
		t.Errorf("who reaches which port: %v, want %v", ports, want)
	}
	named := map[string]bool{}
	for _, p := range only(t, "container", d.Spec.Template.Spec.Containers).Ports {
		named[p.Name] = true
	}
	for name := range want {
		if !named[name] {
			t.Errorf("the container has no port named %q", name)
		}
	}
}
