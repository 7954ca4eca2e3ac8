package repotest

import (
	"context"
	"errors"
	"testing"
	"time"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// PoolSettingsRepository is the contract of domain.PoolSettingsRepository.
func PoolSettingsRepository(t *testing.T, newStore Factory) {
	sub := newStore(t)

	t.Run("never stored", func(t *testing.T) {
		f := newFixture(t, sub)
		pool := id("pool")
		st, err := f.s.PoolSettings(t.Context(), pool)
		if err != nil || st != (domain.PoolSettings{PoolID: pool}) {
			t.Fatalf("PoolSettings(new pool) = %+v, %v; want the zero settings of the pool", st, err)
		}
	})

	t.Run("update, version by version", func(t *testing.T) {
		f := newFixture(t, sub)
		pool := id("pool")
		ev1, ev2 := event("settings.1"), event("settings.2")
		var seen []int64
		update := func(ev outbox.Event, edit func(*domain.PoolSettings)) domain.PoolSettings {
			t.Helper()
			st, err := f.s.UpdatePoolSettings(t.Context(), pool, func(cur domain.PoolSettings) (domain.PoolSettings, []outbox.Event, error) {
				seen = append(seen, cur.Version)
				edit(&cur)
				return cur, []outbox.Event{ev}, nil
			})
			if err != nil {
				t.Fatalf("UpdatePoolSettings() = %v", err)
			}
			return st
		}
		first := update(ev1, func(s *domain.PoolSettings) {
			s.AutoReplyEnabled, s.AutoReplyText, s.Turnaround, s.EmergencyDisclaimer = true, "Thanks", 48*time.Hour, "Call 911."
			s.UpdatedAt, s.UpdatedBySubject = f.now, "admin"
		})
		if first.Version != 1 || first.PoolID != pool {
			t.Fatalf("first update = %+v, want version 1", first)
		}
		second := update(ev2, func(s *domain.PoolSettings) { s.AutoReplyText, s.Turnaround = "Thank you", 0 })
		if second.Version != 2 {
			t.Fatalf("second update = %+v, want version 2", second)
		}
		if len(seen) != 2 || seen[0] != 0 || seen[1] != 1 {
			t.Fatalf("change saw versions %v, want [0 1]", seen)
		}
		f.wantRows("updates", ev1, ev2)
		st, err := f.s.PoolSettings(t.Context(), pool)
		want := domain.PoolSettings{PoolID: pool, AutoReplyEnabled: true, AutoReplyText: "Thank you", EmergencyDisclaimer: "Call 911.",
			UpdatedAt: f.now, UpdatedBySubject: "admin", Version: 2}
		if err != nil || !st.UpdatedAt.Equal(want.UpdatedAt) {
			t.Fatalf("PoolSettings() = %+v, %v; want %+v", st, err, want)
		}
		st.UpdatedAt = want.UpdatedAt
		if st != want {
			t.Fatalf("PoolSettings() = %+v, want %+v", st, want)
		}
	})

	t.Run("a concurrent writer wins", func(t *testing.T) {
		f := newFixture(t, sub)
		pool := id("pool")
		lost := event("settings.lost")
		_, err := f.s.UpdatePoolSettings(t.Context(), pool, func(cur domain.PoolSettings) (domain.PoolSettings, []outbox.Event, error) {
			// Another replica stores its version between this read and this write.
			if _, err := f.s.UpdatePoolSettings(t.Context(), pool, func(c domain.PoolSettings) (domain.PoolSettings, []outbox.Event, error) {
				c.AutoReplyText, c.UpdatedAt, c.UpdatedBySubject = "theirs", f.now, "admin-2"
				return c, nil, nil
			}); err != nil {
				t.Errorf("concurrent UpdatePoolSettings() = %v", err)
			}
			cur.AutoReplyText, cur.UpdatedAt, cur.UpdatedBySubject = "ours", f.now, "admin-1"
			return cur, []outbox.Event{lost}, nil
		})
		if !errors.Is(err, domain.ErrSettingsChanged) {
			t.Fatalf("UpdatePoolSettings(lost race) = %v, want ErrSettingsChanged", err)
		}
		f.wantNoRows("lost update", lost)
		if st, _ := f.s.PoolSettings(t.Context(), pool); st.AutoReplyText != "theirs" || st.Version != 1 {
			t.Fatalf("settings after the race = %+v, want the winner's at version 1", st)
		}

		refused := errors.New("etag mismatch")
		if _, err := f.s.UpdatePoolSettings(t.Context(), pool, func(cur domain.PoolSettings) (domain.PoolSettings, []outbox.Event, error) {
			return cur, []outbox.Event{lost}, refused
		}); !errors.Is(err, refused) {
			t.Fatalf("UpdatePoolSettings(refusing change) = %v, want its error", err)
		}
		f.wantNoRows("refused update", lost)
	})
}

// RetentionRepository is the contract of domain.RetentionRepository.
func RetentionRepository(t *testing.T, newStore Factory) {
	sub := newStore(t)

	t.Run("purge lock", func(t *testing.T) {
		f := newFixture(t, sub)
		name := id("purge")
		ran := false
		err := f.s.WithPurgeLock(t.Context(), name, func(_ context.Context, _ domain.ExpiredThreads) error {
			if err := f.s.WithPurgeLock(t.Context(), name, func(context.Context, domain.ExpiredThreads) error { return nil }); !errors.Is(err, domain.ErrPurgeRunning) {
				t.Errorf("WithPurgeLock(held name) = %v, want ErrPurgeRunning", err)
			}
			if err := f.s.WithPurgeLock(t.Context(), id("purge"), func(context.Context, domain.ExpiredThreads) error { return nil }); err != nil {
				t.Errorf("WithPurgeLock(another name) = %v", err)
			}
			ran = true
			return nil
		})
		if err != nil || !ran {
			t.Fatalf("WithPurgeLock() = %v (ran %v)", err, ran)
		}
		want := errors.New("purge failed")
		if err := f.s.WithPurgeLock(t.Context(), name, func(context.Context, domain.ExpiredThreads) error { return want }); !errors.Is(err, want) {
			t.Fatalf("WithPurgeLock(after release) = %v, want purge's own error", err)
		}
	})

	t.Run("expired threads", func(t *testing.T) {
		f := newFixture(t, sub)
		// The cutoff is in the distant past, where only this case's threads are.
		base := time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC)
		pool, patient, heldPatient := id("pool"), id("p"), id("p")
		cat := commonv1.ThreadCategory_THREAD_CATEGORY_BILLING
		mk := func(patient string, age time.Duration, attachments int) *domain.Thread {
			th := f.thread(pool, patient, "user-"+patient, patientRole)
			th.Category, th.CreatedAt = cat, base.Add(-age)
			m := message(th, "user-"+patient, patientRole, base.Add(-age))
			for range attachments {
				m.AttachmentIDs = append(m.AttachmentIDs, id("att"))
			}
			f.create(th, false, m)
			return th
		}
		older, old, fresh := mk(patient, 3*time.Hour, 2), mk(patient, 2*time.Hour, 0), mk(patient, 0, 0)
		ownHold, patientHold := mk(patient, 4*time.Hour, 0), mk(heldPatient, 4*time.Hour, 0)
		if _, err := f.s.SetThreadHold(t.Context(), ownHold.ID, true, "LIT-1", "user-admin", f.now, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := f.s.SetPatientHold(t.Context(), heldPatient, true, "LIT-2", "user-admin", f.now, nil); err != nil {
			t.Fatal(err)
		}
		cutoff := base.Add(-time.Hour)
		err := f.s.WithPurgeLock(t.Context(), id("purge"), func(ctx context.Context, expired domain.ExpiredThreads) error {
			n, err := expired.CountHeldExpired(ctx, cat, cutoff)
			if err != nil || n < 2 {
				t.Errorf("CountHeldExpired() = %d, %v; want at least this case's 2", n, err)
			}
			cands, err := expired.ExpiredThreads(ctx, cat, cutoff, 1000)
			if err != nil {
				t.Fatalf("ExpiredThreads() = %v", err)
			}
			var mine []domain.PurgeCandidate
			for _, c := range cands {
				if c.PoolID == pool {
					mine = append(mine, c)
				}
			}
			if len(mine) != 2 || mine[0].ID != older.ID || mine[1].ID != old.ID {
				t.Fatalf("ExpiredThreads() = %+v, want the two unheld old threads, oldest first", mine)
			}
			if c := mine[0]; c.Messages != 1 || c.Attachments != 2 || c.PatientID != patient || c.WrappedDEK != older.WrappedDEK ||
				c.Category != cat || c.Sensitivity != older.Sensitivity {
				t.Errorf("candidate = %+v", c)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}

		ev, evKept := event("purged"), event("kept")
		if deleted, err := f.s.DeleteExpiredThread(t.Context(), older.ID, cutoff, []outbox.Event{ev}); err != nil || !deleted {
			t.Fatalf("DeleteExpiredThread(expired) = %v, %v; want deleted", deleted, err)
		}
		f.wantRows("purge", ev)
		if _, err := f.s.Thread(t.Context(), older.ID); !errors.Is(err, domain.ErrThreadNotFound) {
			t.Fatalf("purged thread: Thread() = %v, want ErrThreadNotFound", err)
		}
		if msgs, err := f.s.Messages(t.Context(), older.ID, 0, 10); err != nil || len(msgs) != 0 {
			t.Fatalf("purged thread's messages = %d, %v; want none", len(msgs), err)
		}
		for _, th := range []*domain.Thread{fresh, ownHold, patientHold} {
			if deleted, err := f.s.DeleteExpiredThread(t.Context(), th.ID, cutoff, []outbox.Event{evKept}); err != nil || deleted {
				t.Fatalf("DeleteExpiredThread(fresh or held) = %v, %v; want kept", deleted, err)
			}
			f.load(th.ID)
		}
		f.wantNoRows("kept threads", evKept)
	})
}

// AuditWriter is the contract of domain.AuditWriter.
func AuditWriter(t *testing.T, newStore Factory) {
	sub := newStore(t)
	f := newFixture(t, sub)
	a, b := event("audit.a"), event("audit.b")
	if err := f.s.WriteAudit(t.Context(), []outbox.Event{a, b}); err != nil {
		t.Fatalf("WriteAudit() = %v", err)
	}
	f.wantRows("audit", a, b)
	c := event("audit.c")
	bad := outbox.Event{ID: outbox.NewID(), Subject: "not.a.subject."}
	if err := f.s.WriteAudit(t.Context(), []outbox.Event{c, bad}); !isUnavailable(err) {
		t.Fatalf("WriteAudit(invalid row) = %v, want an Unavailable refusal", err)
	}
	f.wantNoRows("refused audit", c)
}
