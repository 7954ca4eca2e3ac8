package validate

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// browserPort is every service's HTTP edge port (SECUREMSG_HTTP_ADDR), named https.
const browserPort = 8443

// protoService is the full protobuf name of a service: messaging → securemsg.messaging.v1.
// MessagingService.
func protoService(name string) string {
	return "securemsg." + name + ".v1." + strings.ToUpper(name[:1]) + name[1:] + "Service"
}

// restRoutes reads the REST paths of a service from its generated OpenAPI document
// (gen/openapi), the contract the ingress must route.
func restRoutes(t *testing.T, name string) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "gen", "openapi", protoService(name)+".json"))
	if err != nil {
		t.Fatalf("OpenAPI document of %s: %v", name, err)
	}
	var doc struct {
		Paths map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("OpenAPI document of %s: %v", name, err)
	}
	var out []string
	for p := range doc.Paths {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// prefixCovers reports whether a Kubernetes Prefix path matches path (element by element: /v1/
// threads covers /v1/threads and /v1/threads/x:archive, not /v1/threadsx).
func prefixCovers(prefix, path string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// TestBrowserIngress: each service's browser edge is published by one Ingress of the
// browser-ingress component: TLS on the public host from a publicly trusted (ClusterIssuer)
// certificate; TLS again to the pod, verified against the service's own certificate name; only
// the service's HTTP edge port as backend (never a gRPC port); every REST route of its OpenAPI
// document and its Connect/gRPC-Web prefix routed; CORS left to the service; streams unbuffered.
func TestBrowserIngress(t *testing.T) {
	t.Parallel()
	forEachOverlay(t, func(t *testing.T, overlay string, o *Objects) {
		certBySecret := map[string]*Certificate{}
		for _, c := range o.Certificates {
			certBySecret[c.Spec.SecretName] = c
		}
		if up := certBySecret["ingress-upstream"]; up == nil || up.Spec.IssuerRef.Name != "securemsg-ca" || len(up.Spec.URIs) > 0 {
			t.Errorf("no Certificate writes ingress-upstream from securemsg-ca without a service identity (got %+v)", up)
		}
		routedBy := map[string]string{} // host + path → Ingress
		for _, svc := range services {
			i := slices.IndexFunc(o.Ingresses, func(in *networkingv1.Ingress) bool { return in.Name == svc.name+"-browser" })
			if i < 0 {
				t.Errorf("%s: no Ingress %s-browser", overlay, svc.name)
				continue
			}
			in := o.Ingresses[i]
			checkIngressAnnotations(t, in, svc.name, certBySecret)
			if in.Spec.IngressClassName == nil || *in.Spec.IngressClassName != "nginx" {
				t.Errorf("Ingress %s: ingressClassName %v, want nginx", in.Name, in.Spec.IngressClassName)
			}
			tlsHosts := map[string]bool{}
			for _, tls := range in.Spec.TLS {
				c := certBySecret[tls.SecretName]
				if c == nil || c.Spec.IssuerRef.Kind != "ClusterIssuer" {
					t.Errorf("Ingress %s: TLS Secret %s is not written by a Certificate from a (public) ClusterIssuer", in.Name, tls.SecretName)
					continue
				}
				for _, h := range tls.Hosts {
					if !slices.Contains(c.Spec.DNSNames, h) {
						t.Errorf("Ingress %s: TLS host %s is not in Certificate %s's dnsNames %v", in.Name, h, c.Name, c.Spec.DNSNames)
					}
					tlsHosts[h] = true
				}
			}
			var prefixes []string
			for _, rule := range in.Spec.Rules {
				if !tlsHosts[rule.Host] {
					t.Errorf("Ingress %s: host %q is served without TLS", in.Name, rule.Host)
				}
				if rule.HTTP == nil {
					continue
				}
				for _, p := range rule.HTTP.Paths {
					if p.PathType == nil || *p.PathType != networkingv1.PathTypePrefix {
						t.Errorf("Ingress %s: path %s is not a Prefix path", in.Name, p.Path)
					}
					b := p.Backend.Service
					if b == nil || b.Name != svc.name || b.Port.Name != "https" {
						t.Errorf("Ingress %s: path %s goes to %+v, want service %s port https (the HTTP edge)", in.Name, p.Path, p.Backend, svc.name)
					}
					if other, dup := routedBy[rule.Host+p.Path]; dup {
						t.Errorf("path %s%s is routed by both %s and %s", rule.Host, p.Path, other, in.Name)
					}
					routedBy[rule.Host+p.Path] = in.Name
					prefixes = append(prefixes, p.Path)
				}
			}
			for _, want := range append([]string{"/" + protoService(svc.name) + "/x"}, restRoutes(t, svc.name)...) {
				if !slices.ContainsFunc(prefixes, func(p string) bool { return prefixCovers(p, want) }) {
					t.Errorf("Ingress %s routes none of %v to %s", in.Name, prefixes, want)
				}
			}
			checkEdgeWorkload(t, o, svc.name)
		}
	})
}

// checkIngressAnnotations: TLS to the pod, verified against the service's own name; CORS and
// buffering left to the service.
func checkIngressAnnotations(t *testing.T, in *networkingv1.Ingress, svc string, certBySecret map[string]*Certificate) {
	t.Helper()
	a := in.Annotations
	for k, want := range map[string]string{
		"nginx.ingress.kubernetes.io/backend-protocol":      "HTTPS",
		"nginx.ingress.kubernetes.io/proxy-ssl-verify":      "on",
		"nginx.ingress.kubernetes.io/proxy-ssl-name":        svc + "." + namespace + ".svc",
		"nginx.ingress.kubernetes.io/proxy-ssl-secret":      namespace + "/ingress-upstream",
		"nginx.ingress.kubernetes.io/ssl-redirect":          "true",
		"nginx.ingress.kubernetes.io/proxy-buffering":       "off",
		"nginx.ingress.kubernetes.io/proxy-ssl-server-name": "on",
	} {
		if a[k] != want {
			t.Errorf("Ingress %s: annotation %s = %q, want %q", in.Name, k, a[k], want)
		}
	}
	if c := certBySecret[svc+"-tls"]; c == nil || !slices.Contains(c.Spec.DNSNames, a["nginx.ingress.kubernetes.io/proxy-ssl-name"]) {
		t.Errorf("Ingress %s: proxy-ssl-name %q is not a name of %s's certificate", in.Name, a["nginx.ingress.kubernetes.io/proxy-ssl-name"], svc)
	}
	for k := range a {
		if strings.Contains(k, "cors") || strings.Contains(k, "snippet") {
			t.Errorf("Ingress %s: annotation %s — CORS is the service's to answer (exact origins), and snippets bypass review", in.Name, k)
		}
	}
}

// checkEdgeWorkload: the service listens for the edge on the port the Service and the Ingress
// name, lists its portal origins exactly and trusts the ingress controller as its proxy.
func checkEdgeWorkload(t *testing.T, o *Objects, svc string) {
	t.Helper()
	d := find(o.Deployments, svc)
	s := findService(o.Services, svc)
	if d == nil || s == nil {
		t.Errorf("%s: no Deployment or Service", svc)
		return
	}
	if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool {
		return p.Name == "https" && p.Port == browserPort && p.TargetPort.StrVal == "https"
	}) {
		t.Errorf("Service %s has no port https %d → https", svc, browserPort)
	}
	if !slices.ContainsFunc(d.Spec.Template.Spec.Containers[0].Ports, func(p corev1.ContainerPort) bool {
		return p.Name == "https" && p.ContainerPort == browserPort
	}) {
		t.Errorf("Deployment %s has no container port https %d", svc, browserPort)
	}
	env := containerEnv(d, o)
	if got := env["SECUREMSG_HTTP_ADDR"]; got != ":8443" {
		t.Errorf("%s: SECUREMSG_HTTP_ADDR = %q, want :8443", svc, got)
	}
	origins := strings.Split(env["SECUREMSG_HTTP_ALLOWED_ORIGINS"], ",")
	for _, origin := range origins {
		if !strings.HasPrefix(origin, "https://") || strings.Contains(origin, "*") {
			t.Errorf("%s: SECUREMSG_HTTP_ALLOWED_ORIGINS entry %q, want an exact https origin", svc, origin)
		}
	}
	proxies := strings.Split(env["SECUREMSG_TRUSTED_PROXIES"], ",")
	for _, p := range proxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			t.Errorf("%s: SECUREMSG_TRUSTED_PROXIES entry %q: %v", svc, p, err)
		}
	}
	if h := env["SECUREMSG_TRUSTED_PROXY_HEADER"]; h != "X-Forwarded-For" {
		t.Errorf("%s: SECUREMSG_TRUSTED_PROXY_HEADER = %q, want X-Forwarded-For (what ingress-nginx sets)", svc, h)
	}
}
