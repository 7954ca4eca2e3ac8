package wire_test

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

// TestClientAppRegistry: a token from an app nobody registered is refused; once an admin
// registers the app its users are admitted within its scopes and pools; withdrawn, it is
// refused again on the next call, whatever its tokens' expiry.
func TestClientAppRegistry(t *testing.T) {
	e := newEnv(t)
	admin := e.as(t, servicetest.Admin)
	viaApp := TwoPoolClinician
	viaApp.ClientID, viaApp.Scopes = "careteam-cardiology", "openid messages.read messages.write"
	app := e.as(t, viaApp)

	_, err := e.api.ListThreads(app, &messagingv1.ListThreadsRequest{})
	wantReason(t, "ListThreads(unregistered app)", err, codes.PermissionDenied, "CLIENT_NOT_REGISTERED")

	reg := &messagingv1.ClientApp{ClientId: viaApp.ClientID, Kind: directoryv1.ClientAppKind_CLIENT_APP_KIND_CARE_TEAM,
		DisplayName: "Cardiology care-team app", AllowedScopes: []string{"messages.read", "messages.write"}, PoolIds: []string{"pool-cardiology"}}
	_, err = e.api.RegisterClientApp(e.as(t, servicetest.Clinician), &messagingv1.RegisterClientAppRequest{App: reg})
	wantCode(t, "RegisterClientApp(as clinician)", err, codes.PermissionDenied)
	_, err = e.api.RegisterClientApp(admin, &messagingv1.RegisterClientAppRequest{App: &messagingv1.ClientApp{ClientId: "x-app",
		Kind: directoryv1.ClientAppKind_CLIENT_APP_KIND_PATIENT_PORTAL, DisplayName: "X", AllowedScopes: []string{"everything"}}})
	wantReason(t, "RegisterClientApp(unknown scope)", err, codes.InvalidArgument, "SCOPE_UNKNOWN")
	_, err = e.api.RegisterClientApp(admin, &messagingv1.RegisterClientAppRequest{App: &messagingv1.ClientApp{ClientId: "y-app",
		Kind: directoryv1.ClientAppKind_CLIENT_APP_KIND_CARE_TEAM, DisplayName: "Y", AllowedScopes: []string{"messages.read"}, PoolIds: []string{"pool-nowhere"}}})
	wantReason(t, "RegisterClientApp(unknown pool)", err, codes.NotFound, "POOL_NOT_FOUND")
	if _, err := e.api.RegisterClientApp(admin, &messagingv1.RegisterClientAppRequest{App: reg}); err != nil {
		t.Fatalf("RegisterClientApp = %v", err)
	}
	_, err = e.api.RegisterClientApp(admin, &messagingv1.RegisterClientAppRequest{App: reg})
	wantReason(t, "RegisterClientApp(again)", err, codes.AlreadyExists, "CLIENT_APP_EXISTS")

	// Admitted now, held to the app's pool: the clinician works in two pools, the app in one.
	pools, err := e.api.ListPools(app, &messagingv1.ListPoolsRequest{})
	if err != nil {
		t.Fatalf("ListPools(registered app) = %v", err)
	}
	if got := poolIDs(pools.GetPools()); len(got) != 1 || got["pool-cardiology"] == nil {
		t.Fatalf("pools through the care-team app = %v, want cardiology only", pools.GetPools())
	}
	beyond := viaApp
	beyond.Subject, beyond.Scopes = "user-clinician-5", "openid messages.read admin"
	_, err = e.api.ListThreads(e.as(t, beyond), &messagingv1.ListThreadsRequest{})
	wantReason(t, "ListThreads(scope beyond the app's)", err, codes.PermissionDenied, "SCOPE_NOT_ALLOWED")

	list, err := e.api.ListClientApps(admin, &messagingv1.ListClientAppsRequest{})
	if err != nil || len(list.GetApps()) != 1 || list.GetApps()[0].GetClientId() != viaApp.ClientID || !list.GetApps()[0].GetActive() {
		t.Fatalf("ListClientApps = %v, %v; want the new app, active (the harness's portal lives in the bucket only)", list, err)
	}

	// Withdrawn: the same token is refused on its next call.
	if _, err := e.api.UpdateClientApp(admin, &messagingv1.UpdateClientAppRequest{
		App: &messagingv1.ClientApp{ClientId: viaApp.ClientID, Active: false}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"active"}},
	}); err != nil {
		t.Fatalf("UpdateClientApp(withdraw) = %v", err)
	}
	_, err = e.api.ListThreads(app, &messagingv1.ListThreadsRequest{})
	wantReason(t, "ListThreads(withdrawn app)", err, codes.PermissionDenied, "CLIENT_NOT_REGISTERED")
	_, err = e.api.UpdateClientApp(admin, &messagingv1.UpdateClientAppRequest{
		App: &messagingv1.ClientApp{ClientId: "nobody-app", Active: true}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"active"}},
	})
	wantReason(t, "UpdateClientApp(unknown)", err, codes.NotFound, "CLIENT_APP_NOT_FOUND")

	recs := e.auditRecords(t)
	if r := findAudit(recs, eventsv1.Action_ACTION_CREATE, viaApp.ClientID, servicetest.Admin.Subject); r == nil || r.GetRecordType() != eventsv1.RecordType_RECORD_TYPE_CLIENT_APP {
		t.Errorf("registration audit record = %v", r)
	}
	var refusedApp bool
	for _, r := range recs {
		if r.GetAction() == eventsv1.Action_ACTION_DENY && r.GetActor().GetSubject() == viaApp.Subject && r.GetReasonCode() == "directory:client_not_registered" {
			refusedApp = true
		}
	}
	if !refusedApp {
		t.Error("no audited refusal of the unregistered app")
	}
}
