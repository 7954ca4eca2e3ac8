// Package repotest holds the contract tests of the messaging repositories: one suite per
// domain interface, each taking a factory of fresh stores, run against the Postgres adapter
// (real Postgres, a schema of its own) and the in-memory fake alike, so that the use cases'
// unit tests over the fake say something about the service over Postgres (the wild-workouts
// TestRepository pattern).
//
// Suites share one store between their cases; each case makes its own pools, patients and
// threads with unique ids, so cases do not see each other's rows.
package repotest

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// Store is every repository the messaging use cases need; both adapters implement it.
type Store interface {
	domain.ThreadRepository
	domain.MessageRepository
	domain.InboxRepository
	domain.PoolSettingsRepository
	domain.PoolRepository
	domain.AppRepository
	domain.GrantRepository
	domain.PersonRepository
	domain.RetentionRepository
	domain.AuditWriter
}

// Subject is a fresh, empty store under test and how to read back its outbox.
type Subject struct {
	Store Store
	// Outbox returns the ids of every committed outbox row, in write order.
	Outbox func(t *testing.T) []string
}

// Factory makes a Subject for one suite; it may skip the test when its dependency is missing.
type Factory func(t *testing.T) Subject

// Run runs every suite.
func Run(t *testing.T, newStore Factory) {
	t.Run("ThreadRepository", func(t *testing.T) { ThreadRepository(t, newStore) })
	t.Run("MessageRepository", func(t *testing.T) { MessageRepository(t, newStore) })
	t.Run("InboxRepository", func(t *testing.T) { InboxRepository(t, newStore) })
	t.Run("PoolSettingsRepository", func(t *testing.T) { PoolSettingsRepository(t, newStore) })
	t.Run("PoolRepository", func(t *testing.T) { PoolRepository(t, newStore) })
	t.Run("AppRepository", func(t *testing.T) { AppRepository(t, newStore) })
	t.Run("GrantRepository", func(t *testing.T) { GrantRepository(t, newStore) })
	t.Run("PersonRepository", func(t *testing.T) { PersonRepository(t, newStore) })
	t.Run("RetentionRepository", func(t *testing.T) { RetentionRepository(t, newStore) })
	t.Run("LegalHoldListing", func(t *testing.T) { LegalHoldListing(t, newStore) })
	t.Run("AuditWriter", func(t *testing.T) { AuditWriter(t, newStore) })
}

// fixture is one case's view of the shared store.
type fixture struct {
	t   *testing.T
	sub Subject
	s   Store
	// now is a base time at the database's precision (microseconds).
	now time.Time
}

func newFixture(t *testing.T, sub Subject) *fixture {
	return &fixture{t: t, sub: sub, s: sub.Store, now: time.Now().UTC().Truncate(time.Microsecond)}
}

// id returns a unique, readable id with prefix.
func id(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return prefix + "-" + hex.EncodeToString(b)
}

// event returns a valid outbox row.
func event(name string) outbox.Event {
	return outbox.Event{ID: outbox.NewID(), Subject: "securemsg.test.repo." + name, Payload: []byte(name)}
}

// thread returns a new open thread in pool about patient, created by creator at f.now.
func (f *fixture) thread(pool, patient, creator string, role commonv1.Role) *domain.Thread {
	return &domain.Thread{
		ID: uuid.NewString(), PoolID: pool, PatientID: patient,
		Category: commonv1.ThreadCategory_THREAD_CATEGORY_GENERAL, Sensitivity: commonv1.Sensitivity_SENSITIVITY_NORMAL,
		Status: domain.StatusOpen, WrappedDEK: "vault:v1:" + id("dek"), SubjectSealed: []byte("sealed-subject"),
		CreatedBySubject: creator, CreatedByRole: role, CreatedAt: f.now, UpdatedAt: f.now, LastMessageAt: f.now,
	}
}

// message returns a new message of t by sender, sent at.
func message(t *domain.Thread, sender string, role commonv1.Role, at time.Time) *domain.Message {
	return &domain.Message{
		ID: uuid.NewString(), ThreadID: t.ID, SenderSubject: sender, SenderRole: role, BodySealed: []byte("sealed-body"),
		AttachmentIDs: []string{}, CreatedAt: at, ClientRequestID: uuid.NewString(), RequestFPSealed: []byte("sealed-fp"),
	}
}

// effects records each appended message with the thread after it, and adds one row for it.
type effects struct {
	after map[string]domain.Appended
	rows  []outbox.Event
}

func (e *effects) appends(msgs ...domain.MessageAppend) domain.Appends {
	if e.after == nil {
		e.after = map[string]domain.Appended{}
	}
	return domain.Appends{Messages: msgs, Effects: func(m *domain.Message, after domain.Appended) ([]outbox.Event, error) {
		e.after[m.ID] = after
		ev := event("appended")
		e.rows = append(e.rows, ev)
		return []outbox.Event{ev}, nil
	}}
}

// create stores t with msgs (the first marks the auto-reply sent when markFirst) and fails the
// test on error.
func (f *fixture) create(t *domain.Thread, markFirst bool, msgs ...*domain.Message) {
	f.t.Helper()
	var as []domain.MessageAppend
	for i, m := range msgs {
		as = append(as, domain.MessageAppend{Message: m, MarkAutoReplied: markFirst && i == 0})
	}
	if err := f.s.CreateThread(f.t.Context(), t, nil, domain.Appends{Messages: as}); err != nil {
		f.t.Fatalf("CreateThread() = %v", err)
	}
}

// patientThread stores a thread a new patient opened in a new pool, with the patient's first
// message (marking the pool's auto-reply sent when markAutoReplied), and returns it with the
// patient's id.
func (f *fixture) patientThread(markAutoReplied bool) (th *domain.Thread, patient string) {
	f.t.Helper()
	patient = id("p")
	th = f.thread(id("pool"), patient, "user-"+patient, patientRole)
	f.create(th, markAutoReplied, message(th, "user-"+patient, patientRole, f.now))
	return th, patient
}

// setSettings stores edited settings for pool, as an admin at f.now, and fails the test on error.
func (f *fixture) setSettings(pool string, edit func(*domain.PoolSettings)) {
	f.t.Helper()
	if _, err := f.s.UpdatePoolSettings(f.t.Context(), pool, func(cur domain.PoolSettings) (domain.PoolSettings, []outbox.Event, error) {
		edit(&cur)
		cur.UpdatedAt, cur.UpdatedBySubject = f.now, "admin"
		return cur, nil, nil
	}); err != nil {
		f.t.Fatalf("UpdatePoolSettings() = %v", err)
	}
}

// load returns the stored thread.
func (f *fixture) load(id string) *domain.Thread {
	f.t.Helper()
	t, err := f.s.Thread(f.t.Context(), id)
	if err != nil {
		f.t.Fatalf("Thread(%s) = %v", id, err)
	}
	return t
}

// wantMessages fails unless the stored thread holds n messages.
func (f *fixture) wantMessages(what, threadID string, n int32) {
	f.t.Helper()
	if got := f.load(threadID).MessageCount; got != n {
		f.t.Fatalf("%s: the thread holds %d messages, want %d", what, got, n)
	}
}

// wantRows fails unless every row was committed, in the order given.
func (f *fixture) wantRows(what string, rows ...outbox.Event) {
	f.t.Helper()
	all := f.sub.Outbox(f.t)
	last := -1
	for _, r := range rows {
		i := slices.Index(all, r.ID)
		if i < 0 {
			f.t.Fatalf("%s: outbox row %s (%s) not committed", what, r.ID, r.Subject)
		}
		if i < last {
			f.t.Fatalf("%s: outbox row %s (%s) committed out of order", what, r.ID, r.Subject)
		}
		last = i
	}
}

// wantNoRows fails if any of rows was committed.
func (f *fixture) wantNoRows(what string, rows ...outbox.Event) {
	f.t.Helper()
	all := f.sub.Outbox(f.t)
	for _, r := range rows {
		if slices.Contains(all, r.ID) {
			f.t.Fatalf("%s: outbox row %s (%s) committed, want none", what, r.ID, r.Subject)
		}
	}
}

// isUnavailable reports whether err is an Unavailable refusal (NotRecorded, DatabaseUnavailable).
func isUnavailable(err error) bool {
	k, _ := usererr.KindOf(err)
	return k == usererr.Unavailable
}
