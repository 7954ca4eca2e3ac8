package validate

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// k8sVarRef is a $(VAR) reference, which Kubernetes expands in a container's args.
var k8sVarRef = regexp.MustCompile(`\$\(([A-Za-z0-9_]+)\)`)

// expandArgs returns a container's args with every $(VAR) replaced from vars, and the names it
// found no value for.
func expandArgs(args []string, vars map[string]string) (out, missing []string) {
	for _, a := range args {
		out = append(out, k8sVarRef.ReplaceAllStringFunc(a, func(ref string) string {
			name := k8sVarRef.FindStringSubmatch(ref)[1]
			v, ok := vars[name]
			if !ok {
				missing = append(missing, name)
			}
			return v
		}))
	}
	return out, missing
}

// componentRewrapArgs reads the keys-rewrap component as written: each CronJob's container args
// with the ConfigMap generator's literals expanded, by CronJob name.
func componentRewrapArgs(t *testing.T) map[string][]string {
	t.Helper()
	dir := filepath.Join("..", "k8s", "components", "keys-rewrap")
	var kust struct {
		ConfigMapGenerator []struct {
			Literals []string `json:"literals"`
		} `json:"configMapGenerator"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &kust); err != nil {
		t.Fatalf("keys-rewrap kustomization.yaml: %v", err)
	}
	vars := map[string]string{}
	for _, g := range kust.ConfigMapGenerator {
		for _, l := range g.Literals {
			k, v, _ := strings.Cut(l, "=")
			vars[k] = v
		}
	}
	b, err = os.ReadFile(filepath.Join(dir, "cronjobs.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var cj batchv1.CronJob
		if err := yaml.UnmarshalStrict([]byte(doc), &cj); err != nil {
			t.Fatalf("keys-rewrap cronjobs.yaml: %v", err)
		}
		for _, c := range cj.Spec.JobTemplate.Spec.Template.Spec.Containers {
			args, missing := expandArgs(c.Args, vars)
			if len(missing) > 0 {
				t.Errorf("component CronJob %s: args name %v, which the ConfigMap does not define", cj.Name, missing)
			}
			out[cj.Name] = args
		}
	}
	return out
}

// TestRewrapJobsRunWhatTheComponentSays: in every overlay, each rewrap CronJob runs, once
// Kubernetes has expanded its $(VAR)s from the ConfigMaps it reads, exactly the securemsgctl
// command line the keys-rewrap component writes (same --key, same --store tables), and every
// $(VAR) it names is defined. services/ctl's TestRegistryMatchesSchemasAndDeploy checks the
// component's stores against the services' migrated schemas; this test makes that check hold
// for what the overlays deploy too, so an overlay patching a store cannot slip past it.
func TestRewrapJobsRunWhatTheComponentSays(t *testing.T) {
	t.Parallel()
	want := componentRewrapArgs(t)
	if len(want) < 3 {
		t.Fatalf("component renders %d rewrap CronJobs, want one per service key (3)", len(want))
	}
	forEachOverlay(t, func(t *testing.T, _ string, o *Objects) {
		seen := map[string]bool{}
		for _, cj := range o.CronJobs {
			wantArgs, ok := want[cj.Name]
			if !ok {
				continue
			}
			seen[cj.Name] = true
			pod := cj.Spec.JobTemplate.Spec.Template.Spec
			for _, c := range pod.Containers {
				args, missing := expandArgs(c.Args, containerVars(c, o.ConfigMaps))
				if len(missing) > 0 {
					t.Errorf("CronJob %s: args name %v, which neither its env nor its ConfigMaps define", cj.Name, missing)
				}
				if !slices.Equal(args, wantArgs) {
					t.Errorf("CronJob %s runs %q, want the component's %q", cj.Name, args, wantArgs)
				}
			}
		}
		for name := range want {
			if !seen[name] {
				t.Errorf("CronJob %s of the keys-rewrap component is not deployed", name)
			}
		}
	})
}

// containerVars are the variables a container's args may expand: its envFrom ConfigMaps' data
// and its literal env values.
func containerVars(c corev1.Container, cms map[string]*corev1.ConfigMap) map[string]string {
	vars := map[string]string{}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil {
			continue
		}
		if cm, ok := cms[ef.ConfigMapRef.Name]; ok {
			for k, v := range cm.Data {
				vars[ef.Prefix+k] = v
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			vars[e.Name] = e.Value
		}
	}
	return vars
}
