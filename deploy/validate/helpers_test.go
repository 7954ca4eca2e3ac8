package validate

import (
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// PDB and HPA shorten the test code's type names.
type (
	PDB = policyv1.PodDisruptionBudget
	HPA = autoscalingv2.HorizontalPodAutoscaler
)

func find(ds []*appsv1.Deployment, name string) *appsv1.Deployment {
	for _, d := range ds {
		if d.Name == name {
			return d
		}
	}
	return nil
}

func findService(ss []*corev1.Service, name string) *corev1.Service {
	for _, s := range ss {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func findSA(ss []*corev1.ServiceAccount, name string) *corev1.ServiceAccount {
	for _, s := range ss {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func metaSelector(s *metav1.LabelSelector) (labels.Selector, error) {
	return metav1.LabelSelectorAsSelector(s)
}

// containerEnv is what the first container of d sees from its ConfigMaps and literals.
func containerEnv(d *appsv1.Deployment, o *Objects) map[string]string {
	env := map[string]string{}
	c := d.Spec.Template.Spec.Containers[0]
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil {
			if cm := o.ConfigMaps[ef.ConfigMapRef.Name]; cm != nil {
				for k, v := range cm.Data {
					env[k] = v
				}
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	return env
}
