package repotest

import (
	"cmp"
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
			want, mark := int32(1), int32(0)
			if r.Thread.ID == t3.ID {
				want, mark = 0, 1 // clin wrote it: writing reads up to one's own message
			}
			if r.Viewer.Unread != want || r.Viewer.ReadSeq != mark || !r.Viewer.ArchivedAt.IsZero() {
				t.Errorf("viewer state in %s = %+v, want %d unread, read up to %d", r.Thread.ID, r.Viewer, want, mark)
			}
		}
		if _, err := f.s.MarkRead(t.Context(), t1.ID, readMark(clin, 1, f.now), noRows); err != nil {
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
		if page.Viewer.Unread != 1 || page.Viewer.ReadSeq != 2 {
			t.Fatalf("viewer = %+v, want read up to 2 (the clinician's own message), 1 unread", page.Viewer)
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
		nurse := "user-" + id("nurse")
		v, err := f.s.MarkRead(t.Context(), th.ID, readMark(nurse, 2, f.now), func(v domain.Viewer) ([]outbox.Event, error) {
			seen = v
			return []outbox.Event{ev}, nil
		})
		if err != nil || v.ReadSeq != 2 || v.Unread != 1 || seen != v {
			t.Fatalf("MarkRead(2) = %+v, %v (effects saw %+v); want read up to 2, one unread", v, err, seen)
		}
		f.wantRows("mark read", ev)
		if v, err := f.s.MarkRead(t.Context(), th.ID, readMark(nurse, 1, f.now), noRows); err != nil || v.ReadSeq != 2 {
			t.Fatalf("MarkRead(1) = %+v, %v; want the mark kept at 2", v, err)
		}
		if v, err := f.s.MarkRead(t.Context(), th.ID, readMark("user-"+patient, 0, f.now), noRows); err != nil || v.Unread != 1 || v.ReadSeq != 2 {
			t.Fatalf("patient's viewer = %+v, %v; want read up to their own message 2, the clinician's unread", v, err)
		}
		refused := errors.New("cannot record")
		if _, err := f.s.MarkRead(t.Context(), th.ID, readMark(nurse, 3, f.now), func(domain.Viewer) ([]outbox.Event, error) { return nil, refused }); !errors.Is(err, refused) {
			t.Fatalf("MarkRead(failing effects) = %v, want its error", err)
		}
		if v, _ := f.s.MarkRead(t.Context(), th.ID, readMark(nurse, 0, f.now), noRows); v.ReadSeq != 2 {
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

	t.Run("queues and their counts", func(t *testing.T) {
		f := newFixture(t, sub)
		pool, other := id("pool"), id("pool")
		clin, colleague := "user-"+id("clin"), "user-"+id("clin")
		var all []*domain.Thread
		mk := func(pool string, cat commonv1.ThreadCategory, at time.Duration) *domain.Thread {
			p := id("p")
			th := f.thread(pool, p, "user-"+p, patientRole)
			th.Category = cat
			f.create(th, false, message(th, "user-"+p, patientRole, f.now.Add(at)))
			all = append(all, th)
			return th
		}
		triage := func(th *domain.Thread, st domain.Status, assignee string) {
			t.Helper()
			if _, err := f.s.UpdateThread(t.Context(), th.ID, func(cur *domain.Thread, _ domain.PoolSettingsReader) (domain.ThreadChange, error) {
				tr := &domain.Triage{Status: st, Assignee: assignee, PoolID: cur.PoolID, UpdatedAt: cur.UpdatedAt}
				if st == domain.StatusClosed {
					tr.ClosedAt = f.now
				}
				return domain.ThreadChange{Triage: tr}, nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		general, billing := commonv1.ThreadCategory_THREAD_CATEGORY_GENERAL, commonv1.ThreadCategory_THREAD_CATEGORY_BILLING
		open1 := mk(pool, general, time.Second)
		mine := mk(pool, billing, 2*time.Second)
		theirs := mk(pool, general, 3*time.Second)
		closed := mk(pool, general, 4*time.Second)
		elsewhere := mk(other, general, 5*time.Second)
		triage(mine, domain.StatusAssigned, clin)
		triage(theirs, domain.StatusAssigned, colleague)
		triage(closed, domain.StatusClosed, clin)
		if _, err := f.s.MarkRead(t.Context(), open1.ID, readMark(clin, 1, f.now), noRows); err != nil {
			t.Fatal(err)
		}
		base := domain.ListQuery{Viewer: clin, PoolIDs: []string{pool}, Box: domain.BoxInbox, Limit: 50}
		list := func(edit func(*domain.ListQuery)) []string {
			t.Helper()
			q := base
			edit(&q)
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
		ids := func(ts ...*domain.Thread) []string {
			var out []string
			for _, th := range ts {
				out = append(out, th.ID)
			}
			return out
		}
		open := []domain.Status{domain.StatusOpen, domain.StatusAssigned}
		for _, tc := range []struct {
			name string
			edit func(*domain.ListQuery)
			want []string
		}{
			{"every status", func(*domain.ListQuery) {}, ids(closed, theirs, mine, open1)},
			{"open and assigned", func(q *domain.ListQuery) { q.Statuses = open }, ids(theirs, mine, open1)},
			{"closed", func(q *domain.ListQuery) { q.Statuses = []domain.Status{domain.StatusClosed} }, ids(closed)},
			{"unassigned", func(q *domain.ListQuery) { q.Assignee = domain.AssigneeUnassigned }, ids(open1)},
			{"mine, open", func(q *domain.ListQuery) { q.Assignee, q.Statuses = domain.AssigneeMe, open }, ids(mine)},
			{"a colleague's", func(q *domain.ListQuery) { q.Assignee, q.AssigneeSubject = domain.AssigneeMember, colleague }, ids(theirs)},
			{"billing", func(q *domain.ListQuery) { q.Categories = []commonv1.ThreadCategory{billing} }, ids(mine)},
			{"unread, open", func(q *domain.ListQuery) { q.UnreadOnly, q.Statuses = true, open }, ids(theirs, mine)},
			{"both pools", func(q *domain.ListQuery) { q.PoolIDs = []string{pool, other}; q.Statuses = open }, ids(elsewhere, theirs, mine, open1)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if got := list(tc.edit); !slices.Equal(got, tc.want) {
					t.Fatalf("ListThreads() = %v, want %v", got, tc.want)
				}
			})
		}

		// Counts leave out the assignee, unread and keyset filters: one call labels every tab.
		q := base
		q.Statuses, q.Assignee, q.UnreadOnly, q.AfterID, q.AfterTime = open, domain.AssigneeMe, true, open1.ID, f.now
		c, err := f.s.CountThreads(t.Context(), q)
		if err != nil {
			t.Fatalf("CountThreads() = %v", err)
		}
		if want := (domain.ThreadCounts{Total: 3, Unread: 2, UnreadMessages: 2, Unassigned: 1, AssignedToMe: 1}); c != want {
			t.Fatalf("CountThreads(open) = %+v, want %+v", c, want)
		}
		if c, err := f.s.CountThreads(t.Context(), domain.ListQuery{Viewer: clin, Box: domain.BoxInbox}); err != nil || c != (domain.ThreadCounts{}) {
			t.Fatalf("CountThreads(no visibility) = %+v, %v; want zero", c, err)
		}
	})

	t.Run("read receipts", func(t *testing.T) {
		f := newFixture(t, sub)
		pool, patient := id("pool"), id("p")
		pt, clin, proxy := "user-"+patient, "user-"+id("clin"), "user-"+id("proxy")
		th := f.thread(pool, patient, pt, patientRole)
		f.create(th, false, message(th, pt, patientRole, f.now), message(th, pt, patientRole, f.now.Add(time.Second)))
		// The patient wrote 1 and 2: a receipt at 2 from the send. A proxy reads up to 1 then 2.
		if _, err := f.s.MarkRead(t.Context(), th.ID, domain.ReadMark{Subject: proxy, Role: commonv1.Role_ROLE_PROXY, OnBehalfOf: patient, Seq: 1, At: f.now.Add(2 * time.Second)}, noRows); err != nil {
			t.Fatal(err)
		}
		if _, err := f.s.MarkRead(t.Context(), th.ID, domain.ReadMark{Subject: proxy, Role: commonv1.Role_ROLE_PROXY, OnBehalfOf: patient, Seq: 2, At: f.now.Add(3 * time.Second)}, noRows); err != nil {
			t.Fatal(err)
		}
		// A read that does not raise the mark leaves no receipt.
		if _, err := f.s.MarkRead(t.Context(), th.ID, domain.ReadMark{Subject: proxy, Role: commonv1.Role_ROLE_PROXY, Seq: 1, At: f.now.Add(time.Hour)}, noRows); err != nil {
			t.Fatal(err)
		}
		// A clinician answers (a receipt at 3 from the send) without marking anything read.
		if err := f.s.AppendMessageIfUnchanged(t.Context(), f.load(th.ID), message(th, clin, clinicianRole, f.now.Add(4*time.Second)), nil); err != nil {
			t.Fatalf("AppendMessageIfUnchanged() = %v", err)
		}
		page, err := f.s.ReadThreadPage(t.Context(), f.load(th.ID), pt, 0, 10, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		type got struct {
			sub  string
			role commonv1.Role
			seq  int32
			at   time.Duration
		}
		var receipts []got
		for _, r := range page.Receipts {
			receipts = append(receipts, got{r.Subject, r.Role, r.Seq, r.At.Sub(f.now)})
		}
		want := []got{{clin, clinicianRole, 3, 4 * time.Second}, {proxy, commonv1.Role_ROLE_PROXY, 1, 2 * time.Second},
			{proxy, commonv1.Role_ROLE_PROXY, 2, 3 * time.Second}, {pt, patientRole, 1, 0}, {pt, patientRole, 2, time.Second}}
		slices.SortFunc(want, func(a, b got) int { return cmp.Or(cmp.Compare(a.sub, b.sub), cmp.Compare(a.seq, b.seq)) })
		if !slices.Equal(receipts, want) {
			t.Fatalf("receipts = %+v, want %+v", receipts, want)
		}
		if page.Receipts[slices.IndexFunc(page.Receipts, func(r domain.ReadReceipt) bool { return r.Subject == proxy })].OnBehalfOf != patient {
			t.Fatalf("a proxy's receipt lost the patient it read for: %+v", page.Receipts)
		}
		// Message 2's first reads: the patient (writing), the proxy at +3 s, the clinician at +4 s.
		var firsts []string
		for _, r := range domain.FirstReads(page.Receipts, 2) {
			firsts = append(firsts, r.Subject)
		}
		if !slices.Equal(firsts, []string{pt, proxy, clin}) {
			t.Fatalf("FirstReads(2) = %v, want patient, proxy, clinician", firsts)
		}
		later, err := f.s.ReadThreadPage(t.Context(), f.load(th.ID), pt, 2, 10, nil, nil)
		if err != nil || len(later.Receipts) != 1 || later.Receipts[0].Seq != 3 {
			t.Fatalf("receipts past 2 = %+v, %v; want only the clinician's at 3", later.Receipts, err)
		}
	})
}

// readMark is subject reading up to seq, as a clinician, at.
func readMark(subject string, seq int32, at time.Time) domain.ReadMark {
	return domain.ReadMark{Subject: subject, Role: clinicianRole, Seq: seq, At: at}
}

// noRows is MarkRead effects that record nothing.
func noRows(domain.Viewer) ([]outbox.Event, error) { return nil, nil }
