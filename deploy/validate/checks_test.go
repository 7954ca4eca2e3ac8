package validate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// fixtureDeployment reads testdata/fixtures/deployment-ok.yaml and applies edits, each an
// "old => new" text replacement, so each negative case differs from a passing Deployment in
// exactly one way.
func fixtureDeployment(t *testing.T, edits ...string) Rendered {
	t.Helper()
	return fixture(t, edits)
}

func fixture(t *testing.T, edits []string) Rendered {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", "fixtures", "deployment-ok.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	for _, e := range edits {
		old, repl, _ := strings.Cut(e, "=>")
		// "a => b" separates with spaces; an indented replacement keeps its own indentation.
		old = strings.TrimSuffix(old, " ")
		if repl == " " || len(repl) > 1 && repl[0] == ' ' && repl[1] != ' ' {
			repl = repl[1:]
		}
		if !strings.Contains(s, old) {
			t.Fatalf("fixture has no %q", old)
		}
		s = strings.Replace(s, old, repl, 1)
	}
	return Rendered{APIVersion: "apps/v1", Kind: "Deployment", Name: "fixture", YAML: []byte(s)}
}

func TestCheckDeploymentFixtures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		edits   []string
		wantErr string // "" means the Deployment passes
	}{
		{"ok", nil, ""},
		{"no liveness probe", []string{"          livenessProbe:\n            grpc:\n              port: 9091\n => "}, "no livenessProbe"},
		{"no readiness probe", []string{"          readinessProbe:\n            grpc:\n              port: 9091\n => "}, "no readinessProbe"},
		{"http probe", []string{"          livenessProbe:\n            grpc:\n              port: 9091 =>          livenessProbe:\n            tcpSocket:\n              port: 9091"}, "not a gRPC health probe"},
		{"probe on undeclared port", []string{"          readinessProbe:\n            grpc:\n              port: 9091 =>          readinessProbe:\n            grpc:\n              port: 7000"}, "not a container port"},
		{"no limits", []string{"            limits: {cpu: 100m, memory: 64Mi}\n => "}, "no cpu limit"},
		{"no memory request", []string{"requests: {cpu: 10m, memory: 16Mi} => requests: {cpu: 10m}"}, "no memory request"},
		{"privilege escalation", []string{"allowPrivilegeEscalation: false => allowPrivilegeEscalation: true"}, "allowPrivilegeEscalation"},
		{"writable root", []string{"readOnlyRootFilesystem: true => readOnlyRootFilesystem: false"}, "readOnlyRootFilesystem"},
		{"capabilities kept", []string{"drop: [ALL] => drop: [NET_RAW]"}, "drop ALL"},
		{"root allowed", []string{"runAsNonRoot: true => runAsNonRoot: false"}, "runAsNonRoot"},
		{"no seccomp", []string{"type: RuntimeDefault => type: Unconfined"}, "seccompProfile"},
		{"token automounted", []string{"automountServiceAccountToken: false => automountServiceAccountToken: true"}, "automountServiceAccountToken"},
		{"latest image", []string{"fixture:1.0.0 => fixture:latest"}, "latest"},
		{"untagged image", []string{"fixture:1.0.0 => fixture"}, "no tag"},
		{"password literal", []string{"          ports: =>          env:\n            - name: SECUREMSG_NATS_PASSWORD\n              value: hunter2\n          ports:"}, "not from a Secret"},
		{"credential URL", []string{"          ports: =>          env:\n            - name: SECUREMSG_ENDPOINT\n              value: nats://u:p@nats:4222\n          ports:"}, "URL with a password"},
		{"foreign token audience", []string{"      containers: =>      volumes:\n        - name: t\n          projected:\n            sources:\n              - serviceAccountToken:\n                  audience: kubernetes\n                  path: token\n      containers:"}, "audience"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			obj, err := DecodeStrict(fixtureDeployment(t, tc.edits...))
			if err != nil {
				t.Fatalf("DecodeStrict: %v", err)
			}
			errs := CheckDeployment(obj.(*appsv1.Deployment), nil)
			switch {
			case tc.wantErr == "" && len(errs) > 0:
				t.Errorf("CheckDeployment = %v, want no errors", errs)
			case tc.wantErr != "" && !containsErr(errs, tc.wantErr):
				t.Errorf("CheckDeployment = %v, want an error containing %q", errs, tc.wantErr)
			}
		})
	}
}

func containsErr(errs []error, s string) bool {
	for _, err := range errs {
		if strings.Contains(err.Error(), s) {
			return true
		}
	}
	return false
}

func TestDecodeStrictRejectsUnknownFields(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		r    Rendered
	}{
		{"probe under the pod spec", fixtureDeployment(t, "      containers: =>      readinessProbe: {grpc: {port: 9091}}\n      containers:")},
		{"misspelt field", fixtureDeployment(t, "readOnlyRootFilesystem: true => readOnlyRootFileSystem: true")},
		{"duplicate field", fixtureDeployment(t, "  name: fixture\n => name: fixture\n  name: fixture2\n")},
		{"unknown kind", Rendered{APIVersion: "example.com/v1", Kind: "Widget", Name: "w", YAML: []byte("apiVersion: example.com/v1\nkind: Widget\n")}},
		{"certificate typo", Rendered{APIVersion: "cert-manager.io/v1", Kind: "Certificate", Name: "c", YAML: []byte("apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: c}\nspec: {secretName: s, dnsName: [a], issuerRef: {name: i}}\n")}},
		{"servicemonitor typo", Rendered{APIVersion: "monitoring.coreos.com/v1", Kind: "ServiceMonitor", Name: "s", YAML: []byte("apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: s}\nspec: {selector: {}, endpoint: [{port: metrics}]}\n")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := DecodeStrict(tc.r); err == nil {
				t.Errorf("DecodeStrict(%s) succeeded, want an error", tc.name)
			}
		})
	}
}

func TestFlowsRejectsBroadRules(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, spec string }{
		{"rule without peers", "podSelector: {matchLabels: {app.kubernetes.io/name: a}}\npolicyTypes: [Ingress]\ningress: [{ports: [{port: 1}]}]"},
		{"rule without ports", "podSelector: {matchLabels: {app.kubernetes.io/name: a}}\npolicyTypes: [Egress]\negress: [{to: [{podSelector: {matchLabels: {app.kubernetes.io/name: b}}}]}]"},
		{"whole namespace", "podSelector: {matchLabels: {app.kubernetes.io/name: a}}\npolicyTypes: [Egress]\negress: [{to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}}], ports: [{port: 1}]}]"},
		{"internet with private ranges", "podSelector: {matchLabels: {app.kubernetes.io/name: a}}\npolicyTypes: [Egress]\negress: [{to: [{ipBlock: {cidr: 0.0.0.0/0}}], ports: [{port: 443}]}]"},
		{"port range", "podSelector: {matchLabels: {app.kubernetes.io/name: a}}\npolicyTypes: [Egress]\negress: [{to: [{podSelector: {matchLabels: {app.kubernetes.io/name: b}}}], ports: [{port: 1, endPort: 9}]}]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var np networkingv1.NetworkPolicy
			np.Name = "fixture"
			if err := yaml.UnmarshalStrict([]byte(tc.spec), &np.Spec); err != nil {
				t.Fatal(err)
			}
			if flows, _, errs := Flows([]*networkingv1.NetworkPolicy{&np}); len(errs) == 0 {
				t.Errorf("Flows(%s) = %v with no error, want an error", tc.name, flows)
			}
		})
	}
	// And an extra flow that is well-formed is caught by the plan comparison: a sanity check
	// that Flows reports it.
	var np networkingv1.NetworkPolicy
	np.Name = "extra"
	spec := "podSelector: {matchLabels: {app.kubernetes.io/name: audit}}\npolicyTypes: [Egress]\negress: [{to: [{podSelector: {matchLabels: {app.kubernetes.io/name: messaging}}}], ports: [{port: 7001}]}]"
	if err := yaml.UnmarshalStrict([]byte(spec), &np.Spec); err != nil {
		t.Fatal(err)
	}
	if flows, _, _ := Flows([]*networkingv1.NetworkPolicy{&np}); len(flows) != 1 || flows[0] != "egress audit -> messaging tcp/7001" {
		t.Errorf("Flows(extra) = %v, want [egress audit -> messaging tcp/7001]", flows)
	}
}
