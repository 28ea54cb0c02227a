package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/corsauthz/corsauthz/deploy"
)

const (
	chartDir = "helm/corsauthz"
	// helmEnv names the helm binary when it is not where .ci/run builds it
	// (the user cache directory's corsauthz/bin/helm) nor on PATH.
	helmEnv = "CORSAUTHZ_HELM"
	// helmRequireEnv makes a missing helm a failure instead of a skip: CI
	// builds helm and sets CORSAUTHZ_E2E_HELM=require.
	helmRequireEnv = "CORSAUTHZ_E2E_HELM"
	// helmVersion is the helm these tests are run with in CI.
	helmVersion = "v4.3.2"
)

// findHelm returns the helm binary, or skips the test (fails it, with
// CORSAUTHZ_E2E_HELM=require).
func findHelm(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv(helmEnv)}
	if dir, err := os.UserCacheDir(); err == nil {
		candidates = append(candidates, filepath.Join(dir, "corsauthz", "bin", "helm"))
	}
	if p, err := exec.LookPath("helm"); err == nil {
		candidates = append(candidates, p)
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); c != "" && err == nil && fi.Mode().IsRegular() {
			return c
		}
	}
	msg := "no helm binary: build it with GOBIN=\"$HOME/.cache/corsauthz/bin\" go install helm.sh/helm/v4/cmd/helm@" +
		helmVersion + " (or set " + helmEnv + ")"
	if os.Getenv(helmRequireEnv) == "require" {
		t.Fatalf("%s (%s=require makes this a failure instead of a skip)", msg, helmRequireEnv)
	}
	t.Skipf("%s; set %s=require to make this a failure", msg, helmRequireEnv)
	return ""
}

// runHelm runs helm with args, in a home of its own (no repositories, no
// plugins, no kubeconfig: nothing of the machine's), and returns its
// standard output, or its standard error in the error.
func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, findHelm(t), args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
		"KUBECONFIG="+filepath.Join(home, "kubeconfig"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// valuesFile writes values to a file for --values, in a directory whose
// name has no comma (helm splits --values at commas; t.TempDir's name
// comes from the test's).
func valuesFile(t *testing.T, values string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "corsauthz-helm-values-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := filepath.Join(dir, "values.yaml")
	if err := os.WriteFile(f, []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// helmTemplate renders the chart as release in namespace with the given
// values (YAML; "" for the defaults) and decodes every object strictly.
func helmTemplate(t *testing.T, release, namespace, values string) *k8sObjects {
	t.Helper()
	args := []string{"template", release, chartDir, "--namespace", namespace}
	if values != "" {
		args = append(args, "--values", valuesFile(t, values))
	}
	out, err := runHelm(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeManifests([]byte(out))
	if err != nil {
		t.Fatalf("helm template %s: %v", strings.Join(args[1:], " "), err)
	}
	return objs
}

// decodeManifests decodes a stream of YAML documents, each strictly into
// its Kubernetes Go type; duplicate keys are errors too.
func decodeManifests(stream []byte) (*k8sObjects, error) {
	objs := newK8sObjects()
	dec := yaml.NewDecoder(bytes.NewReader(stream))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(doc.Content) == 0 || doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null" {
			continue // an empty document: a template that rendered nothing
		}
		text, err := yaml.Marshal(&doc)
		if err != nil {
			return nil, err
		}
		js, err := sigsyaml.YAMLToJSONStrict(text)
		if err != nil {
			return nil, err
		}
		if err := objs.add(js); err != nil {
			return nil, err
		}
	}
}

// helmAllOn are values that turn every toggle of the chart on.
const helmAllOn = `
image: {repository: registry.example.com/corsauthz, tag: v1.2.3}
imagePullSecrets: [{name: registry-credentials}]
http: {enabled: true, pathPrefix: /cors}
tls: {secretName: corsauthz-tls, clientCA: true}
extraArgs: [--log-format, json]
extraEnv:
  - name: OPA_KEY
    valueFrom: {secretKeyRef: {name: opa-credentials, key: api-key}}
extraVolumes:
  - name: authorizer-credentials
    secret: {secretName: authorizer-credentials}
extraVolumeMounts:
  - {name: authorizer-credentials, mountPath: /etc/corsauthz-credentials, readOnly: true}
topologySpreadConstraints:
  - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway}
  - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule}
podAnnotations: {example.com/team: edge}
podLabels: {example.com/tier: edge}
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: edge, effect: NoSchedule}]
priorityClassName: edge-critical
serviceAccount: {annotations: {example.com/owner: edge}}
service: {headless: true, annotations: {example.com/owner: edge}}
serviceMonitor: {enabled: true, labels: {release: prometheus}, interval: 15s}
prometheusRule: {enabled: true, labels: {release: prometheus}, authorizerLatencyThresholdSeconds: 0.4}
`

func TestHelmLint(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		desc   string
		values string
	}{
		{desc: "default values"},
		{desc: "every toggle on", values: helmAllOn},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			args := []string{"lint", "--strict", chartDir}
			if tt.values != "" {
				args = append(args, "--values", valuesFile(t, tt.values))
			}
			out, err := runHelm(t, args...)
			if err != nil {
				t.Fatal(err)
			}
			t.Log(out)
		})
	}
}

// helmOnlyLabels are the labels the chart adds to what the kustomize base
// sets: Helm's bookkeeping, and the release in the selectors (two
// releases in one namespace must not select each other's pods).
var helmOnlyLabels = []string{
	"app.kubernetes.io/instance", "app.kubernetes.io/managed-by",
	"app.kubernetes.io/version", "helm.sh/chart",
}

// kustomizeHashSuffix is what configMapGenerator appends to a name.
var kustomizeHashSuffix = regexp.MustCompile(`-[a-z0-9]{10}$`)

// comparable turns an object into plain JSON values, without what differs
// by design between the chart and the kustomize base:
//   - Helm's labels (helmOnlyLabels), wherever labels appear;
//   - the ConfigMap's name: kustomize appends a hash of its content, the
//     chart puts that hash in the pod's checksum/config annotation (either
//     way new policies roll the pods);
//   - the Deployment's replicas, which the chart leaves to the HPA (a
//     `helm upgrade` would otherwise reset the count the HPA chose);
//     kustomize sets the HPA's minimum.
func comparable(t *testing.T, kind string, obj any) map[string]any {
	t.Helper()
	js, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	var strip func(v any)
	strip = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, l := range helmOnlyLabels {
				delete(v, l)
			}
			for _, child := range v {
				strip(child)
			}
		case []any:
			for _, child := range v {
				strip(child)
			}
		}
	}
	strip(m)
	get := func(path ...string) map[string]any {
		cur := m
		for _, p := range path {
			next, _ := cur[p].(map[string]any)
			if next == nil {
				return map[string]any{}
			}
			cur = next
		}
		return cur
	}
	switch kind {
	case "ConfigMap":
		md := get("metadata")
		md["name"] = kustomizeHashSuffix.ReplaceAllString(md["name"].(string), "")
	case "Deployment":
		delete(get("spec"), "replicas")
		delete(get("spec", "template", "metadata", "annotations"), "checksum/config")
		volumes, _ := get("spec", "template", "spec")["volumes"].([]any)
		for _, v := range volumes {
			if cm, ok := v.(map[string]any)["configMap"].(map[string]any); ok {
				cm["name"] = kustomizeHashSuffix.ReplaceAllString(cm["name"].(string), "")
			}
		}
	}
	return m
}

// jsonDiff lists the paths where a and b differ.
func jsonDiff(path string, a, b any) []string {
	switch a := a.(type) {
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok {
			break
		}
		keys := map[string]bool{}
		for k := range a {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		var sorted []string
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		var out []string
		for _, k := range sorted {
			out = append(out, jsonDiff(path+"."+k, a[k], bm[k])...)
		}
		return out
	case []any:
		bl, ok := b.([]any)
		if !ok || len(a) != len(bl) {
			break
		}
		var out []string
		for i := range a {
			out = append(out, jsonDiff(fmt.Sprintf("%s[%d]", path, i), a[i], bl[i])...)
		}
		return out
	}
	if reflect.DeepEqual(a, b) {
		return nil
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return []string{fmt.Sprintf("%s: kustomize %s, chart %s", path, ja, jb)}
}

// TestHelmMatchesKustomize: with its default values, installed as
// "corsauthz" in namespace corsauthz, the chart renders the objects of
// `kustomize build deploy/kubernetes`, but for what comparable removes and
// the Namespace (Helm installs into one: --create-namespace).
func TestHelmMatchesKustomize(t *testing.T) {
	t.Parallel()
	chart := helmTemplate(t, "corsauthz", "corsauthz", "")
	kust := loadKustomization(t)

	kinds := func(objs *k8sObjects) map[string]any {
		out := map[string]any{}
		for _, o := range objs.all {
			kind, _, _ := strings.Cut(o.key, "/")
			if kind == "Namespace" {
				continue
			}
			c := comparable(t, kind, o.obj)
			name, _ := c["metadata"].(map[string]any)["name"].(string)
			out[kind+"/"+name] = c
		}
		return out
	}
	want, got := kinds(kust), kinds(chart)
	var wantKeys, gotKeys []string
	for k := range want {
		wantKeys = append(wantKeys, k)
	}
	for k := range got {
		gotKeys = append(gotKeys, k)
	}
	sort.Strings(wantKeys)
	sort.Strings(gotKeys)
	if !slices.Equal(wantKeys, gotKeys) {
		t.Fatalf("objects: kustomize %v, chart %v", wantKeys, gotKeys)
	}
	for _, k := range wantKeys {
		for _, d := range jsonDiff(k, want[k], got[k]) {
			t.Error(d)
		}
	}
	t.Logf("%d objects compared: %v", len(wantKeys), wantKeys)

	// What comparable removed is what it says.
	d := only(t, "Deployment", chart.deployments)
	if d.Spec.Replicas != nil {
		t.Errorf("the chart sets replicas %d with the HPA on", *d.Spec.Replicas)
	}
	if d.Spec.Template.Annotations["checksum/config"] == "" {
		t.Error("no checksum/config annotation: new policies would not roll the pods")
	}
	if sel := d.Spec.Selector.MatchLabels; sel["app.kubernetes.io/instance"] != "corsauthz" {
		t.Errorf("the selector %v does not name the release", sel)
	}
}

// TestHelmCopies: the chart carries copies of files it cannot read from
// outside its directory.
func TestHelmCopies(t *testing.T) {
	t.Parallel()
	if !bytes.Equal(readFile(t, chartDir+"/files/corsauthz.rules.yaml"), readFile(t, rulesFile)) {
		t.Errorf("%s/files/corsauthz.rules.yaml differs from %s; run\n\tcp deploy/%s deploy/%s/files/", chartDir, rulesFile, rulesFile, chartDir)
	}
	var values struct {
		Config struct {
			Inline string `yaml:"inline"`
		} `yaml:"config"`
	}
	if err := yaml.Unmarshal(readFile(t, chartDir+"/values.yaml"), &values); err != nil {
		t.Fatal(err)
	}
	if values.Config.Inline != string(deploy.ExampleConfig) {
		t.Errorf("config.inline in %s/values.yaml is not deploy/corsauthz.yaml (indented by 4 under `inline: |`)", chartDir)
	}
}

// TestHelmToggles renders the chart with each group of settings and checks
// what each one changes.
func TestHelmToggles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc               string
		release, namespace string
		values             string
		check              func(t *testing.T, objs *k8sObjects)
	}{
		{
			desc: "every toggle on", release: "corsauthz", namespace: "corsauthz", values: helmAllOn,
			check: checkAllOn,
		},
		{
			desc: "existing ConfigMap, fixed replicas, nothing optional", release: "corsauthz", namespace: "corsauthz",
			values: `
config: {existingConfigMap: my-policies}
replicas: 3
autoscaling: {enabled: false}
podDisruptionBudget: {enabled: false}
networkPolicy: {enabled: false}
serviceAccount: {create: false, name: shared}
topologySpreadConstraints: []
`,
			check: func(t *testing.T, objs *k8sObjects) {
				if len(objs.configMaps)+len(objs.hpas)+len(objs.pdbs)+len(objs.networkPolicies)+len(objs.serviceAccounts) != 0 {
					t.Errorf("rendered %d ConfigMaps, %d HPAs, %d PDBs, %d NetworkPolicies, %d ServiceAccounts; want none",
						len(objs.configMaps), len(objs.hpas), len(objs.pdbs), len(objs.networkPolicies), len(objs.serviceAccounts))
				}
				d := only(t, "Deployment", objs.deployments)
				pod := d.Spec.Template.Spec
				if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
					t.Errorf("replicas %s, want 3", ptrString(d.Spec.Replicas))
				}
				if pod.ServiceAccountName != "shared" {
					t.Errorf("serviceAccountName %q, want shared", pod.ServiceAccountName)
				}
				if volumeConfigMap(pod) != "my-policies" {
					t.Errorf("config volume from ConfigMap %q, want my-policies", volumeConfigMap(pod))
				}
				if _, ok := d.Spec.Template.Annotations["checksum/config"]; ok {
					t.Error("checksum/config with an existing ConfigMap: its changes reach the pods in place, without a rollout")
				}
				if len(pod.TopologySpreadConstraints) != 0 {
					t.Errorf("topology spread %v, want none", pod.TopologySpreadConstraints)
				}
			},
		},
		{
			desc: "another release name and namespace", release: "edge", namespace: "gateways",
			values: "prometheusRule: {enabled: true}\nserviceMonitor: {enabled: true}\n",
			check: func(t *testing.T, objs *k8sObjects) {
				for key, ns := range objs.namespaceOf {
					if ns != "gateways" {
						t.Errorf("%s in namespace %q, want gateways", key, ns)
					}
				}
				d := only(t, "Deployment", objs.deployments)
				if d.Name != "edge-corsauthz" {
					t.Errorf("Deployment %q, want edge-corsauthz", d.Name)
				}
				if volumeConfigMap(d.Spec.Template.Spec) != "edge-corsauthz-config" {
					t.Errorf("config from %q", volumeConfigMap(d.Spec.Template.Spec))
				}
				rule := only(t, "PrometheusRule", objs.prometheusRules)
				want := `{namespace="gateways", deployment="edge-corsauthz"}`
				if expr := alertExpr(t, rule, "CorsauthzNoReadyReplicas"); strings.Count(expr, want) != 2 {
					t.Errorf("CorsauthzNoReadyReplicas does not select %s twice: %s", want, expr)
				}
				checkRulesScoped(t, rule, "gateways")
				checkSelects(t, objs)
			},
		},
		{
			desc: "PrometheusRule not scoped, as the rules file", release: "corsauthz", namespace: "corsauthz",
			values: "prometheusRule: {enabled: true, scopeToNamespace: false}\n",
			check: func(t *testing.T, objs *k8sObjects) {
				rule := only(t, "PrometheusRule", objs.prometheusRules)
				file := loadRules(t)
				if !reflect.DeepEqual(rule.Spec, file) {
					a, _ := json.MarshalIndent(file, "", " ")
					b, _ := json.MarshalIndent(rule.Spec, "", " ")
					t.Errorf("the PrometheusRule's spec differs from %s:\n%s", rulesFile, strings.Join(jsonDiff("spec", unmarshalAny(a), unmarshalAny(b)), "\n"))
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			objs := helmTemplate(t, tt.release, tt.namespace, tt.values)
			checkSelects(t, objs)
			tt.check(t, objs)
		})
	}
}

func unmarshalAny(js []byte) any {
	var v any
	json.Unmarshal(js, &v)
	return v
}

// volumeConfigMap returns the ConfigMap the config volume mounts.
func volumeConfigMap(pod corev1.PodSpec) string {
	for _, v := range pod.Volumes {
		if v.Name == "config" && v.ConfigMap != nil {
			return v.ConfigMap.Name
		}
	}
	return ""
}

func alertExpr(t *testing.T, rule *monitoringv1.PrometheusRule, alert string) string {
	t.Helper()
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == alert {
				return r.Expr.String()
			}
		}
	}
	t.Fatalf("no alert %s", alert)
	return ""
}

// checkSelects: every selector of the release (Service, PDB,
// NetworkPolicy, topology spread, ServiceMonitor) selects its pods.
func checkSelects(t *testing.T, objs *k8sObjects) {
	t.Helper()
	d := only(t, "Deployment", objs.deployments)
	pods := labels.Set(d.Spec.Template.Labels)
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(pods) {
		t.Errorf("the Deployment's selector does not select its pods (%v)", err)
	}
	for _, s := range objs.services {
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(pods) || len(s.Spec.Selector) == 0 {
			t.Errorf("Service %s does not select the pods", s.Name)
		}
	}
	selectors := map[string]*metav1.LabelSelector{}
	for _, p := range objs.pdbs {
		selectors["PodDisruptionBudget "+p.Name] = p.Spec.Selector
	}
	for _, n := range objs.networkPolicies {
		selectors["NetworkPolicy "+n.Name] = &n.Spec.PodSelector
	}
	for i, c := range d.Spec.Template.Spec.TopologySpreadConstraints {
		selectors[fmt.Sprintf("topology spread %d", i)] = c.LabelSelector
	}
	for name, ls := range selectors {
		sel, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil || sel.Empty() || !sel.Matches(pods) {
			t.Errorf("%s does not select the pods %v (%v)", name, pods, err)
		}
	}
}

// checkRulesScoped: every corsauthz series an alert selects, but the
// gateways' (which run elsewhere), is in namespace ns.
func checkRulesScoped(t *testing.T, rule *monitoringv1.PrometheusRule, ns string) {
	t.Helper()
	selector := regexp.MustCompile(`\b((?:corsauthz|process|go)_[a-z_]+)(\{[^}]*\})?`)
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			for _, m := range selector.FindAllStringSubmatch(r.Expr.String(), -1) {
				scoped := strings.Contains(m[2], `namespace="`+ns+`"`)
				if gateway := strings.HasPrefix(m[1], "corsauthz_gateway_"); scoped == gateway {
					t.Errorf("%s: %s%s scoped to the namespace: %v", r.Alert, m[1], m[2], scoped)
				}
			}
		}
	}
}

// checkAllOn checks what each toggle of helmAllOn does.
func checkAllOn(t *testing.T, objs *k8sObjects) {
	d := only(t, "Deployment", objs.deployments)
	pod := d.Spec.Template.Spec
	c := only(t, "container", pod.Containers)

	if c.Image != "registry.example.com/corsauthz:v1.2.3" {
		t.Errorf("image %q", c.Image)
	}
	wantArgs := append(slices.Clone(serveArgs),
		"--http-path-prefix", "/cors",
		"--tls-cert-file", "/etc/corsauthz-tls/tls.crt", "--tls-key-file", "/etc/corsauthz-tls/tls.key",
		"--tls-client-ca-file", "/etc/corsauthz-tls/ca.crt",
		"--log-format", "json")
	if !slices.Equal(c.Args, wantArgs) {
		t.Errorf("args\n%q, want\n%q", c.Args, wantArgs)
	}

	// TLS: the Secret mounted as a directory; probes over the admin port.
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
		if m.SubPath != "" || !m.ReadOnly {
			t.Errorf("volume %s mounted with subPath %q, read-only %v", m.Name, m.SubPath, m.ReadOnly)
		}
	}
	secrets := map[string]string{}
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			secrets[v.Name] = v.Secret.SecretName
		}
	}
	if m, ok := mounts["tls"]; !ok || m.MountPath != "/etc/corsauthz-tls" || secrets["tls"] != "corsauthz-tls" {
		t.Errorf("tls volume %+v from Secret %q", m, secrets["tls"])
	}
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.String() != "admin" || p.GRPC != nil {
			t.Errorf("%s probe %+v: with TLS, kubelet's gRPC probe fails; want httpGet on the admin port", name, p)
			continue
		}
		want := map[string]string{"readiness": "/readyz", "liveness": "/healthz", "startup": "/readyz"}[name]
		if p.HTTPGet.Path != want {
			t.Errorf("%s probe path %q, want %q", name, p.HTTPGet.Path, want)
		}
	}

	// Extra environment and volumes, after GOMEMLIMIT.
	var env []string
	for _, e := range c.Env {
		env = append(env, e.Name)
	}
	if !slices.Equal(env, []string{"GOMEMLIMIT", "OPA_KEY"}) {
		t.Errorf("env %v, want [GOMEMLIMIT OPA_KEY]", env)
	}
	if mounts["authorizer-credentials"].MountPath != "/etc/corsauthz-credentials" || secrets["authorizer-credentials"] != "authorizer-credentials" {
		t.Errorf("extra volume not mounted: %+v", mounts)
	}

	// Pod settings.
	if pod.PriorityClassName != "edge-critical" || pod.NodeSelector["kubernetes.io/os"] != "linux" ||
		len(pod.Tolerations) != 1 || len(pod.ImagePullSecrets) != 1 {
		t.Errorf("priorityClassName %q, nodeSelector %v, tolerations %v, imagePullSecrets %v",
			pod.PriorityClassName, pod.NodeSelector, pod.Tolerations, pod.ImagePullSecrets)
	}
	if d.Spec.Template.Annotations["example.com/team"] != "edge" || d.Spec.Template.Labels["example.com/tier"] != "edge" {
		t.Errorf("pod annotations %v, labels %v", d.Spec.Template.Annotations, d.Spec.Template.Labels)
	}
	var keys []string
	for _, tc := range pod.TopologySpreadConstraints {
		keys = append(keys, tc.TopologyKey)
	}
	if !slices.Equal(keys, []string{"kubernetes.io/hostname", "topology.kubernetes.io/zone"}) {
		t.Errorf("topology keys %v", keys)
	}

	// The HTTP listener: a container port, a Service port, reachable by the
	// gateways only.
	var httpPort bool
	for _, p := range c.Ports {
		httpPort = httpPort || p.Name == "http" && p.ContainerPort == 9003
	}
	if !httpPort {
		t.Errorf("no container port http 9003: %+v", c.Ports)
	}
	if len(objs.services) != 2 {
		t.Fatalf("%d Services, want the Service and its headless copy", len(objs.services))
	}
	var main, headless *corev1.Service
	for _, s := range objs.services {
		if s.Spec.ClusterIP == corev1.ClusterIPNone {
			headless = s
		} else {
			main = s
		}
		var ports []string
		for _, p := range s.Spec.Ports {
			ports = append(ports, fmt.Sprintf("%s:%d->%s", p.Name, p.Port, p.TargetPort.String()))
		}
		if want := []string{"grpc:9001->grpc", "http:9003->http", "http-admin:9002->admin"}; !slices.Equal(ports, want) {
			t.Errorf("Service %s ports %v, want %v", s.Name, ports, want)
		}
	}
	if main == nil || headless == nil || headless.Name != "corsauthz-headless" {
		t.Fatalf("no Service and headless Service corsauthz-headless")
	}
	np := only(t, "NetworkPolicy", objs.networkPolicies)
	gatewayPorts := map[string]bool{}
	for _, p := range np.Spec.Ingress[0].Ports {
		gatewayPorts[p.Port.String()] = true
	}
	if !gatewayPorts["grpc"] || !gatewayPorts["http"] || len(gatewayPorts) != 2 {
		t.Errorf("the gateways reach ports %v, want grpc and http", gatewayPorts)
	}

	// The ServiceMonitor scrapes /metrics through the Service, not its
	// headless copy too.
	sm := only(t, "ServiceMonitor", objs.serviceMonitors)
	smSel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if !smSel.Matches(labels.Set(main.Labels)) || smSel.Matches(labels.Set(headless.Labels)) {
		t.Errorf("the ServiceMonitor selects the Service: %v, the headless copy: %v; want only the Service",
			smSel.Matches(labels.Set(main.Labels)), smSel.Matches(labels.Set(headless.Labels)))
	}
	if sm.Labels["release"] != "prometheus" || len(sm.Spec.Endpoints) != 1 ||
		sm.Spec.Endpoints[0].Port != "http-admin" || sm.Spec.Endpoints[0].Path != "/metrics" ||
		sm.Spec.Endpoints[0].Interval != "15s" {
		t.Errorf("ServiceMonitor %+v", sm)
	}
	if !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{"corsauthz"}) {
		t.Errorf("ServiceMonitor looks in namespaces %v", sm.Spec.NamespaceSelector.MatchNames)
	}

	// The PrometheusRule: the rules file's alerts, scoped, with the
	// threshold of the values; and promtool accepts it.
	rule := only(t, "PrometheusRule", objs.prometheusRules)
	if rule.Labels["release"] != "prometheus" {
		t.Errorf("PrometheusRule labels %v", rule.Labels)
	}
	if expr := alertExpr(t, rule, "CorsauthzAuthorizerSlow"); !strings.HasSuffix(expr, "> 0.4") {
		t.Errorf("CorsauthzAuthorizerSlow does not use the threshold 0.4: %s", expr)
	}
	checkRulesScoped(t, rule, "corsauthz")
	var n int
	for _, g := range rule.Spec.Groups {
		n += len(g.Rules)
	}
	var fileN int
	for _, g := range loadRules(t).Groups {
		fileN += len(g.Rules)
	}
	if n != fileN {
		t.Errorf("%d rules, %s has %d", n, rulesFile, fileN)
	}
	out, err := yaml.Marshal(map[string]any{"groups": unmarshalAny(mustJSON(t, rule.Spec.Groups))})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log(runPromtool(t, dir, "check", "rules", "rules.yaml"))
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestHelmSchema: values.schema.json refuses a misspelled key, at any
// depth, and settings outside the restricted Pod Security Standard, when
// helm renders (as at install and upgrade).
func TestHelmSchema(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc      string
		values    string
		wantInErr string
	}{
		{desc: "misspelled top-level key", values: "replica: 3\n", wantInErr: "replica"},
		{desc: "misspelled nested key", values: "autoscaling: {minReplica: 3}\n", wantInErr: "minReplica"},
		{desc: "key in the wrong case", values: "image: {pullpolicy: Always}\n", wantInErr: "pullpolicy"},
		{desc: "key at the wrong level", values: "enabled: true\n", wantInErr: "enabled"},
		{desc: "misspelled toggle", values: "serviceMonitor: {enable: true}\n", wantInErr: "enable"},
		{desc: "misspelled key in an extra env var", values: "extraEnv: [{name: A, valuefrom: {}}]\n", wantInErr: "valuefrom"},
		{desc: "wrong type", values: "http: {enabled: \"yes\"}\n", wantInErr: "enabled"},
		{desc: "no memory limit for GOMEMLIMIT", values: "resources: {limits: {cpu: '1', memory: null}}\n", wantInErr: "memory"},
		{desc: "root allowed", values: "podSecurityContext: {runAsNonRoot: false}\n", wantInErr: "runAsNonRoot"},
		{desc: "privilege escalation", values: "securityContext: {allowPrivilegeEscalation: true}\n", wantInErr: "allowPrivilegeEscalation"},
		{desc: "capabilities not dropped", values: "securityContext: {capabilities: {drop: [NET_RAW]}}\n", wantInErr: "drop"},
		{desc: "seccomp unconfined", values: "podSecurityContext: {seccompProfile: {type: Unconfined}}\n", wantInErr: "type"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			_, err := runHelm(t, "template", "corsauthz", chartDir, "--values", valuesFile(t, tt.values))
			if err == nil {
				t.Fatalf("helm template accepted %q", tt.values)
			}
			msg := err.Error()
			if !strings.Contains(msg, "schema") || !strings.Contains(msg, tt.wantInErr) {
				t.Errorf("the error does not blame the schema and %q:\n%s", tt.wantInErr, msg)
			}
		})
	}
}
