package validate

import (
	"fmt"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
)

// nameLabel is the label that names a securemsg workload's pods.
const nameLabel = "app.kubernetes.io/name"

// privateRanges must be excepted from any internet-wide egress, so "the internet" never
// includes the cluster, the node network or the cloud metadata endpoint.
var privateRanges = []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"}

// Flows lists what the NetworkPolicies allow, one string per (direction, peer, pod, port):
//
//	"ingress ingress-nginx/ingress-nginx -> messaging tcp/7001"
//	"egress messaging -> postgres/postgres tcp/5432"
//
// Pods of the namespace are named by their app.kubernetes.io/name label ("*" for every pod);
// peers elsewhere as namespace/name; ipBlock 0.0.0.0/0 minus the private ranges as "internet".
// Anything broader or vaguer (an empty peer, a rule without ports, a bare namespaceSelector,
// matchExpressions, another CIDR) is an error, so the flow list stays exact. It also reports
// whether a default-deny policy for both directions exists.
func Flows(policies []*networkingv1.NetworkPolicy) (flows []string, defaultDeny bool, errs []error) {
	for _, np := range policies {
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("NetworkPolicy %s: "+format, append([]any{np.Name}, args...)...))
		}
		target, err := podName(np.Spec.PodSelector.MatchLabels, len(np.Spec.PodSelector.MatchExpressions))
		if err != nil {
			bad("podSelector: %v", err)
			continue
		}
		types := np.Spec.PolicyTypes
		if len(np.Spec.Ingress) > 0 && !slices.Contains(types, networkingv1.PolicyTypeIngress) ||
			len(np.Spec.Egress) > 0 && !slices.Contains(types, networkingv1.PolicyTypeEgress) {
			bad("has rules for a policy type it does not list")
		}
		if target == "*" && len(np.Spec.Ingress) == 0 && len(np.Spec.Egress) == 0 &&
			slices.Contains(types, networkingv1.PolicyTypeIngress) && slices.Contains(types, networkingv1.PolicyTypeEgress) {
			defaultDeny = true
		}
		// addRule adds a rule's flows, one for every peer and port it allows; its peers are where
		// ingress comes from and where egress goes to.
		addRule := func(dir string, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) {
			peerList, perr := peerNames(peers)
			portList, terr := portNames(ports)
			if perr != nil || terr != nil {
				bad("%s: %v", dir, firstErr(perr, terr))
				return
			}
			for _, p := range peerList {
				from, to := p, target
				if dir == "egress" {
					from, to = target, p
				}
				for _, port := range portList {
					flows = append(flows, fmt.Sprintf("%s %s -> %s %s", dir, from, to, port))
				}
			}
		}
		for _, r := range np.Spec.Ingress {
			addRule("ingress", r.From, r.Ports)
		}
		for _, r := range np.Spec.Egress {
			addRule("egress", r.To, r.Ports)
		}
	}
	slices.Sort(flows)
	return slices.Compact(flows), defaultDeny, errs
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func podName(labels map[string]string, expressions int) (string, error) {
	switch {
	case expressions > 0:
		return "", fmt.Errorf("matchExpressions are not allowed")
	case len(labels) == 0:
		return "*", nil
	case len(labels) == 1 && labels[nameLabel] != "":
		return labels[nameLabel], nil
	}
	return "", fmt.Errorf("select pods by %s only, got %v", nameLabel, labels)
}

func peerNames(peers []networkingv1.NetworkPolicyPeer) ([]string, error) {
	if len(peers) == 0 {
		return nil, fmt.Errorf("a rule without peers allows every peer")
	}
	var out []string
	for _, p := range peers {
		switch {
		case p.IPBlock != nil:
			if p.PodSelector != nil || p.NamespaceSelector != nil {
				return nil, fmt.Errorf("ipBlock mixed with selectors")
			}
			if p.IPBlock.CIDR != "0.0.0.0/0" {
				return nil, fmt.Errorf("ipBlock %s: only 0.0.0.0/0 minus private ranges is in the flow plan", p.IPBlock.CIDR)
			}
			for _, r := range privateRanges {
				if !slices.Contains(p.IPBlock.Except, r) {
					return nil, fmt.Errorf("ipBlock 0.0.0.0/0 does not except %s", r)
				}
			}
			out = append(out, "internet")
		case p.PodSelector == nil:
			return nil, fmt.Errorf("a peer without podSelector reaches every pod of a namespace")
		case p.NamespaceSelector == nil:
			name, err := podName(p.PodSelector.MatchLabels, len(p.PodSelector.MatchExpressions))
			if err != nil || name == "*" {
				return nil, fmt.Errorf("peer pods: must name one workload (%v)", err)
			}
			out = append(out, name)
		default:
			ns := p.NamespaceSelector
			nsName := ns.MatchLabels["kubernetes.io/metadata.name"]
			if len(ns.MatchExpressions) > 0 || len(ns.MatchLabels) != 1 || nsName == "" {
				return nil, fmt.Errorf("namespaceSelector must be kubernetes.io/metadata.name only, got %v", ns.MatchLabels)
			}
			if len(p.PodSelector.MatchExpressions) > 0 || len(p.PodSelector.MatchLabels) != 1 {
				return nil, fmt.Errorf("peer in %s: select pods by one label", nsName)
			}
			for _, v := range p.PodSelector.MatchLabels {
				out = append(out, nsName+"/"+v)
			}
		}
	}
	return out, nil
}

func portNames(ports []networkingv1.NetworkPolicyPort) ([]string, error) {
	if len(ports) == 0 {
		return nil, fmt.Errorf("a rule without ports allows every port")
	}
	var out []string
	for _, p := range ports {
		if p.Port == nil || p.EndPort != nil {
			return nil, fmt.Errorf("every port must be one number")
		}
		proto := "TCP"
		if p.Protocol != nil {
			proto = string(*p.Protocol)
		}
		out = append(out, strings.ToLower(proto)+"/"+p.Port.String())
	}
	return out, nil
}
