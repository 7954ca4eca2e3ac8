package repotest

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// LegalHoldListing tests the legal hold listing and counts of domain.RetentionRepository on a
// store of its own, so that it sees every hold in it: patient holds first by patient id, then
// thread holds by thread id, each with its case and origin; lifted holds gone; every page
// continuing where the last stopped.
func LegalHoldListing(t *testing.T, newStore Factory) {
	f := newFixture(t, newStore(t))
	ctx := t.Context()
	if holds, err := f.s.LegalHolds(ctx, domain.LegalHoldCursor{}, 10); err != nil || len(holds) != 0 {
		t.Fatalf("LegalHolds(empty store) = %v, %v; want none", holds, err)
	}
	if c, err := f.s.CountLegalHolds(ctx); err != nil || c != (domain.LegalHoldCounts{}) {
		t.Fatalf("CountLegalHolds(empty store) = %+v, %v; want zeros", c, err)
	}

	pool, x, y, z := id("pool"), id("p"), id("p"), id("p")
	mk := func(patient string) *domain.Thread {
		th := f.thread(pool, patient, "user-"+patient, patientRole)
		f.create(th, false, message(th, "user-"+patient, patientRole, f.now))
		return th
	}
	a, b, c, d, e := mk(x), mk(x), mk(y), mk(y), mk(y)
	at := func(s int) time.Time { return f.now.Add(time.Duration(s) * time.Second) }
	for _, h := range []struct {
		thread *domain.Thread
		on     bool
		ref    string
		by     string
		at     time.Time
	}{{a, true, "LIT-1", "user-admin-1", at(1)}, {c, true, "LIT-3", "user-admin-2", at(3)}, {e, true, "LIT-5", "user-admin-1", at(5)}, {e, false, "", "user-admin-2", at(6)}} {
		if _, err := f.s.SetThreadHold(ctx, h.thread.ID, h.on, h.ref, h.by, h.at, nil); err != nil {
			t.Fatalf("SetThreadHold(%s, %v) = %v", h.thread.ID, h.on, err)
		}
	}
	for _, h := range []struct {
		patient, ref, by string
		at               time.Time
	}{{x, "LIT-2", "user-admin-2", at(2)}, {z, "LIT-4", "user-admin-1", at(4)}} {
		if _, err := f.s.SetPatientHold(ctx, h.patient, true, h.ref, h.by, h.at, nil); err != nil {
			t.Fatalf("SetPatientHold(%s) = %v", h.patient, err)
		}
	}
	_, _ = b, d // b is held through its patient only, d not at all: neither is listed as a thread hold

	want := []domain.LegalHold{
		{PatientID: x, CaseReference: "LIT-2", CreatedBySubject: "user-admin-2", CreatedAt: at(2)},
		{PatientID: z, CaseReference: "LIT-4", CreatedBySubject: "user-admin-1", CreatedAt: at(4)},
	}
	slices.SortFunc(want, func(p, q domain.LegalHold) int { return strings.Compare(p.PatientID, q.PatientID) })
	threads := []domain.LegalHold{
		{ThreadID: a.ID, CaseReference: "LIT-1", CreatedBySubject: "user-admin-1", CreatedAt: at(1)},
		{ThreadID: c.ID, CaseReference: "LIT-3", CreatedBySubject: "user-admin-2", CreatedAt: at(3)},
	}
	slices.SortFunc(threads, func(p, q domain.LegalHold) int { return strings.Compare(p.ThreadID, q.ThreadID) })
	want = append(want, threads...)
	sameTime := cmp.Comparer(func(p, q time.Time) bool { return p.Equal(q) })

	// One page, then pages of one that each start after the last hold of the page before.
	got, err := f.s.LegalHolds(ctx, domain.LegalHoldCursor{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, sameTime, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("LegalHolds(start, 10) mismatch (-want +got):\n%s", diff)
	}
	var paged []domain.LegalHold
	for cur := (domain.LegalHoldCursor{}); len(paged) <= len(want); {
		page, err := f.s.LegalHolds(ctx, cur, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		cur = page[len(page)-1].Cursor()
	}
	if diff := cmp.Diff(want, paged, sameTime); diff != "" {
		t.Errorf("LegalHolds page by page mismatch (-want +got):\n%s", diff)
	}
	if counts, err := f.s.CountLegalHolds(ctx); err != nil || counts != (domain.LegalHoldCounts{ThreadsHeld: 3, PatientHolds: 2, ThreadHolds: 2}) {
		t.Errorf("CountLegalHolds() = %+v, %v; want 3 threads held (a, b, c), 2 patient holds, 2 thread holds", counts, err)
	}

	// Lifting a patient hold and a thread hold drops them from the listing.
	if _, err := f.s.SetPatientHold(ctx, z, false, "", "user-admin-2", at(7), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.SetThreadHold(ctx, c.ID, false, "", "user-admin-2", at(7), nil); err != nil {
		t.Fatal(err)
	}
	got, err = f.s.LegalHolds(ctx, domain.LegalHoldCursor{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].PatientID != x || got[1].ThreadID != a.ID {
		t.Errorf("LegalHolds() after lifting = %+v, want the hold on patient %s and on thread %s", got, x, a.ID)
	}
	if counts, err := f.s.CountLegalHolds(ctx); err != nil || counts != (domain.LegalHoldCounts{ThreadsHeld: 2, PatientHolds: 1, ThreadHolds: 1}) {
		t.Errorf("CountLegalHolds() after lifting = %+v, %v; want 2 threads held, 1 patient hold, 1 thread hold", counts, err)
	}
}
