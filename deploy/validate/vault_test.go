package validate

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const vaultDir = "../vault"

// policyPlan is every path each Vault policy grants, and nothing else: services wrap and unwrap
// DEKs under their own key only, and read that key at start (keys.EnsureKey; the keys package's
// TestServiceStartNeedsOnlyItsPolicy runs the start-up under these very files); the rewrap job
// rewraps and reads; operators rotate, retire (config), read and rewrap, and can never decrypt.
// Nobody but the administrator running setup-transit.sh creates a key.
var policyPlan = map[string]map[string][]string{
	"securemsg-messaging":    dekPaths("messaging"),
	"securemsg-attachment":   dekPaths("attachment"),
	"securemsg-notification": dekPaths("notification"),
	"securemsg-keys-rewrap":  merge(rewrapPaths("messaging"), rewrapPaths("attachment"), rewrapPaths("notification")),
	"securemsg-operator": merge(operatorPaths("messaging", true), operatorPaths("attachment", true),
		operatorPaths("notification", true)),
}

// vaultFreeWorkloads are the Deployments whose service never calls Vault, with the reason.
var vaultFreeWorkloads = map[string]string{
	"audit": "signs checkpoints with the Ed25519 key file of Secret audit-signing-key",
}

func dekPaths(svc string) map[string][]string {
	return map[string][]string{
		"transit/datakey/plaintext/securemsg-" + svc: {"update"},
		"transit/decrypt/securemsg-" + svc:           {"update"},
		"transit/keys/securemsg-" + svc:              {"read"},
	}
}

func rewrapPaths(svc string) map[string][]string {
	return map[string][]string{
		"transit/rewrap/securemsg-" + svc: {"update"},
		"transit/keys/securemsg-" + svc:   {"read"},
	}
}

func operatorPaths(key string, rewrap bool) map[string][]string {
	m := map[string][]string{
		"transit/keys/securemsg-" + key:             {"read"},
		"transit/keys/securemsg-" + key + "/rotate": {"update"},
		"transit/keys/securemsg-" + key + "/config": {"update"},
	}
	if rewrap {
		m["transit/rewrap/securemsg-"+key] = []string{"update"}
	}
	return m
}

func merge(ms ...map[string][]string) map[string][]string {
	out := map[string][]string{}
	for _, m := range ms {
		maps.Copy(out, m)
	}
	return out
}

func TestVaultPoliciesGrantOnlyThePlan(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(vaultDir, "policies", "*.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		name := filepath.Base(f[:len(f)-len(".hcl")])
		names = append(names, name)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseVaultPolicy(f)
			if err != nil {
				t.Fatal(err)
			}
			want, ok := policyPlan[name]
			if !ok {
				t.Fatalf("policy %s is not in the plan", name)
			}
			if !maps.EqualFunc(got, want, slices.Equal) {
				for p, caps := range got {
					if !slices.Equal(caps, want[p]) {
						t.Errorf("path %q grants %v, want %v", p, caps, want[p])
					}
				}
				for p, caps := range want {
					if _, ok := got[p]; !ok {
						t.Errorf("path %q (%v) missing", p, caps)
					}
				}
			}
		})
	}
	if want := slices.Sorted(maps.Keys(policyPlan)); !slices.Equal(names, want) {
		t.Errorf("policy files = %v, want %v", names, want)
	}
}

func TestParseVaultPolicyRejectsExtras(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, src string }{
		{"syntax error", `path "transit/decrypt/x" { capabilities = ["update"]`},
		{"parameter constraint", `path "transit/decrypt/x" { capabilities = ["update"] allowed_parameters = {} }`},
		{"other stanza", `name = "x"`},
		{"duplicate path", `path "a" { capabilities = ["read"] }` + "\n" + `path "a" { capabilities = ["update"] }`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := filepath.Join(t.TempDir(), "p.hcl")
			if err := os.WriteFile(f, []byte(tc.src), 0o600); err != nil {
				t.Fatal(err)
			}
			if got, err := ParseVaultPolicy(f); err == nil {
				t.Errorf("ParseVaultPolicy(%s) = %v, want an error", tc.name, got)
			}
		})
	}
}

func TestVaultSetupScripts(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"setup-transit.sh", "setup-kubernetes-auth.sh"} {
		if out, err := exec.CommandContext(t.Context(), "bash", "-n", filepath.Join(vaultDir, s)).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v: %s", s, err, out)
		}
	}
	transit, err := os.ReadFile(filepath.Join(vaultDir, "setup-transit.sh"))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^create_key (\S+) (\S+)$`).FindAllStringSubmatch(string(transit), -1) {
		keys[m[1]] = m[2]
	}
	wantKeys := map[string]string{
		"securemsg-messaging": "aes256-gcm96", "securemsg-attachment": "aes256-gcm96",
		"securemsg-notification": "aes256-gcm96",
	}
	if !maps.Equal(keys, wantKeys) {
		t.Errorf("setup-transit.sh keys = %v, want %v", keys, wantKeys)
	}

	auth, err := os.ReadFile(filepath.Join(vaultDir, "setup-kubernetes-auth.sh"))
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string][2]string{} // role -> service account, policy
	for _, m := range regexp.MustCompile(`(?m)^role (\S+) (\S+) (\S+)$`).FindAllStringSubmatch(string(auth), -1) {
		roles[m[1]] = [2]string{m[2], m[3]}
	}
	if len(roles) != 4 {
		t.Errorf("setup-kubernetes-auth.sh has %d roles, want 4 (the three services that use Vault and the rewrap job)", len(roles))
	}
	for role, r := range roles {
		if _, ok := policyPlan[r[1]]; !ok || r[1] == "securemsg-operator" {
			t.Errorf("role %s binds policy %s, want a workload policy from policies/", role, r[1])
		}
		if why, ok := vaultFreeWorkloads[r[0]]; ok {
			t.Errorf("role %s gives service account %s a Vault identity, but that service never calls Vault (it %s)", role, r[0], why)
		}
	}
	// Every workload logging in to Vault names a role bound to its own service account.
	forEachOverlay(t, func(t *testing.T, _ string, o *Objects) {
		check := func(id, sa, role string) {
			r, ok := roles[role]
			switch {
			case role == "":
				t.Errorf("%s: no SECUREMSG_VAULT_K8S_ROLE", id)
			case !ok:
				t.Errorf("%s: Vault role %s is not created by setup-kubernetes-auth.sh", id, role)
			case r[0] != sa:
				t.Errorf("%s runs as %s but role %s binds %s", id, sa, role, r[0])
			}
			if findSA(o.ServiceAccounts, sa) == nil {
				t.Errorf("%s: service account %s is not rendered", id, sa)
			}
		}
		for _, d := range o.Deployments {
			if _, ok := vaultFreeWorkloads[d.Name]; ok {
				// Its binary reads no SECUREMSG_VAULT_* variable: it gets no Vault setting, no
				// Vault token and no Vault CA at all.
				env := containerEnv(d, o)
				for k := range env {
					if strings.HasPrefix(k, "SECUREMSG_VAULT_") {
						t.Errorf("Deployment %s never calls Vault but is given %s", d.Name, k)
					}
				}
				for _, v := range d.Spec.Template.Spec.Volumes {
					if strings.HasPrefix(v.Name, "vault") {
						t.Errorf("Deployment %s never calls Vault but mounts volume %s", d.Name, v.Name)
					}
				}
				continue
			}
			check("Deployment "+d.Name, d.Spec.Template.Spec.ServiceAccountName, containerEnv(d, o)["SECUREMSG_VAULT_K8S_ROLE"])
		}
		for _, cj := range o.CronJobs {
			spec := cj.Spec.JobTemplate.Spec.Template.Spec
			role := ""
			for _, ef := range spec.Containers[0].EnvFrom {
				if cm := o.ConfigMaps[ef.ConfigMapRef.Name]; cm != nil {
					role = cm.Data["SECUREMSG_VAULT_K8S_ROLE"]
				}
			}
			check("CronJob "+cj.Name, spec.ServiceAccountName, role)
		}
	})
}
