package repotest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// InboxRepository is the contract of domain.InboxRepository.
func InboxRepository(t *testing.T, newStore Factory) {
	sub := newStore(t)

	t.Run("list threads", func(t *testing.T) {
		f := newFixture(t, sub)
		pool, other, a, b := id("pool"), id("pool"), id("pa"), id("pb")
		patientA, clin := "user-"+a, id("clin")
		mk := func(pool, patient, creator string, role commonv1.Role, sens commonv1.Sensitivity, at time.Duration) *domain.Thread {
			th := f.thread(pool, patient, creator, role)
			th.Sensitivity = sens
			f.create(th, false, message(th, creator, role, f.now.Add(at)))
			return th
		}
		t1 := mk(pool, a, patientA, patientRole, commonv1.Sensitivity_SENSITIVITY_NORMAL, time.Second)
		t2 := mk(pool, a, patientA, patientRole, commonv1.Sensitivity_SENSITIVITY_ADOLESCENT_CONFIDENTIAL, 2*time.Second)
		t3 := mk(pool, b, clin, clinicianRole, commonv1.Sensitivity_SENSITIVITY_NORMAL, 3*time.Second)
		t4 := mk(other, b, "user-"+b, patientRole, commonv1.Sensitivity_SENSITIVITY_NORMAL, 4*time.Second)

		list := func(q domain.ListQuery) []string {
			t.Helper()
			if q.Limit == 0 {
				q.Limit = 50
			}
			if q.Box == 0 {
				q.Box = domain.BoxInbox
			}
			rows, err := f.s.ListThreads(t.Context(), q)
			if err != nil {
				t.Fatalf("ListThreads(%+v) = %v", q, err)
			}
			var ids []string
			for _, r := range rows {
				ids = append(ids, r.Thread.ID)
			}
			return ids
		}
		for _, tc := range []struct {
			name string
			q    domain.ListQuery
			want []*domain.Thread
		}{
			{"own threads, every sensitivity", domain.ListQuery{Viewer: patientA, OwnPatientID: a}, []*domain.Thread{t2, t1}},
			{"a proxy's grant skips adolescent-confidential threads", domain.ListQuery{Viewer: "proxy", ProxyPatientIDs: []string{a}}, []*domain.Thread{t1}},
			{"a care pool's threads", domain.ListQuery{Viewer: clin, PoolIDs: []string{pool}}, []*domain.Thread{t3, t2, t1}},
			{"pool filter", domain.ListQuery{Viewer: clin, PoolIDs: []string{pool, other}, FilterPoolIDs: []string{other}}, []*domain.Thread{t4}},
			{"patient filter", domain.ListQuery{Viewer: clin, PoolIDs: []string{pool, other}, FilterPatientID: b}, []*domain.Thread{t4, t3}},
			{"sent by the care team", domain.ListQuery{Viewer: id("clin"), PoolIDs: []string{pool}, Box: domain.BoxSent}, []*domain.Thread{t3}},
			{"sent by the patient", domain.ListQuery{Viewer: patientA, OwnPatientID: a, Box: domain.BoxSent}, []*domain.Thread{t2, t1}},
			{"no visibility, nothing", domain.ListQuery{Viewer: clin}, nil},
			{"limit", domain.ListQuery{Viewer: clin, PoolIDs: []string{pool}, Limit: 2}, []*domain.Thread{t3, t2}},
			{"keyset", domain.ListQuery{Viewer: clin, PoolIDs: []string{pool}, AfterTime: f.load(t2.ID).LastMessageAt, AfterID: t2.ID}, []*domain.Thread{t1}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var want []string
				for _, th := range tc.want {
					want = append(want, th.ID)
				}
				if got := list(tc.q); !slices.Equal(got, want) {
					t.Fatalf("ListThreads() = %v, want %v", got, want)
				}
			})
		}

		// Viewer state: unread counts others' messages; read and archived threads leave the
		// unread and inbox views.
		rows, err := f.s.ListThreads(t.Context(), domain.ListQuery{Viewer: clin, PoolIDs: []string{pool}, Box: domain.BoxInbox, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			want := int32(1)
			if r.Thread.ID == t3.ID {
				want = 0 // clin wrote it
			}
			if r.Viewer.Unread != want || r.Viewer.ReadSeq != 0 || !r.Viewer.ArchivedAt.IsZero() {
				t.Errorf("viewer state in %s = %+v, want %d unread", r.Thread.ID, r.Viewer, want)
			}
		}
		if _, err := f.s.MarkRead(t.Context(), t1.ID, clin, 1, noRows); err != nil {
			t.Fatal(err)
		}
		if _, err := f.s.SetArchived(t.Context(), t2.ID, clin, true, f.now, nil); err != nil {
			t.Fatal(err)
		}
		if got, want := list(domain.ListQuery{Viewer: clin, PoolIDs: []string{pool}, UnreadOnly: true}), []string(nil); !slices.Equal(got, want) {
			t.Errorf("unread only = %v, want %v", got, want)
		}
		if got, want := list(domain.ListQuery{Viewer: clin, PoolIDs: []string{pool}}), []string{t3.ID, t1.ID}; !slices.Equal(got, want) {
			t.Errorf("inbox after archiving = %v, want %v", got, want)
		}
		if got, want := list(domain.ListQuery{Viewer: clin, PoolIDs: []string{pool}, Box: domain.BoxArchived}), []string{t2.ID}; !slices.Equal(got, want) {
			t.Errorf("archive = %v, want %v", got, want)
		}
		if got, want := list(domain.ListQuery{Viewer: patientA, OwnPatientID: a}), []string{t2.ID, t1.ID}; !slices.Equal(got, want) {
			t.Errorf("another viewer's inbox after archiving = %v, want %v (archive is per viewer)", got, want)
		}
	})

	t.Run("read a page and record it", func(t *testing.T) {
		f := newFixture(t, sub)
		pool, patient := id("pool"), id("p")
		f.setSettings(pool, func(s *domain.PoolSettings) { s.EmergencyDisclaimer = "Call 911." })
		th := f.thread(pool, patient, "user-"+patient, patientRole)
		f.create(th, false, message(th, "user-"+patient, patientRole, f.now), message(th, "user-clin", clinicianRole, f.now),
			message(th, "user-"+patient, patientRole, f.now))
		audit := event("audit.read")
		bg := &domain.BreakGlass{ID: uuid.NewString(), Subject: "user-clin", ReasonSealed: []byte("sealed-reason"), At: f.now}
		page, err := f.s.ReadThreadPage(t.Context(), f.load(th.ID), "user-clin", 1, 1, bg, []outbox.Event{audit})
		if err != nil {
			t.Fatalf("ReadThreadPage() = %v", err)
		}
		if len(page.Messages) != 1 || page.Messages[0].Seq != 2 {
			t.Fatalf("page = %v, want seq 2 only", seqs(page.Messages))
		}
		if page.Viewer.Unread != 2 || page.Viewer.ReadSeq != 0 {
			t.Fatalf("viewer = %+v, want 2 unread (the patient's messages)", page.Viewer)
		}
		if page.Settings.PoolID != pool || page.Settings.EmergencyDisclaimer != "Call 911." || page.Settings.Version != 1 {
			t.Fatalf("settings = %+v", page.Settings)
		}
		f.wantRows("read", audit)

		bad := outbox.Event{ID: outbox.NewID(), Subject: "bad subject"}
		if _, err := f.s.ReadThreadPage(t.Context(), th, "user-clin", 0, 10, nil, []outbox.Event{bad}); !isUnavailable(err) {
			t.Fatalf("ReadThreadPage(unrecordable) = %v, want an Unavailable refusal", err)
		}
		if err := f.s.RecordBreakGlass(t.Context(), th.ID, domain.BreakGlass{ID: uuid.NewString(), Subject: "user-clin", ReasonSealed: []byte("r"), At: f.now}); err != nil {
			t.Fatalf("RecordBreakGlass() = %v", err)
		}
	})

	t.Run("mark read and archive", func(t *testing.T) {
		f := newFixture(t, sub)
		pool, patient := id("pool"), id("p")
		th := f.thread(pool, patient, "user-"+patient, patientRole)
		f.create(th, false, message(th, "user-"+patient, patientRole, f.now), message(th, "user-"+patient, patientRole, f.now),
			message(th, "user-clin", clinicianRole, f.now))
		ev := event("message.read")
		var seen domain.Viewer
		v, err := f.s.MarkRead(t.Context(), th.ID, "user-clin", 2, func(v domain.Viewer) ([]outbox.Event, error) {
			seen = v
			return []outbox.Event{ev}, nil
		})
		if err != nil || v.ReadSeq != 2 || v.Unread != 0 || seen != v {
			t.Fatalf("MarkRead(2) = %+v, %v (effects saw %+v); want read up to 2, none unread", v, err, seen)
		}
		f.wantRows("mark read", ev)
		if v, err := f.s.MarkRead(t.Context(), th.ID, "user-clin", 1, noRows); err != nil || v.ReadSeq != 2 {
			t.Fatalf("MarkRead(1) = %+v, %v; want the mark kept at 2", v, err)
		}
		if v, err := f.s.MarkRead(t.Context(), th.ID, "user-"+patient, 0, noRows); err != nil || v.Unread != 1 {
			t.Fatalf("patient's viewer = %+v, %v; want the clinician's message unread", v, err)
		}
		refused := errors.New("cannot record")
		if _, err := f.s.MarkRead(t.Context(), th.ID, "user-clin", 3, func(domain.Viewer) ([]outbox.Event, error) { return nil, refused }); !errors.Is(err, refused) {
			t.Fatalf("MarkRead(failing effects) = %v, want its error", err)
		}
		if v, _ := f.s.MarkRead(t.Context(), th.ID, "user-clin", 0, noRows); v.ReadSeq != 2 {
			t.Fatalf("read mark after a rolled-back MarkRead = %d, want 2", v.ReadSeq)
		}

		ev1, ev2, ev3 := event("archive"), event("archive.again"), event("unarchive")
		if at, err := f.s.SetArchived(t.Context(), th.ID, "user-clin", true, f.now, []outbox.Event{ev1}); err != nil || !at.Equal(f.now) {
			t.Fatalf("SetArchived(on) = %v, %v; want %v", at, err, f.now)
		}
		if at, err := f.s.SetArchived(t.Context(), th.ID, "user-clin", true, f.now.Add(time.Hour), []outbox.Event{ev2}); err != nil || !at.Equal(f.now) {
			t.Fatalf("SetArchived(on again) = %v, %v; want the first time %v kept", at, err, f.now)
		}
		if at, err := f.s.SetArchived(t.Context(), th.ID, "user-clin", false, f.now, []outbox.Event{ev3}); err != nil || !at.IsZero() {
			t.Fatalf("SetArchived(off) = %v, %v; want zero", at, err)
		}
		if at, err := f.s.SetArchived(t.Context(), th.ID, "never-viewed", false, f.now, nil); err != nil || !at.IsZero() {
			t.Fatalf("SetArchived(off, no state) = %v, %v; want zero", at, err)
		}
		f.wantRows("archive", ev1, ev2, ev3)
	})
}

// noRows is MarkRead effects that record nothing.
func noRows(domain.Viewer) ([]outbox.Event, error) { return nil, nil }
