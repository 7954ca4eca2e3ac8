package wire_test

import (
	"testing"

	"github.com/google/uuid"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

// wantReason fails unless err has the code and the google.rpc.ErrorInfo reason.
func wantReason(t *testing.T, what string, err error, code codes.Code, reason string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code || errorReason(st) != reason {
		t.Fatalf("%s = %v %q (%v), want %v %q", what, st.Code(), errorReason(st), err, code, reason)
	}
}

func poolIDs(pools []*messagingv1.Pool) map[string]*messagingv1.Pool {
	out := map[string]*messagingv1.Pool{}
	for _, p := range pools {
		out[p.GetPoolId()] = p
	}
	return out
}

// TestPoolsAreData: pools are created, listed, restricted and deactivated by administrators,
// and every rule of CreateThread and TransferThread follows the stored pool.
func TestPoolsAreData(t *testing.T) {
	e := newEnv(t)
	admin := e.as(t, servicetest.Admin)

	created, err := e.api.CreatePool(admin, &messagingv1.CreatePoolRequest{Pool: &messagingv1.Pool{
		PoolId: "pool-referrals", Name: "Referrals", Organisation: "Test Clinic",
		ActiveHours: &messagingv1.ActiveHours{TimeZone: "America/Chicago", Windows: []*messagingv1.HoursWindow{{DayOfWeek: 1, OpenMinute: 480, CloseMinute: 1020}}},
	}})
	if err != nil {
		t.Fatalf("CreatePool = %v", err)
	}
	if !created.GetPool().GetActive() || created.GetPool().GetAudience() != messagingv1.PoolAudience_POOL_AUDIENCE_ALL_PATIENTS {
		t.Fatalf("created pool = %v, want active and open to all patients", created.GetPool())
	}
	_, err = e.api.CreatePool(admin, &messagingv1.CreatePoolRequest{Pool: &messagingv1.Pool{PoolId: "pool-referrals", Name: "Again"}})
	wantReason(t, "CreatePool(same id)", err, codes.AlreadyExists, "POOL_EXISTS")
	_, err = e.api.CreatePool(admin, &messagingv1.CreatePoolRequest{Pool: &messagingv1.Pool{PoolId: "pool-bad-hours", Name: "Bad",
		ActiveHours: &messagingv1.ActiveHours{TimeZone: "Mars/Olympus", Windows: []*messagingv1.HoursWindow{{DayOfWeek: 1, OpenMinute: 60, CloseMinute: 120}}}}})
	wantReason(t, "CreatePool(unknown time zone)", err, codes.InvalidArgument, "TIME_ZONE_UNKNOWN")
	_, err = e.api.CreatePool(e.as(t, servicetest.Clinician), &messagingv1.CreatePoolRequest{Pool: &messagingv1.Pool{PoolId: "pool-mine", Name: "Mine"}})
	wantCode(t, "CreatePool(as clinician)", err, codes.PermissionDenied)

	// A patient sees the pools they may write to, without who else may or who works there.
	list, err := e.api.ListPools(e.as(t, servicetest.Patient), &messagingv1.ListPoolsRequest{})
	if err != nil {
		t.Fatalf("ListPools(patient) = %v", err)
	}
	seen := poolIDs(list.GetPools())
	if seen["pool-referrals"] == nil || seen["pool-cardiology"] == nil {
		t.Fatalf("ListPools(patient) = %v, want pool-referrals and pool-cardiology", list.GetPools())
	}
	if seen["pool-cardiology"].GetMemberCount() != 0 {
		t.Errorf("patient's view counts members: %v", seen["pool-cardiology"])
	}
	page, err := e.api.ListPools(admin, &messagingv1.ListPoolsRequest{PageSize: 1})
	if err != nil || len(page.GetPools()) != 1 || page.GetNextPageToken() == "" {
		t.Fatalf("ListPools(page_size 1) = %v, %v; want one pool and a next page", page, err)
	}
	rest, err := e.api.ListPools(admin, &messagingv1.ListPoolsRequest{PageToken: page.GetNextPageToken()})
	if err != nil || poolIDs(rest.GetPools())[page.GetPools()[0].GetPoolId()] != nil || len(rest.GetPools()) < 2 {
		t.Fatalf("ListPools(next page) = %v, %v; want the other pools", rest, err)
	}

	// Restricted to another patient: the patient no longer lists it, cannot read it and cannot
	// write to it; the listed patient can.
	upd, err := e.api.UpdatePool(admin, &messagingv1.UpdatePoolRequest{
		Pool:       &messagingv1.Pool{PoolId: "pool-referrals", Audience: messagingv1.PoolAudience_POOL_AUDIENCE_LISTED_PATIENTS, PatientIds: []string{"p-1002"}, Etag: created.GetPool().GetEtag()},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"audience", "patient_ids"}},
	})
	if err != nil {
		t.Fatalf("UpdatePool(audience) = %v", err)
	}
	if got := upd.GetPool().GetPatientIds(); len(got) != 1 || got[0] != "p-1002" {
		t.Fatalf("admin's view of patient_ids = %v", got)
	}
	_, err = e.api.UpdatePool(admin, &messagingv1.UpdatePoolRequest{
		Pool: &messagingv1.Pool{PoolId: "pool-referrals", Name: "Stale", Etag: created.GetPool().GetEtag()}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}},
	})
	wantReason(t, "UpdatePool(stale etag)", err, codes.Aborted, "ETAG_MISMATCH")
	list, err = e.api.ListPools(e.as(t, servicetest.Patient), &messagingv1.ListPoolsRequest{})
	if err != nil || poolIDs(list.GetPools())["pool-referrals"] != nil {
		t.Fatalf("ListPools(patient) after restriction = %v, %v; want pool-referrals left out", list, err)
	}
	_, err = e.api.GetPool(e.as(t, servicetest.Patient), &messagingv1.GetPoolRequest{PoolId: "pool-referrals"})
	wantReason(t, "GetPool(restricted, patient)", err, codes.NotFound, "POOL_NOT_FOUND")
	_, err = e.api.CreateThread(e.as(t, servicetest.Patient), threadTo("pool-referrals", marker(t, "subject"), marker(t, "body")))
	wantReason(t, "CreateThread(restricted pool)", err, codes.PermissionDenied, "POOL_NOT_OPEN_TO_PATIENT")
	got, err := e.api.GetPool(e.as(t, servicetest.OtherPatient), &messagingv1.GetPoolRequest{PoolId: "pool-referrals"})
	if err != nil || len(got.GetPool().GetPatientIds()) != 0 {
		t.Fatalf("GetPool(listed patient) = %v, %v; want the pool without its patient list", got, err)
	}
	e.createThread(t, servicetest.OtherPatient, threadTo("pool-referrals", marker(t, "subject"), marker(t, "body")))

	// Unknown and deactivated pools take no threads and no transfers.
	_, err = e.api.CreateThread(e.as(t, servicetest.Patient), threadTo("pool-nowhere", marker(t, "subject"), marker(t, "body")))
	wantReason(t, "CreateThread(unknown pool)", err, codes.NotFound, "POOL_NOT_FOUND")
	if _, err := e.api.UpdatePool(admin, &messagingv1.UpdatePoolRequest{
		Pool: &messagingv1.Pool{PoolId: "pool-dermatology", Active: false}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"active"}},
	}); err != nil {
		t.Fatalf("UpdatePool(deactivate) = %v", err)
	}
	_, err = e.api.CreateThread(e.as(t, servicetest.Patient), threadTo("pool-dermatology", marker(t, "subject"), marker(t, "body")))
	wantReason(t, "CreateThread(deactivated pool)", err, codes.NotFound, "POOL_NOT_FOUND")
	th := e.createThread(t, servicetest.Patient, threadTo("pool-cardiology", marker(t, "subject"), marker(t, "body"))).GetThread().GetThreadId()
	_, err = e.api.TransferThread(e.as(t, TwoPoolClinician), &messagingv1.TransferThreadRequest{ThreadId: th, ToPoolId: "pool-dermatology", ReasonCode: "wrong_pool"})
	wantReason(t, "TransferThread(to deactivated pool)", err, codes.NotFound, "POOL_NOT_FOUND")
	_, err = e.api.TransferThread(e.as(t, TwoPoolClinician), &messagingv1.TransferThreadRequest{ThreadId: th, ToPoolId: "pool-nowhere", ReasonCode: "wrong_pool"})
	wantReason(t, "TransferThread(to unknown pool)", err, codes.NotFound, "POOL_NOT_FOUND")
	// Deactivation takes the pool's threads from its members too: the membership entries list
	// active pools only.
	if role := e.h.Proc.Directory.PoolRole(OtherClinicianSubject, "pool-dermatology"); role != directoryv1.PoolRole_POOL_ROLE_UNSPECIFIED {
		t.Errorf("directory role in a deactivated pool = %v, want none", role)
	}

	recs := e.auditRecords(t)
	if r := findAudit(recs, eventsv1.Action_ACTION_CREATE, "pool-referrals", servicetest.Admin.Subject); r == nil || r.GetRecordType() != eventsv1.RecordType_RECORD_TYPE_POOL {
		t.Errorf("no pool-creation audit record: %v", r)
	}
}

// OtherClinicianSubject is servicetest.OtherClinician's subject (dermatology).
var OtherClinicianSubject = servicetest.OtherClinician.Subject

// threadTo is a complete CreateThread request to pool.
func threadTo(pool, subject, body string) *messagingv1.CreateThreadRequest {
	return &messagingv1.CreateThreadRequest{PoolId: pool, Subject: subject, Body: body, ClientRequestId: uuid.NewString(),
		Category: commonv1.ThreadCategory_THREAD_CATEGORY_GENERAL, Sensitivity: commonv1.Sensitivity_SENSITIVITY_NORMAL}
}

// TestPoolMembership: only members are assignable, a member added works the pool's threads on
// the next call, and a member removed loses them at once, with the token they already hold.
func TestPoolMembership(t *testing.T) {
	e := newEnv(t)
	admin := e.as(t, servicetest.Admin)
	clin := e.as(t, servicetest.Clinician)
	th := e.createThread(t, servicetest.Patient, threadTo("pool-cardiology", marker(t, "subject"), marker(t, "body"))).GetThread().GetThreadId()

	_, err := e.api.AssignThread(clin, &messagingv1.AssignThreadRequest{ThreadId: th, AssigneeSubject: servicetest.OtherClinician.Subject})
	wantReason(t, "AssignThread(to a non-member)", err, codes.FailedPrecondition, "ASSIGNEE_NOT_POOL_MEMBER")
	_, err = e.api.AssignThread(clin, &messagingv1.AssignThreadRequest{ThreadId: th, AssigneeSubject: "user-nobody"})
	wantReason(t, "AssignThread(to an unknown person)", err, codes.FailedPrecondition, "ASSIGNEE_NOT_POOL_MEMBER")

	members, err := e.api.ListPoolMembers(clin, &messagingv1.ListPoolMembersRequest{PoolId: "pool-cardiology"})
	if err != nil {
		t.Fatalf("ListPoolMembers(member) = %v", err)
	}
	var names []string
	for _, m := range members.GetMembers() {
		names = append(names, m.GetSubject())
	}
	if len(names) < 3 {
		t.Fatalf("cardiology members = %v, want the seeded clinicians and staff", names)
	}
	_, err = e.api.ListPoolMembers(clin, &messagingv1.ListPoolMembersRequest{PoolId: "pool-dermatology"})
	wantCode(t, "ListPoolMembers(not a member)", err, codes.PermissionDenied)

	// TwoPoolClinician works in both pools; assign them, then take them out of cardiology.
	if _, err := e.api.AssignThread(clin, &messagingv1.AssignThreadRequest{ThreadId: th, AssigneeSubject: TwoPoolClinician.Subject}); err != nil {
		t.Fatalf("AssignThread(to a member) = %v", err)
	}
	two := e.as(t, TwoPoolClinician)
	if _, err := e.api.GetThread(two, &messagingv1.GetThreadRequest{ThreadId: th}); err != nil {
		t.Fatalf("GetThread(member) = %v", err)
	}
	removed, err := e.api.RemovePoolMember(admin, &messagingv1.RemovePoolMemberRequest{PoolId: "pool-cardiology", Subject: TwoPoolClinician.Subject})
	if err != nil {
		t.Fatalf("RemovePoolMember = %v", err)
	}
	if removed.GetAssignedThreads() != 1 {
		t.Errorf("assigned_threads = %d, want 1", removed.GetAssignedThreads())
	}
	// The same token, whose care_pools claim still names cardiology, no longer opens it.
	_, err = e.api.GetThread(two, &messagingv1.GetThreadRequest{ThreadId: th})
	if c := status.Code(err); c != codes.PermissionDenied && c != codes.NotFound {
		t.Fatalf("GetThread(removed member, same token) = %v, want refused", err)
	}
	_, err = e.api.AssignThread(clin, &messagingv1.AssignThreadRequest{ThreadId: th, AssigneeSubject: TwoPoolClinician.Subject})
	wantReason(t, "AssignThread(to a removed member)", err, codes.FailedPrecondition, "ASSIGNEE_NOT_POOL_MEMBER")
	_, err = e.api.RemovePoolMember(admin, &messagingv1.RemovePoolMemberRequest{PoolId: "pool-cardiology", Subject: TwoPoolClinician.Subject})
	wantReason(t, "RemovePoolMember(again)", err, codes.NotFound, "POOL_MEMBER_NOT_FOUND")

	// Added back, as lead: they work the thread again on their next call.
	set, err := e.api.SetPoolMember(admin, &messagingv1.SetPoolMemberRequest{PoolId: "pool-cardiology", Subject: TwoPoolClinician.Subject, Role: directoryv1.PoolRole_POOL_ROLE_LEAD})
	if err != nil || !set.GetAdded() {
		t.Fatalf("SetPoolMember = %v, %v; want added", set, err)
	}
	if _, err := e.api.GetThread(two, &messagingv1.GetThreadRequest{ThreadId: th}); err != nil {
		t.Fatalf("GetThread(member again) = %v", err)
	}
	_, err = e.api.SetPoolMember(admin, &messagingv1.SetPoolMemberRequest{PoolId: "pool-nowhere", Subject: TwoPoolClinician.Subject, Role: directoryv1.PoolRole_POOL_ROLE_STAFF})
	wantReason(t, "SetPoolMember(unknown pool)", err, codes.NotFound, "POOL_NOT_FOUND")

	recs := e.auditRecords(t)
	r := findAudit(recs, eventsv1.Action_ACTION_UPDATE, TwoPoolClinician.Subject, servicetest.Admin.Subject)
	if r == nil || r.GetRecordType() != eventsv1.RecordType_RECORD_TYPE_POOL_MEMBERSHIP || r.GetPoolId() != "pool-cardiology" {
		t.Errorf("membership audit record = %v, want one for the pool", r)
	}
}
