package validate

import (
	"slices"
	"testing"
)

// flowPlan is every flow DESIGN.md and docs/operations.md allow, and nothing else. Both ends of
// a flow inside the namespace appear: the caller's egress and the callee's ingress.
var flowPlan = []string{
	// DNS for every pod.
	"egress * -> kube-system/kube-dns tcp/53",
	"egress * -> kube-system/kube-dns udp/53",
	// Portal ingress -> messaging, attachment; auditors' tools -> audit.
	"ingress ingress-nginx/ingress-nginx -> messaging tcp/7001",
	"ingress ingress-nginx/ingress-nginx -> attachment tcp/7002",
	"ingress ingress-nginx/ingress-nginx -> audit tcp/7004",
	// Browsers through the ingress -> every service's HTTP edge (components/browser-ingress).
	"ingress ingress-nginx/ingress-nginx -> messaging tcp/8443",
	"ingress ingress-nginx/ingress-nginx -> attachment tcp/8443",
	"ingress ingress-nginx/ingress-nginx -> notification tcp/8443",
	"ingress ingress-nginx/ingress-nginx -> audit tcp/8443",
	// messaging <-> attachment (mTLS).
	"egress messaging -> attachment tcp/7002",
	"ingress messaging -> attachment tcp/7002",
	"egress attachment -> messaging tcp/7001",
	"ingress attachment -> messaging tcp/7001",
	// Every service -> Postgres, NATS; every service but audit (which never calls Vault) -> Vault.
	"egress messaging -> postgres/postgres tcp/5432",
	"egress messaging -> nats/nats tcp/4222",
	"egress messaging -> vault/vault tcp/8200",
	"egress attachment -> postgres/postgres tcp/5432",
	"egress attachment -> nats/nats tcp/4222",
	"egress attachment -> vault/vault tcp/8200",
	"egress notification -> postgres/postgres tcp/5432",
	"egress notification -> nats/nats tcp/4222",
	"egress notification -> vault/vault tcp/8200",
	"egress audit -> postgres/postgres tcp/5432",
	"egress audit -> nats/nats tcp/4222",
	// attachment -> MinIO, clamd.
	"egress attachment -> minio/minio tcp/9000",
	"egress attachment -> clamav/clamd tcp/3310",
	// notification -> SMTP (submission, SMTPS) and HTTPS providers (SMS, push, webhooks).
	"egress notification -> internet tcp/587",
	"egress notification -> internet tcp/465",
	"egress notification -> internet tcp/443",
	// Prometheus scrapes every service's metrics port.
	"ingress monitoring/prometheus -> messaging tcp/9090",
	"ingress monitoring/prometheus -> attachment tcp/9090",
	"ingress monitoring/prometheus -> notification tcp/9090",
	"ingress monitoring/prometheus -> audit tcp/9090",
	// Every service -> the OpenTelemetry collector's OTLP/HTTP port (components/tracing).
	"egress messaging -> observability/opentelemetry-collector tcp/4318",
	"egress attachment -> observability/opentelemetry-collector tcp/4318",
	"egress notification -> observability/opentelemetry-collector tcp/4318",
	"egress audit -> observability/opentelemetry-collector tcp/4318",
	// The on-demand rewrap job (components/keys-rewrap) -> Postgres, Vault.
	"egress keys-rewrap -> postgres/postgres tcp/5432",
	"egress keys-rewrap -> vault/vault tcp/8200",
}

func TestNetworkPoliciesMatchFlowPlan(t *testing.T) {
	t.Parallel()
	forEachOverlay(t, func(t *testing.T, _ string, o *Objects) {
		got, deny, errs := Flows(o.NetworkPolicies)
		reportAll(t, errs)
		if !deny {
			t.Error("no default-deny NetworkPolicy for ingress and egress")
		}
		want := slices.Sorted(slices.Values(flowPlan))
		for _, f := range want {
			if !slices.Contains(got, f) {
				t.Errorf("flow missing: %s", f)
			}
		}
		for _, f := range got {
			if !slices.Contains(want, f) {
				t.Errorf("flow not in the plan: %s", f)
			}
		}
	})
}
