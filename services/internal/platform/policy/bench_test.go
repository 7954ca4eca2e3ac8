package policy_test

import (
	"context"
	"testing"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
)

// BenchmarkRPCLevel is the Guard's per-request cost: one rpc-level decision, principal entity
// built each time (as the Guard does once per request).
func BenchmarkRPCLevel(b *testing.B) {
	e := newEngine(b, nil)
	res := policy.APIResource("messaging")
	b.ReportAllocs()
	for b.Loop() {
		if !e.Evaluate(clinician, "messaging.GetThread", res, policy.Context{}).Allowed {
			b.Fatal("denied")
		}
	}
}

// BenchmarkRecordLevel is one record-level decision (a proxy reading a thread under a grant:
// the most conditions of any permit).
func BenchmarkRecordLevel(b *testing.B) {
	e := newEngine(b, nil)
	b.ReportAllocs()
	for b.Loop() {
		if !e.Evaluate(proxy, "messaging.GetThread", threadA, policy.Context{}).Allowed {
			b.Fatal("denied")
		}
	}
}

// BenchmarkRecordLevelAuthorize is Authorize as a use case calls it: decision plus the recorder
// call for the PHI read (a recorder that does nothing, so only the policy side is measured).
func BenchmarkRecordLevelAuthorize(b *testing.B) {
	e := newEngine(b, auth.RecorderFunc(func(context.Context, auth.DecisionRecord) error { return nil }))
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if d, err := e.Authorize(ctx, clinician, "messaging.GetThread", threadA, policy.Context{}); err != nil || !d.Allowed {
			b.Fatal("denied")
		}
	}
}
