package policy_test

import (
	"maps"
	"slices"
	"testing"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
)

// TestSlicingByActionChangesNoDecision: deciding against the policies whose action scope can
// match gives exactly the decision, reasons and break-glass flag of deciding against all of
// them, for every action, every caller of the tables and every record, with and without a
// break-glass reason — and the slices are much smaller than the set.
func TestSlicingByActionChangesNoDecision(t *testing.T) {
	e := newEngine(t, nil)
	principals := []*auth.Principal{patient, patient2, proxy, proxyExpired, clinician, clinStale, clinNoMFA, clinNoAMR,
		staff, staffNoMF, admin, admStale, admNoMFA, adminClin, auditor, audNoMFA, noRoles, svcAttach, svcMsg, svcNotif}
	for _, p := range callers() {
		principals = append(principals, p)
	}
	resources := []policy.Resource{threadA, threadB, thread2A, threadAC, thread3, msgByPat, msgByCl, msgByPx, attA, attB, attAC,
		poolA, poolB, pat1, pat2, policy.APIResource("messaging"), policy.APIResource("attachment"),
		policy.APIResource("notification"), policy.APIResource("audit")}
	contexts := []policy.Context{{}, {BreakGlassReason: "patient unconscious in ED"}, {TargetPoolID: "pool-a"}}
	actions := append(e.Actions(), nonRPCActions...)
	total := len(maps.Collect(e.PolicySet().All()))
	decisions, allowed := 0, 0
	for _, action := range actions {
		if n := e.SliceSize(action); n == 0 || n >= total {
			t.Errorf("%s is decided against %d of %d policies; slicing should keep only those naming it", action, n, total)
		}
		for _, p := range principals {
			for _, res := range resources {
				for _, rc := range contexts {
					got, want := e.Evaluate(p, action, res, rc), e.EvaluateUnsliced(p, action, res, rc)
					decisions++
					if got.Allowed {
						allowed++
					}
					if got.Allowed != want.Allowed || got.BreakGlass != want.BreakGlass || got.PHIRead != want.PHIRead ||
						!slices.Equal(slices.Sorted(slices.Values(got.Reasons)), slices.Sorted(slices.Values(want.Reasons))) {
						t.Errorf("%s by %s on %s/%s (%+v): sliced %+v, unsliced %+v", action, p.Subject, res.Type, res.ID, rc, got, want)
					}
				}
			}
		}
	}
	if allowed == 0 || allowed == decisions {
		t.Fatalf("%d of %d decisions allowed: the comparison must cover both answers", allowed, decisions)
	}
	t.Logf("%d decisions compared, %d allowed", decisions, allowed)
}
