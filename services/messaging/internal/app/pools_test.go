package app_test

import (
	"testing"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/app"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

func listIDs(t *testing.T, h *harness, p *auth.Principal, c app.ListPoolsCmd) ([]app.PoolView, error) {
	t.Helper()
	pools, _, err := h.svc.ListPools(t.Context(), p, c)
	return pools, err
}

// TestListPoolsViews: what each audience is shown, and who may list for whom.
func TestListPoolsViews(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	if _, err := h.svc.CreatePool(ctx, admin, domain.Pool{ID: "pool-referrals", Name: "Referrals", ListedOnly: true, PatientIDs: []string{"p-2001"}}); err != nil {
		t.Fatalf("CreatePool = %v", err)
	}
	_, err := h.svc.CreatePool(ctx, clinician, domain.Pool{ID: "pool-x", Name: "X"})
	if k, _ := usererr.KindOf(err); k != usererr.PermissionDenied {
		t.Fatalf("CreatePool(as clinician) = %v, want PermissionDenied", err)
	}

	pools, err := listIDs(t, h, patient, app.ListPoolsCmd{})
	if err != nil || len(pools) != 2 {
		t.Fatalf("ListPools(patient p-1001) = %d pools, %v; want cardiology and dermatology", len(pools), err)
	}
	pools, err = listIDs(t, h, teen, app.ListPoolsCmd{})
	if err != nil || len(pools) != 3 {
		t.Fatalf("ListPools(listed patient) = %d pools, %v; want 3", len(pools), err)
	}
	for _, v := range pools {
		if len(v.Pool.PatientIDs) != 0 || v.Pool.MemberCount != 0 {
			t.Errorf("patient's view of %s shows patients %v or members %d", v.Pool.ID, v.Pool.PatientIDs, v.Pool.MemberCount)
		}
	}
	all, err := listIDs(t, h, admin, app.ListPoolsCmd{})
	if err != nil || len(all) != 3 {
		t.Fatalf("ListPools(admin) = %d, %v", len(all), err)
	}
	mine, err := listIDs(t, h, clinician, app.ListPoolsCmd{})
	if err != nil || len(mine) != 1 || mine[0].Pool.ID != "pool-cardiology" || mine[0].Pool.MemberCount != 2 {
		t.Fatalf("ListPools(clinician) = %+v, %v; want cardiology with its 2 members", mine, err)
	}

	// A proxy lists for a patient it may write for, and only for one.
	if _, err := listIDs(t, h, proxy, app.ListPoolsCmd{}); err == nil {
		t.Error("ListPools(proxy, no patient) = nil error, want FIELD_REQUIRED")
	}
	if pools, err := listIDs(t, h, proxy, app.ListPoolsCmd{PatientID: "p-2001"}); err != nil || len(pools) != 3 {
		t.Errorf("ListPools(proxy for p-2001) = %d, %v; want 3", len(pools), err)
	}
	readOnly := person("user-proxy-ro", auth.RoleProxy)
	readOnly.ProxyGrants = []auth.ProxyGrant{{PatientID: "p-1001", Scopes: []string{"read"}, ExpiresAt: time.Now().Add(time.Hour)}}
	if _, err := listIDs(t, h, readOnly, app.ListPoolsCmd{PatientID: "p-1001"}); err == nil {
		t.Error("ListPools(read-only proxy) = nil error, want refused")
	}
	if _, err := listIDs(t, h, patient, app.ListPoolsCmd{PatientID: "p-1002"}); err == nil {
		t.Error("ListPools(patient for someone else) = nil error, want refused")
	}

	// Paging walks every pool once.
	first, next, err := h.svc.ListPools(ctx, admin, app.ListPoolsCmd{PageSize: 2})
	if err != nil || len(first) != 2 || next == "" {
		t.Fatalf("first page = %d, %q, %v", len(first), next, err)
	}
	rest, next, err := h.svc.ListPools(ctx, admin, app.ListPoolsCmd{PageSize: 2, PageToken: next})
	if err != nil || len(rest) != 1 || next != "" || rest[0].Pool.ID == first[0].Pool.ID || rest[0].Pool.ID == first[1].Pool.ID {
		t.Fatalf("second page = %+v, %q, %v", rest, next, err)
	}
	if _, _, err := h.svc.ListPools(ctx, admin, app.ListPoolsCmd{PageToken: "not-a-token"}); err == nil {
		t.Error("ListPools(bad token) = nil error")
	}
}

// TestProvisionerPools: the identity provider's provisioning client sees every pool without
// who may write to it, and sets a pool's name and whether it is active, never its other settings.
func TestProvisionerPools(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	provisioner := &auth.Principal{Kind: auth.KindUser, Subject: "idp-scim", ClientID: "idp-scim", Roles: []auth.Role{auth.RoleProvisioner},
		Scopes: []string{"directory.provision"}, IssuedAt: time.Now()}
	if _, err := h.svc.CreatePool(ctx, admin, domain.Pool{ID: "pool-referrals", Name: "Referrals", ListedOnly: true, PatientIDs: []string{"p-2001"}}); err != nil {
		t.Fatalf("CreatePool(admin) = %v", err)
	}
	pools, err := listIDs(t, h, provisioner, app.ListPoolsCmd{IncludeInactive: true})
	if err != nil || len(pools) != 3 {
		t.Fatalf("ListPools(provisioner) = %d pools, %v; want all 3", len(pools), err)
	}
	for _, v := range pools {
		if len(v.Pool.PatientIDs) != 0 {
			t.Errorf("the provisioner's view of %s shows its patients", v.Pool.ID)
		}
	}
	if v, err := h.svc.GetPool(ctx, provisioner, "pool-referrals"); err != nil || len(v.Pool.PatientIDs) != 0 {
		t.Errorf("GetPool(provisioner) = %+v, %v; want the pool without its patients", v.Pool, err)
	}

	denied := func(what string, err error) {
		t.Helper()
		if k, _ := usererr.KindOf(err); k != usererr.PermissionDenied {
			t.Errorf("%s = %v, want PermissionDenied", what, err)
		}
	}
	_, err = h.svc.CreatePool(ctx, provisioner, domain.Pool{ID: "pool-closed", Name: "Closed", ListedOnly: true, PatientIDs: []string{"p-1001"}})
	denied("CreatePool(provisioner, listed patients)", err)
	_, err = h.svc.CreatePool(ctx, provisioner, domain.Pool{ID: "pool-hours", Name: "Hours", Hours: domain.ActiveHours{TimeZone: "Europe/London"}})
	denied("CreatePool(provisioner, active hours)", err)
	if _, err := h.svc.CreatePool(ctx, provisioner, domain.Pool{ID: "pool-scim", Name: "From the IdP"}); err != nil {
		t.Fatalf("CreatePool(provisioner, id and name) = %v", err)
	}
	for _, mask := range [][]string{{"patient_ids"}, {"audience"}, {"active_hours"}, {"organisation"}, {"name", "patient_ids"}} {
		_, err := h.svc.UpdatePool(ctx, provisioner, domain.Pool{ID: "pool-referrals", PatientIDs: []string{"p-1001"}}, "", mask)
		denied("UpdatePool(provisioner, "+mask[len(mask)-1]+")", err)
	}
	if v, err := h.svc.UpdatePool(ctx, provisioner, domain.Pool{ID: "pool-referrals", Name: "Referrals (IdP)", Active: false}, "", []string{"name", "active"}); err != nil ||
		v.Pool.Name != "Referrals (IdP)" || v.Pool.Active || len(v.Pool.PatientIDs) != 0 {
		t.Fatalf("UpdatePool(provisioner, name and active) = %+v, %v", v.Pool, err)
	}
	if v, err := h.svc.GetPool(ctx, admin, "pool-referrals"); err != nil || len(v.Pool.PatientIDs) != 1 {
		t.Errorf("after the provisioner's update the admin sees %+v, %v; want its patients kept", v.Pool, err)
	}
}
