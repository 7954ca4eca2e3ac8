package validate

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// secretEnvName matches the settings that carry credentials: they must come from a Secret
// (secretKeyRef), never from a literal or a ConfigMap.
var secretEnvName = regexp.MustCompile(`(PASSWORD|SECRET|TOKEN|_PG_URL|_NATS_URL|ACCESS_KEY|PRIVATE_KEY|CREDENTIALS)`)

// credentialURL matches a URL with a password in it (scheme://user:pass@host).
var credentialURL = regexp.MustCompile(`://[^/@\s]+:[^/@\s]+@`)

// vaultTokenPath is where the platform's keys package reads the service-account token.
const vaultTokenPath = "/var/run/secrets/kubernetes.io/serviceaccount" //nolint:gosec // G101: a mount path, not a credential

// CheckDeployment checks one Deployment: the pod rules of CheckPod plus gRPC readiness and
// liveness probes on a declared container port. configMaps resolves envFrom references.
func CheckDeployment(d *appsv1.Deployment, configMaps map[string]*corev1.ConfigMap) []error {
	id := "Deployment " + d.Name
	errs := CheckPod(id, &d.Spec.Template.Spec, configMaps)
	for _, c := range d.Spec.Template.Spec.Containers {
		cid := fmt.Sprintf("%s container %s", id, c.Name)
		for _, p := range []struct {
			what  string
			probe *corev1.Probe
		}{{"readinessProbe", c.ReadinessProbe}, {"livenessProbe", c.LivenessProbe}} {
			switch {
			case p.probe == nil:
				errs = append(errs, fmt.Errorf("%s: no %s", cid, p.what))
			case p.probe.GRPC == nil:
				errs = append(errs, fmt.Errorf("%s: %s is not a gRPC health probe", cid, p.what))
			case !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.ContainerPort == p.probe.GRPC.Port }):
				errs = append(errs, fmt.Errorf("%s: %s port %d is not a container port", cid, p.what, p.probe.GRPC.Port))
			}
		}
	}
	if d.Spec.Selector == nil || len(d.Spec.Selector.MatchLabels) == 0 {
		errs = append(errs, fmt.Errorf("%s: no selector", id))
	}
	return errs
}

// CheckPod checks the rules every securemsg pod keeps: non-root, seccomp RuntimeDefault,
// no privilege escalation, read-only root file system, every capability dropped, CPU and
// memory requests and limits, pinned images, secrets only from Secrets, and no service-account
// token except the projected, Vault-audience one in pods that log in to Vault.
func CheckPod(id string, spec *corev1.PodSpec, configMaps map[string]*corev1.ConfigMap) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(id+": "+format, args...)) }
	psc := spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if !isTrue(psc.RunAsNonRoot) {
		bad("pod securityContext.runAsNonRoot is not true")
	}
	if psc.RunAsUser != nil && *psc.RunAsUser == 0 {
		bad("pod runs as uid 0")
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		bad("pod seccompProfile is not RuntimeDefault")
	}
	if !isFalse(spec.AutomountServiceAccountToken) {
		bad("automountServiceAccountToken is not false")
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		bad("uses a host namespace")
	}
	if len(spec.InitContainers) > 0 || len(spec.EphemeralContainers) > 0 {
		bad("has init or ephemeral containers, which these checks do not cover")
	}

	env := map[string]string{} // what the containers see from ConfigMaps and literals
	for _, c := range spec.Containers {
		cid := fmt.Sprintf("container %s", c.Name)
		sc := c.SecurityContext
		if sc == nil {
			bad("%s: no securityContext", cid)
		} else {
			if !isFalse(sc.AllowPrivilegeEscalation) {
				bad("%s: allowPrivilegeEscalation is not false", cid)
			}
			if !isTrue(sc.ReadOnlyRootFilesystem) {
				bad("%s: readOnlyRootFilesystem is not true", cid)
			}
			if isTrue(sc.Privileged) {
				bad("%s: privileged", cid)
			}
			if sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot {
				bad("%s: runAsNonRoot is false", cid)
			}
			if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
				bad("%s: runs as uid 0", cid)
			}
			if sc.SeccompProfile != nil && sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				bad("%s: seccompProfile is not RuntimeDefault", cid)
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				bad("%s: capabilities do not drop ALL", cid)
			} else if len(sc.Capabilities.Add) > 0 {
				bad("%s: adds capabilities %v", cid, sc.Capabilities.Add)
			}
		}
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[res]; !ok {
				bad("%s: no %s request", cid, res)
			}
			if _, ok := c.Resources.Limits[res]; !ok {
				bad("%s: no %s limit", cid, res)
			}
		}
		if q, l := c.Resources.Requests.Memory(), c.Resources.Limits.Memory(); !q.IsZero() && !l.IsZero() && q.Cmp(*l) > 0 {
			bad("%s: memory request above limit", cid)
		}
		if err := checkImage(c.Image); err != nil {
			bad("%s: %v", cid, err)
		}
		for _, ef := range c.EnvFrom {
			switch {
			case ef.ConfigMapRef != nil:
				cm, ok := configMaps[ef.ConfigMapRef.Name]
				if !ok {
					bad("%s: envFrom ConfigMap %s is not in the build", cid, ef.ConfigMapRef.Name)
					continue
				}
				for k, v := range cm.Data {
					env[k] = v
				}
			default:
				bad("%s: envFrom other than a ConfigMap", cid)
			}
		}
		for _, e := range c.Env {
			switch {
			case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			case secretEnvName.MatchString(e.Name):
				bad("%s: %s carries a credential but is not from a Secret", cid, e.Name)
			default:
				env[e.Name] = e.Value
			}
		}
	}
	for k, v := range env {
		if secretEnvName.MatchString(k) {
			bad("%s carries a credential but comes from a ConfigMap or literal", k)
		}
		if credentialURL.MatchString(v) {
			bad("%s holds a URL with a password outside a Secret", k)
		}
	}

	// Service-account tokens: only a projected, Vault-audience token, only with Vault k8s auth.
	for _, v := range spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, s := range v.Projected.Sources {
			if s.ServiceAccountToken == nil {
				continue
			}
			if s.ServiceAccountToken.Audience != "vault" {
				bad("volume %s: service-account token for audience %q, want vault", v.Name, s.ServiceAccountToken.Audience)
			}
			if env["SECUREMSG_VAULT_K8S_ROLE"] == "" {
				bad("volume %s: service-account token without SECUREMSG_VAULT_K8S_ROLE", v.Name)
			}
		}
	}
	if env["SECUREMSG_VAULT_K8S_ROLE"] != "" && !mountsAt(spec, vaultTokenPath) {
		bad("SECUREMSG_VAULT_K8S_ROLE is set but no token is mounted at %s", vaultTokenPath)
	}
	return errs
}

func mountsAt(spec *corev1.PodSpec, path string) bool {
	for _, c := range spec.Containers {
		for _, m := range c.VolumeMounts {
			if m.MountPath == path {
				return true
			}
		}
	}
	return false
}

// checkImage wants a named image with a tag other than latest, or a digest.
func checkImage(image string) error {
	if image == "" {
		return fmt.Errorf("no image")
	}
	if strings.Contains(image, "@sha256:") {
		return nil
	}
	name := image[strings.LastIndex(image, "/")+1:]
	i := strings.LastIndex(name, ":")
	if i < 0 || i == len(name)-1 {
		return fmt.Errorf("image %s has no tag or digest", image)
	}
	tag := name[i+1:]
	if tag == "latest" {
		return fmt.Errorf("image %s uses the latest tag", image)
	}
	return nil
}

func isTrue(b *bool) bool  { return b != nil && *b }
func isFalse(b *bool) bool { return b != nil && !*b }
