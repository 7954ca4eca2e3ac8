package wire_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

// TestProxyGrantsManagedByThePatient: a patient sees the grants they gave, revokes one and the
// proxy is refused on their next call with the token they hold; a grant the patient gives
// works at once, within its scopes, without the identity provider asserting it.
func TestProxyGrantsManagedByThePatient(t *testing.T) {
	e := newEnv(t)
	patient := e.as(t, servicetest.Patient)
	th := e.createThread(t, servicetest.Patient, threadTo("pool-cardiology", marker(t, "subject"), marker(t, "body"))).GetThread().GetThreadId()
	proxy := e.as(t, servicetest.Proxy)
	if _, err := e.api.GetThread(proxy, &messagingv1.GetThreadRequest{ThreadId: th}); err != nil {
		t.Fatalf("GetThread(proxy with a grant) = %v", err)
	}

	list, err := e.api.ListProxyGrants(patient, &messagingv1.ListProxyGrantsRequest{})
	if err != nil || len(list.GetGrants()) != 1 || list.GetGrants()[0].GetProxySubject() != servicetest.Proxy.Subject {
		t.Fatalf("ListProxyGrants(patient) = %v, %v; want the proxy's grant", list, err)
	}
	grantID := list.GetGrants()[0].GetGrantId()
	_, err = e.api.RevokeProxyAccess(e.as(t, servicetest.OtherPatient), &messagingv1.RevokeProxyAccessRequest{GrantId: grantID})
	wantReason(t, "RevokeProxyAccess(another patient)", err, codes.NotFound, "PROXY_GRANT_NOT_FOUND")
	revoked, err := e.api.RevokeProxyAccess(patient, &messagingv1.RevokeProxyAccessRequest{GrantId: grantID})
	if err != nil || revoked.GetGrant().GetRevokeTime() == nil {
		t.Fatalf("RevokeProxyAccess = %v, %v; want a revoke time", revoked, err)
	}
	// The proxy's token still carries the grant in its proxy_grants claim: it counts for nothing.
	_, err = e.api.GetThread(proxy, &messagingv1.GetThreadRequest{ThreadId: th})
	if c := status.Code(err); c != codes.PermissionDenied && c != codes.NotFound {
		t.Fatalf("GetThread(revoked proxy, same token) = %v, want refused", err)
	}
	if _, err := e.api.RevokeProxyAccess(patient, &messagingv1.RevokeProxyAccessRequest{GrantId: grantID}); err != nil {
		t.Errorf("RevokeProxyAccess(again) = %v, want a no-op", err)
	}

	// A new proxy the identity provider knows nothing about: the patient's grant is enough.
	carer := servicetest.Persona{Subject: "user-carer", Roles: []string{"proxy"}}
	in := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(time.Now().Add(d)) }
	_, err = e.api.GrantProxyAccess(patient, &messagingv1.GrantProxyAccessRequest{ProxySubject: carer.Subject, Scopes: []string{"read"}, ExpireTime: in(400 * 24 * time.Hour)})
	wantReason(t, "GrantProxyAccess(beyond a year)", err, codes.InvalidArgument, "PROXY_GRANT_TOO_LONG")
	_, err = e.api.GrantProxyAccess(patient, &messagingv1.GrantProxyAccessRequest{ProxySubject: carer.Subject, Scopes: []string{"write"}, ExpireTime: in(time.Hour)})
	wantReason(t, "GrantProxyAccess(write without read)", err, codes.InvalidArgument, "PROXY_WRITE_WITHOUT_READ")
	_, err = e.api.GrantProxyAccess(patient, &messagingv1.GrantProxyAccessRequest{ProxySubject: servicetest.Patient.Subject, Scopes: []string{"read"}, ExpireTime: in(time.Hour)})
	wantReason(t, "GrantProxyAccess(to oneself)", err, codes.InvalidArgument, "PROXY_IS_PATIENT")
	_, err = e.api.GrantProxyAccess(e.as(t, servicetest.Clinician), &messagingv1.GrantProxyAccessRequest{ProxySubject: carer.Subject, Scopes: []string{"read"}, ExpireTime: in(time.Hour)})
	wantCode(t, "GrantProxyAccess(as clinician)", err, codes.PermissionDenied)
	given, err := e.api.GrantProxyAccess(patient, &messagingv1.GrantProxyAccessRequest{ProxySubject: carer.Subject, Scopes: []string{"read"}, ExpireTime: in(30 * 24 * time.Hour)})
	if err != nil || given.GetGrant().GetPatientId() != servicetest.Patient.PatientID {
		t.Fatalf("GrantProxyAccess = %v, %v", given, err)
	}
	asCarer := e.as(t, carer)
	if _, err := e.api.GetThread(asCarer, &messagingv1.GetThreadRequest{ThreadId: th}); err != nil {
		t.Fatalf("GetThread(new proxy) = %v", err)
	}
	_, err = e.api.SendMessage(asCarer, &messagingv1.SendMessageRequest{ThreadId: th, Body: marker(t, "body"), ClientRequestId: "6f9f7f0e-9d44-4e8a-8e0b-2f0c4a8a1b11"})
	wantCode(t, "SendMessage(read-only proxy)", err, codes.PermissionDenied)
	held, err := e.api.ListProxyGrants(asCarer, &messagingv1.ListProxyGrantsRequest{})
	if err != nil || len(held.GetGrants()) != 1 {
		t.Fatalf("ListProxyGrants(proxy) = %v, %v; want the grant they hold", held, err)
	}
	// The proxy renounces it.
	if _, err := e.api.RevokeProxyAccess(asCarer, &messagingv1.RevokeProxyAccessRequest{GrantId: given.GetGrant().GetGrantId()}); err != nil {
		t.Fatalf("RevokeProxyAccess(by the proxy) = %v", err)
	}
	_, err = e.api.GetThread(asCarer, &messagingv1.GetThreadRequest{ThreadId: th})
	if c := status.Code(err); c != codes.PermissionDenied && c != codes.NotFound {
		t.Fatalf("GetThread(after renouncing) = %v, want refused", err)
	}

	var given2, revoked2 bool
	for _, r := range e.auditRecords(t) {
		if r.GetRecordType() != eventsv1.RecordType_RECORD_TYPE_PROXY_GRANT || r.GetPatientId() != servicetest.Patient.PatientID {
			continue
		}
		given2 = given2 || r.GetReasonCode() == "proxy_grant_given"
		revoked2 = revoked2 || r.GetReasonCode() == "proxy_grant_revoked"
	}
	if !given2 || !revoked2 {
		t.Errorf("audit on the patient's record: given %t, revoked %t; want both", given2, revoked2)
	}
}

// TestProxyGrantAgeRules: an adolescent may give a proxy reading, never writing, and only
// until they turn 18; their confidential threads stay hidden from that proxy.
func TestProxyGrantAgeRules(t *testing.T) {
	e := newEnv(t)
	now := time.Now().UTC()
	// Seventeen and a half: the 18th birthday falls within a year's grant.
	birth := time.Date(now.Year()-18, now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, 6, 0)
	teen := servicetest.Persona{Subject: "user-teen-age", Roles: []string{"patient"}, PatientID: "p-2101", BirthDate: birth.Format(time.DateOnly)}
	guardian := servicetest.Persona{Subject: "user-guardian", Roles: []string{"proxy"}}
	tctx := e.as(t, teen)
	in := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(time.Now().Add(d)) }

	_, err := e.api.GrantProxyAccess(tctx, &messagingv1.GrantProxyAccessRequest{ProxySubject: guardian.Subject, Scopes: []string{"read", "write"}, ExpireTime: in(300 * 24 * time.Hour)})
	wantReason(t, "GrantProxyAccess(adolescent, write)", err, codes.FailedPrecondition, "PROXY_SCOPE_ADOLESCENT")
	g, err := e.api.GrantProxyAccess(tctx, &messagingv1.GrantProxyAccessRequest{ProxySubject: guardian.Subject, Scopes: []string{"read", "notifications"}, ExpireTime: in(300 * 24 * time.Hour)})
	if err != nil {
		t.Fatalf("GrantProxyAccess(adolescent, read) = %v", err)
	}
	if end := g.GetGrant().GetExpireTime().AsTime(); !end.Equal(birth.AddDate(18, 0, 0)) {
		t.Errorf("the grant ends %v, want the 18th birthday %v", end, birth.AddDate(18, 0, 0))
	}

	// Within the grant: the ordinary thread, not the confidential one; reading, not writing.
	open := e.createThread(t, teen, threadTo("pool-cardiology", marker(t, "subject"), marker(t, "body"))).GetThread().GetThreadId()
	conf := threadTo("pool-cardiology", marker(t, "subject"), marker(t, "body"))
	conf.Sensitivity = commonv1.Sensitivity_SENSITIVITY_ADOLESCENT_CONFIDENTIAL
	hidden := e.createThread(t, teen, conf).GetThread().GetThreadId()
	gctx := e.as(t, guardian)
	if _, err := e.api.GetThread(gctx, &messagingv1.GetThreadRequest{ThreadId: open}); err != nil {
		t.Fatalf("GetThread(guardian, ordinary thread) = %v", err)
	}
	_, err = e.api.GetThread(gctx, &messagingv1.GetThreadRequest{ThreadId: hidden})
	wantCode(t, "GetThread(guardian, confidential thread)", err, codes.NotFound)
	_, err = e.api.SendMessage(gctx, &messagingv1.SendMessageRequest{ThreadId: open, Body: "from the guardian", ClientRequestId: uuid.NewString()})
	if c := status.Code(err); c != codes.PermissionDenied && c != codes.NotFound {
		t.Errorf("SendMessage(guardian without write) = %v, want refused", err)
	}

	// An adult's grant is not touched by the rules.
	adult := servicetest.Persona{Subject: "user-adult-age", Roles: []string{"patient"}, PatientID: "p-2102", BirthDate: "1980-01-01"}
	end := in(300 * 24 * time.Hour)
	a, err := e.api.GrantProxyAccess(e.as(t, adult), &messagingv1.GrantProxyAccessRequest{ProxySubject: guardian.Subject, Scopes: []string{"read", "write"}, ExpireTime: end})
	if err != nil || !a.GetGrant().GetExpireTime().AsTime().Equal(end.AsTime()) {
		t.Errorf("GrantProxyAccess(adult) = %v, %v; want the asked end", a, err)
	}
}
