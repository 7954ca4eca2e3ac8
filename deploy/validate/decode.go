package validate

import (
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Certificate is cert-manager.io/v1 Certificate, reduced to the fields securemsg uses. Strict
// decoding makes it an allow-list: a field cert-manager does not have, or one we have not
// reviewed, fails the build. Field names follow cert-manager's v1 API.
type Certificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              CertificateSpec `json:"spec"`
}

// CertificateSpec is the reviewed part of cert-manager's CertificateSpec.
type CertificateSpec struct {
	SecretName  string                 `json:"secretName"`
	IsCA        bool                   `json:"isCA,omitempty"`
	CommonName  string                 `json:"commonName,omitempty"`
	Duration    string                 `json:"duration,omitempty"`
	RenewBefore string                 `json:"renewBefore,omitempty"`
	PrivateKey  *CertificatePrivateKey `json:"privateKey,omitempty"`
	Usages      []string               `json:"usages,omitempty"`
	DNSNames    []string               `json:"dnsNames,omitempty"`
	URIs        []string               `json:"uris,omitempty"`
	IssuerRef   IssuerRef              `json:"issuerRef"`
}

// CertificatePrivateKey is cert-manager's CertificatePrivateKey.
type CertificatePrivateKey struct {
	Algorithm      string `json:"algorithm,omitempty"`
	Size           int    `json:"size,omitempty"`
	RotationPolicy string `json:"rotationPolicy,omitempty"`
	Encoding       string `json:"encoding,omitempty"`
}

// IssuerRef is cert-manager's ObjectReference to an Issuer or ClusterIssuer.
type IssuerRef struct {
	Name  string `json:"name"`
	Kind  string `json:"kind,omitempty"`
	Group string `json:"group,omitempty"`
}

// Issuer is cert-manager.io/v1 Issuer with the two issuer types securemsg uses.
type Issuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SelfSigned *struct{} `json:"selfSigned,omitempty"`
		CA         *struct {
			SecretName string `json:"secretName"`
		} `json:"ca,omitempty"`
	} `json:"spec"`
}

// ServiceMonitor is monitoring.coreos.com/v1 ServiceMonitor (Prometheus Operator), reduced to
// the reviewed fields.
type ServiceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path,omitempty"`
			Scheme        string `json:"scheme,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// PrometheusRule is monitoring.coreos.com/v1 PrometheusRule (Prometheus Operator), reduced to
// the fields the rules file uses: alerting rules only.
type PrometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for,omitempty"`
				Labels      map[string]string `json:"labels,omitempty"`
				Annotations map[string]string `json:"annotations,omitempty"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// newObject returns an empty typed object for apiVersion and kind, or nil for a type this
// repository does not ship (which is itself an error: every kind must be reviewed here).
func newObject(apiVersion, kind string) any {
	switch apiVersion + "/" + kind {
	case "v1/Namespace":
		return &corev1.Namespace{}
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}
	case "v1/Service":
		return &corev1.Service{}
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}
	case "v1/Secret":
		return &corev1.Secret{}
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}
	case "batch/v1/CronJob":
		return &batchv1.CronJob{}
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "autoscaling/v2/HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}
	case "networking.k8s.io/v1/NetworkPolicy":
		return &networkingv1.NetworkPolicy{}
	case "networking.k8s.io/v1/Ingress":
		return &networkingv1.Ingress{}
	case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}
	case "cert-manager.io/v1/Certificate":
		return &Certificate{}
	case "cert-manager.io/v1/Issuer":
		return &Issuer{}
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &ServiceMonitor{}
	case "monitoring.coreos.com/v1/PrometheusRule":
		return &PrometheusRule{}
	}
	return nil
}

// DecodeStrict decodes r into its Go type the way the API server's strict field validation does
// (sigs.k8s.io/yaml to JSON refusing duplicate keys, then sigs.k8s.io/json UnmarshalStrict:
// unknown fields and fields in the wrong case are errors, unlike encoding/json), so a
// misspelt or misplaced field (say, a probe under the pod instead of the container) fails here
// instead of being dropped silently by the API server.
func DecodeStrict(r Rendered) (any, error) {
	obj := newObject(r.APIVersion, r.Kind)
	if obj == nil {
		return nil, fmt.Errorf("%s: kind %s/%s is not one deploy/validate knows; add it to newObject", r.ID(), r.APIVersion, r.Kind)
	}
	j, err := yaml.YAMLToJSONStrict(r.YAML) // duplicate keys fail here
	if err != nil {
		return nil, fmt.Errorf("%s: strict decode: %w", r.ID(), err)
	}
	strict, err := kjson.UnmarshalStrict(j, obj) // unknown or wrongly cased fields fail here
	if err != nil {
		return nil, fmt.Errorf("%s: decode: %w", r.ID(), err)
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("%s: strict decode: %w", r.ID(), errors.Join(strict...))
	}
	return obj, nil
}

// Objects is a decoded build, indexed by kind for the checks.
type Objects struct {
	All             []any
	Deployments     []*appsv1.Deployment
	CronJobs        []*batchv1.CronJob
	Services        []*corev1.Service
	ServiceAccounts []*corev1.ServiceAccount
	ConfigMaps      map[string]*corev1.ConfigMap
	Secrets         []*corev1.Secret
	PDBs            []*policyv1.PodDisruptionBudget
	HPAs            []*autoscalingv2.HorizontalPodAutoscaler
	NetworkPolicies []*networkingv1.NetworkPolicy
	Ingresses       []*networkingv1.Ingress
	Certificates    []*Certificate
	ServiceMonitors []*ServiceMonitor
	PrometheusRules []*PrometheusRule
	Namespaced      map[string]string // "Kind/name" -> namespace, for namespaced kinds
}

// DecodeAll strictly decodes every rendered object and indexes the result; it returns every
// decoding error, not only the first.
func DecodeAll(rs []Rendered) (*Objects, []error) {
	o := &Objects{ConfigMaps: map[string]*corev1.ConfigMap{}, Namespaced: map[string]string{}}
	var errs []error
	for _, r := range rs {
		obj, err := DecodeStrict(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		o.All = append(o.All, obj)
		switch obj.(type) {
		case *corev1.Namespace, *rbacv1.ClusterRoleBinding: // cluster-scoped
		default:
			o.Namespaced[r.Kind+"/"+r.Name] = r.Namespace
		}
		switch v := obj.(type) {
		case *appsv1.Deployment:
			o.Deployments = append(o.Deployments, v)
		case *batchv1.CronJob:
			o.CronJobs = append(o.CronJobs, v)
		case *corev1.Service:
			o.Services = append(o.Services, v)
		case *corev1.ServiceAccount:
			o.ServiceAccounts = append(o.ServiceAccounts, v)
		case *corev1.ConfigMap:
			o.ConfigMaps[v.Name] = v
		case *corev1.Secret:
			o.Secrets = append(o.Secrets, v)
		case *policyv1.PodDisruptionBudget:
			o.PDBs = append(o.PDBs, v)
		case *autoscalingv2.HorizontalPodAutoscaler:
			o.HPAs = append(o.HPAs, v)
		case *networkingv1.NetworkPolicy:
			o.NetworkPolicies = append(o.NetworkPolicies, v)
		case *networkingv1.Ingress:
			o.Ingresses = append(o.Ingresses, v)
		case *Certificate:
			o.Certificates = append(o.Certificates, v)
		case *ServiceMonitor:
			o.ServiceMonitors = append(o.ServiceMonitors, v)
		case *PrometheusRule:
			o.PrometheusRules = append(o.PrometheusRules, v)
		}
	}
	return o, errs
}
