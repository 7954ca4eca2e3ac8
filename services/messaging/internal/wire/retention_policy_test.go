package wire_test

import (
	"errors"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc/codes"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

// TestRetentionPolicyAndLegalHoldListing: an admin reads the retention policy in force (every
// category's period and the cutoff a purge would use now, the purge interval, the hold counts)
// and lists the legal holds page by page, with who placed them and when; the listing is
// audited; a clinician is refused both; and neither rpc is on the browser surface.
func TestRetentionPolicyAndLegalHoldListing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withEdge)
	admin := e.as(t, servicetest.Admin)

	pol, err := e.api.GetRetentionPolicy(admin, &messagingv1.GetRetentionPolicyRequest{})
	if err != nil {
		t.Fatalf("GetRetentionPolicy = %v", err)
	}
	if got := len(pol.GetPeriods()); got != len(commonv1.ThreadCategory_name)-1 {
		t.Errorf("GetRetentionPolicy periods = %d, want one per category (%d)", got, len(commonv1.ThreadCategory_name)-1)
	}
	for i, p := range pol.GetPeriods() {
		if p.GetCategory() != commonv1.ThreadCategory(i+1) || p.GetPeriod().AsDuration() != 30*24*time.Hour ||
			!p.GetCutoffTime().AsTime().Equal(pol.GetAsOf().AsTime().Add(-30*24*time.Hour)) {
			t.Errorf("GetRetentionPolicy periods[%d] = %v, want category %d kept 30 days, cut off 30 days before as_of %v", i, p, i+1, pol.GetAsOf().AsTime())
		}
	}
	if pol.GetPurgeInterval() != nil || pol.GetThreadsOnLegalHold() != 0 || pol.GetPatientLegalHolds() != 0 || pol.GetThreadLegalHolds() != 0 {
		t.Errorf("GetRetentionPolicy = %v, want no purge interval (the job is off) and no holds", pol)
	}

	held := e.createThread(t, servicetest.Patient, &messagingv1.CreateThreadRequest{Subject: "s", Body: "b"}).GetThread().GetThreadId()
	e.createThread(t, servicetest.OtherPatient, &messagingv1.CreateThreadRequest{Subject: "s", Body: "b"})
	e.createThread(t, servicetest.Patient, &messagingv1.CreateThreadRequest{Subject: "s", Body: "b"})
	before := time.Now().Add(-time.Second)
	if _, err := e.api.SetLegalHold(admin, &messagingv1.SetLegalHoldRequest{Target: &messagingv1.SetLegalHoldRequest_ThreadId{ThreadId: held}, On: true, CaseReference: "LIT-2026-0042"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.api.SetLegalHold(admin, &messagingv1.SetLegalHoldRequest{Target: &messagingv1.SetLegalHoldRequest_PatientId{PatientId: "p-1002"}, On: true, CaseReference: "LIT-2026-0043"}); err != nil {
		t.Fatal(err)
	}
	pol, err = e.api.GetRetentionPolicy(admin, &messagingv1.GetRetentionPolicyRequest{})
	if err != nil || pol.GetThreadsOnLegalHold() != 2 || pol.GetPatientLegalHolds() != 1 || pol.GetThreadLegalHolds() != 1 {
		t.Fatalf("GetRetentionPolicy after two holds = %v, %v; want 2 threads held, 1 patient hold, 1 thread hold", pol, err)
	}

	// Two pages of one: the patient hold first, then the thread's.
	first, err := e.api.ListLegalHolds(admin, &messagingv1.ListLegalHoldsRequest{PageSize: 1})
	if err != nil || len(first.GetLegalHolds()) != 1 || first.GetNextPageToken() == "" {
		t.Fatalf("ListLegalHolds(page 1) = %v, %v; want one hold and a next page", first, err)
	}
	second, err := e.api.ListLegalHolds(admin, &messagingv1.ListLegalHoldsRequest{PageSize: 1, PageToken: first.GetNextPageToken()})
	if err != nil || len(second.GetLegalHolds()) != 1 {
		t.Fatalf("ListLegalHolds(page 2) = %v, %v; want one hold", second, err)
	}
	if last, err := e.api.ListLegalHolds(admin, &messagingv1.ListLegalHoldsRequest{PageSize: 1, PageToken: second.GetNextPageToken()}); second.GetNextPageToken() != "" && (err != nil || len(last.GetLegalHolds()) != 0) {
		t.Fatalf("ListLegalHolds(page 3) = %v, %v; want nothing", last, err)
	}
	p, th := first.GetLegalHolds()[0], second.GetLegalHolds()[0]
	for _, c := range []struct {
		h           *messagingv1.LegalHold
		target, ref string
	}{{p, "p-1002", "LIT-2026-0043"}, {th, held, "LIT-2026-0042"}} {
		target := c.h.GetPatientId() + c.h.GetThreadId()
		if target != c.target || c.h.GetCaseReference() != c.ref || c.h.GetCreatedBySubject() != servicetest.Admin.Subject ||
			c.h.GetCreateTime().AsTime().Before(before) || c.h.GetCreateTime().AsTime().After(time.Now()) {
			t.Errorf("legal hold = %v, want %s under %s, placed by %s just now", c.h, c.target, c.ref, servicetest.Admin.Subject)
		}
	}
	if p.GetPatientId() == "" || th.GetThreadId() == "" {
		t.Errorf("legal holds = %v, %v; want the patient hold, then the thread hold", p, th)
	}
	if r := findAudit(e.auditRecords(t), eventsv1.Action_ACTION_QUERY, "legal-holds", servicetest.Admin.Subject); r == nil ||
		r.GetRecordType() != eventsv1.RecordType_RECORD_TYPE_LEGAL_HOLD || r.GetPurposeOfUse() != commonv1.PurposeOfUse_PURPOSE_OF_USE_LEGAL {
		t.Errorf("audit record of the listing = %v, want a QUERY of the legal hold registry for a legal purpose", r)
	}
	if r := findAudit(e.auditRecords(t), eventsv1.Action_ACTION_QUERY, "patient-hold", servicetest.Admin.Subject); r == nil || r.GetPatientId() != "p-1002" {
		t.Errorf("audit record naming the held patient = %v, want a QUERY of p-1002's hold", r)
	}

	_, err = e.api.ListLegalHolds(admin, &messagingv1.ListLegalHoldsRequest{PageToken: "bm90LWEtdG9rZW4"})
	wantCode(t, "ListLegalHolds(bad page token)", err, codes.InvalidArgument)
	_, err = e.api.ListLegalHolds(admin, &messagingv1.ListLegalHoldsRequest{PageSize: -1})
	wantCode(t, "ListLegalHolds(negative page size)", err, codes.InvalidArgument)
	clinician := e.as(t, servicetest.Clinician)
	_, err = e.api.ListLegalHolds(clinician, &messagingv1.ListLegalHoldsRequest{})
	wantCode(t, "ListLegalHolds(clinician)", err, codes.PermissionDenied)
	_, err = e.api.GetRetentionPolicy(clinician, &messagingv1.GetRetentionPolicyRequest{})
	wantCode(t, "GetRetentionPolicy(clinician)", err, codes.PermissionDenied)

	// Off the browser surface: the edge answers neither, whoever asks, over any protocol.
	for _, proto := range edgeProtocols {
		client := edgeClient(e, proto.http2)
		lc := connect.NewClient[messagingv1.ListLegalHoldsRequest, messagingv1.ListLegalHoldsResponse](client,
			e.edgeURL+messagingv1.MessagingService_ListLegalHolds_FullMethodName, proto.opts...)
		pc := connect.NewClient[messagingv1.GetRetentionPolicyRequest, messagingv1.GetRetentionPolicyResponse](client,
			e.edgeURL+messagingv1.MessagingService_GetRetentionPolicy_FullMethodName, proto.opts...)
		lreq, preq := connect.NewRequest(&messagingv1.ListLegalHoldsRequest{}), connect.NewRequest(&messagingv1.GetRetentionPolicyRequest{})
		token := e.h.Token(t, servicetest.Admin)
		lreq.Header().Set("Authorization", "Bearer "+token)
		preq.Header().Set("Authorization", "Bearer "+token)
		_, lerr := lc.CallUnary(t.Context(), lreq)
		_, perr := pc.CallUnary(t.Context(), preq)
		for name, err := range map[string]error{"ListLegalHolds": lerr, "GetRetentionPolicy": perr} {
			var ce *connect.Error
			if !errors.As(err, &ce) || (ce.Code() != connect.CodeNotFound && ce.Code() != connect.CodeUnimplemented) {
				t.Errorf("%s over the edge (%s) = %v, want not found", name, proto.name, err)
			}
		}
	}
}
