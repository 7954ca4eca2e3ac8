package validate

import (
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// overlays are the deployable trees under deploy/k8s/overlays.
var overlays = []string{"dev", "prod"}

// services are the four workloads and their gRPC ports.
var services = []struct {
	name string
	port int32
}{{"messaging", 7001}, {"attachment", 7002}, {"notification", 7003}, {"audit", 7004}}

// namespace is where both overlays deploy.
const namespace = "securemsg"

var builds sync.Map // overlay -> func() (*Objects, error)

// buildOverlay builds and strictly decodes an overlay once per test binary.
func buildOverlay(t *testing.T, overlay string) *Objects {
	t.Helper()
	f, _ := builds.LoadOrStore(overlay, sync.OnceValues(func() (*Objects, error) {
		rs, err := Build(filepath.Join("..", "k8s", "overlays", overlay))
		if err != nil {
			return nil, err
		}
		objs, errs := DecodeAll(rs)
		if len(errs) > 0 {
			return nil, fmt.Errorf("%d objects failed strict decoding, first: %w", len(errs), errs[0])
		}
		return objs, nil
	}))
	objs, err := f.(func() (*Objects, error))()
	if err != nil {
		t.Fatalf("build overlay %s: %v", overlay, err)
	}
	return objs
}

func forEachOverlay(t *testing.T, fn func(t *testing.T, overlay string, o *Objects)) {
	t.Helper()
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			t.Parallel()
			fn(t, overlay, buildOverlay(t, overlay))
		})
	}
}

func reportAll(t *testing.T, errs []error) {
	t.Helper()
	for _, err := range errs {
		t.Error(err)
	}
}

func TestOverlaysBuildAndDecodeStrictly(t *testing.T) {
	t.Parallel()
	forEachOverlay(t, func(t *testing.T, _ string, o *Objects) {
		if len(o.All) < 40 {
			t.Errorf("build has %d objects, want the full suite (40 or more)", len(o.All))
		}
		for id, ns := range o.Namespaced {
			if ns != namespace {
				t.Errorf("%s namespace = %q, want %q", id, ns, namespace)
			}
		}
	})
}

func TestWorkloadsKeepPodRules(t *testing.T) {
	t.Parallel()
	forEachOverlay(t, func(t *testing.T, _ string, o *Objects) {
		if len(o.Deployments) != len(services) {
			t.Errorf("%d Deployments, want %d", len(o.Deployments), len(services))
		}
		for _, d := range o.Deployments {
			reportAll(t, CheckDeployment(d, o.ConfigMaps))
		}
		if len(o.CronJobs) == 0 {
			t.Error("no rewrap CronJobs rendered")
		}
		for _, cj := range o.CronJobs {
			if cj.Spec.Suspend == nil || !*cj.Spec.Suspend {
				t.Errorf("CronJob %s is not suspended; the rewrap job runs on demand only", cj.Name)
			}
			reportAll(t, CheckPod("CronJob "+cj.Name, &cj.Spec.JobTemplate.Spec.Template.Spec, o.ConfigMaps))
		}
		for _, sa := range o.ServiceAccounts {
			if !isFalse(sa.AutomountServiceAccountToken) {
				t.Errorf("ServiceAccount %s automountServiceAccountToken is not false", sa.Name)
			}
		}
	})
}

func TestEveryServiceHasItsObjects(t *testing.T) {
	t.Parallel()
	forEachOverlay(t, func(t *testing.T, overlay string, o *Objects) {
		for _, svc := range services {
			d := find(o.Deployments, svc.name)
			if d == nil {
				t.Errorf("no Deployment %s", svc.name)
				continue
			}
			pod := labels.Set(d.Spec.Template.Labels)
			if d.Spec.Template.Spec.ServiceAccountName != svc.name || findSA(o.ServiceAccounts, svc.name) == nil {
				t.Errorf("Deployment %s: service account %q, want its own ServiceAccount %s", svc.name, d.Spec.Template.Spec.ServiceAccountName, svc.name)
			}
			if s := findService(o.Services, svc.name); s == nil {
				t.Errorf("no Service %s", svc.name)
			} else {
				if !labels.SelectorFromSet(s.Spec.Selector).Matches(pod) {
					t.Errorf("Service %s selector %v does not match its pods", svc.name, s.Spec.Selector)
				}
				if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == svc.port && p.Name == "grpc" }) {
					t.Errorf("Service %s has no grpc port %d", svc.name, svc.port)
				}
			}
			pdbOK := slices.ContainsFunc(o.PDBs, func(p *PDB) bool {
				sel, err := metaSelector(p.Spec.Selector)
				return err == nil && sel.Matches(pod)
			})
			if !pdbOK {
				t.Errorf("no PodDisruptionBudget selects %s's pods", svc.name)
			}
			hpa := slices.IndexFunc(o.HPAs, func(h *HPA) bool {
				return h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == svc.name
			})
			if hpa < 0 {
				t.Errorf("no HorizontalPodAutoscaler targets Deployment %s", svc.name)
				continue
			}
			h := o.HPAs[hpa]
			minReplicas, want := int32(1), int32(1)
			if h.Spec.MinReplicas != nil {
				minReplicas = *h.Spec.MinReplicas
			}
			if overlay == "prod" {
				want = 3
			}
			if minReplicas != want || d.Spec.Replicas == nil || *d.Spec.Replicas != want {
				t.Errorf("%s %s: HPA minReplicas %d, replicas %v, want %d", overlay, svc.name, minReplicas, d.Spec.Replicas, want)
			}
			if h.Spec.MaxReplicas <= minReplicas {
				t.Errorf("%s %s: HPA maxReplicas %d not above minReplicas %d", overlay, svc.name, h.Spec.MaxReplicas, minReplicas)
			}
			env := containerEnv(d, o)
			wantStream := map[string]string{"dev": "1", "prod": "3"}[overlay]
			if got := env["SECUREMSG_NATS_STREAM_REPLICAS"]; got != wantStream {
				t.Errorf("%s %s: SECUREMSG_NATS_STREAM_REPLICAS = %q, want %q", overlay, svc.name, got, wantStream)
			}
			if got := env["SECUREMSG_GRPC_ADDR"]; got != fmt.Sprintf(":%d", svc.port) {
				t.Errorf("%s: SECUREMSG_GRPC_ADDR = %q, want :%d", svc.name, got, svc.port)
			}
		}
	})
}

func TestNoSecretValuesRendered(t *testing.T) {
	t.Parallel()
	forEachOverlay(t, func(t *testing.T, _ string, o *Objects) {
		for _, s := range o.Secrets {
			if s.Type != corev1.SecretTypeServiceAccountToken || len(s.Data) > 0 || len(s.StringData) > 0 {
				t.Errorf("Secret %s carries data or is not a service-account token request: secrets are created outside the repository", s.Name)
			}
		}
		for name, cm := range o.ConfigMaps {
			for k, v := range cm.Data {
				if secretEnvName.MatchString(k) || credentialURL.MatchString(v) {
					t.Errorf("ConfigMap %s key %s looks like a credential", name, k)
				}
			}
		}
	})
}

func TestCertificatesCoverEveryService(t *testing.T) {
	t.Parallel()
	forEachOverlay(t, func(t *testing.T, _ string, o *Objects) {
		for _, svc := range services {
			d := find(o.Deployments, svc.name)
			if d == nil {
				continue
			}
			secret := ""
			for _, v := range d.Spec.Template.Spec.Volumes {
				if v.Name == "tls" && v.Secret != nil {
					secret = v.Secret.SecretName
				}
			}
			i := slices.IndexFunc(o.Certificates, func(c *Certificate) bool { return c.Spec.SecretName == secret })
			if secret == "" || i < 0 {
				t.Errorf("%s: no cert-manager Certificate writes its TLS Secret %q", svc.name, secret)
				continue
			}
			c := o.Certificates[i].Spec
			for _, dns := range []string{svc.name, svc.name + "." + namespace + ".svc"} {
				if !slices.Contains(c.DNSNames, dns) {
					t.Errorf("Certificate %s dnsNames %v lack %s", secret, c.DNSNames, dns)
				}
			}
			if want := "spiffe://securemsg.local/service/" + svc.name; !slices.Equal(c.URIs, []string{want}) {
				t.Errorf("Certificate %s uris = %v, want [%s]", secret, c.URIs, want)
			}
			for _, u := range []string{"server auth", "client auth"} {
				if !slices.Contains(c.Usages, u) {
					t.Errorf("Certificate %s usages %v lack %s (mTLS)", secret, c.Usages, u)
				}
			}
			if c.IssuerRef.Name != "securemsg-ca" || c.IsCA {
				t.Errorf("Certificate %s: issuer %s isCA %v, want leaf from securemsg-ca", secret, c.IssuerRef.Name, c.IsCA)
			}
		}
	})
}

func TestServiceMonitorScrapesEveryService(t *testing.T) {
	t.Parallel()
	o := buildOverlay(t, "prod")
	if len(o.ServiceMonitors) != 1 {
		t.Fatalf("prod renders %d ServiceMonitors, want 1", len(o.ServiceMonitors))
	}
	sm := o.ServiceMonitors[0]
	sel, err := metaSelector(&sm.Spec.Selector)
	if err != nil {
		t.Fatalf("ServiceMonitor selector: %v", err)
	}
	for _, svc := range services {
		s := findService(o.Services, svc.name)
		if s == nil || !sel.Matches(labels.Set(s.Labels)) {
			t.Errorf("ServiceMonitor does not select Service %s", svc.name)
			continue
		}
		for _, ep := range sm.Spec.Endpoints {
			if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
				t.Errorf("Service %s has no port %q the ServiceMonitor scrapes", svc.name, ep.Port)
			}
		}
	}
}
