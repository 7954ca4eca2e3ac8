// Package repotest is the contract of domain.AttachmentRepository and domain.AuditWriter: one
// suite that every implementation passes (the wild-workouts TestRepository shape), run by
// adapters/pgstore against Postgres and by adapters/memstore in memory, so that use-case tests
// over the fake say something about the real thing.
package repotest

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// Subject is one implementation under test, empty when handed over.
type Subject struct {
	Repo  domain.AttachmentRepository
	Audit domain.AuditWriter
	// RowIDs returns the ids of the outbox rows committed so far, in commit order.
	RowIDs func(t *testing.T) []string
}

// Run runs the contract against fresh subjects made by newSubject.
func Run(t *testing.T, newSubject func(t *testing.T) Subject) {
	tests := []struct {
		name string
		run  func(t *testing.T, s Subject)
	}{
		{"InsertAndLoad", testInsertAndLoad},
		{"AttachmentByRequest", testAttachmentByRequest},
		{"Quota", testQuota},
		{"ReusedRequestID", testReusedRequestID},
		{"CompleteUpload", testCompleteUpload},
		{"UpdateAttachment", testUpdateAttachment},
		{"UpdateAttachmentRollsBack", testUpdateRollsBack},
		{"BindAttachment", testBindAttachment},
		{"DeleteAttachment", testDeleteAttachment},
		{"WriteAudit", testWriteAudit},
		{"Listings", testListings},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newSubject(t))
		})
	}
}

// uploading is a new upload of size bytes by uploader, ready for InsertUploading.
func uploading(uploader string, size int64) *domain.Attachment {
	id := uuid.NewString()
	return &domain.Attachment{
		ID: id, UploaderSubject: uploader, State: domain.StateUploading, ObjectName: "obj/" + id,
		WrappedDEK: "vault:v1:" + id, DeclaredMediaType: "text/plain", SizeBytes: size, ObjectSize: size + 60,
	}
}

func insert(t *testing.T, s Subject, a *domain.Attachment) *domain.Attachment {
	t.Helper()
	if err := s.Repo.InsertUploading(t.Context(), a, 0); err != nil {
		t.Fatalf("InsertUploading(%s) = %v", a.ID, err)
	}
	return a
}

func load(t *testing.T, s Subject, id string) *domain.Attachment {
	t.Helper()
	a, err := s.Repo.Attachment(t.Context(), id)
	if err != nil {
		t.Fatalf("Attachment(%s) = %v", id, err)
	}
	return a
}

// complete stores a as finished in state with a new row, and returns the row's id.
func complete(t *testing.T, s Subject, a *domain.Attachment, state domain.State) string {
	t.Helper()
	a.State, a.MediaType, a.SHA256, a.FileNameSealed = state, "text/plain", []byte("sum"), []byte("sealed")
	r := row()
	if err := s.Repo.CompleteUpload(t.Context(), a, []outbox.Event{r}); err != nil {
		t.Fatalf("CompleteUpload(%s) = %v", a.ID, err)
	}
	return r.ID
}

// row is a valid outbox row.
func row() outbox.Event {
	return outbox.Event{ID: outbox.NewID(), Subject: "test.attachment.contract", Payload: []byte("payload")}
}

// now is the current time as Postgres keeps it (microseconds).
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func wantRows(t *testing.T, s Subject, what string, want ...string) {
	t.Helper()
	if got := s.RowIDs(t); !slices.Equal(got, want) {
		t.Errorf("outbox rows after %s = %v, want %v", what, got, want)
	}
}

func ids(as []*domain.Attachment) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ID
	}
	return out
}

func testInsertAndLoad(t *testing.T, s Subject) {
	if _, err := s.Repo.Attachment(t.Context(), uuid.NewString()); !errors.Is(err, domain.ErrAttachmentNotFound) {
		t.Errorf("Attachment(missing) = %v, want ErrAttachmentNotFound", err)
	}
	a := uploading("user-a", 100)
	a.ClientRequestID, a.AADThreadID, a.ThreadID, a.PatientID, a.PoolID = uuid.NewString(), "thr-1", "thr-1", "p-1", "pool-1"
	before := time.Now().Add(-time.Minute)
	insert(t, s, a)
	if a.CreateTime.Before(before) {
		t.Errorf("InsertUploading set CreateTime %v, want about now", a.CreateTime)
	}
	got := load(t, s, a.ID)
	if got.ID != a.ID || got.UploaderSubject != "user-a" || got.ClientRequestID != a.ClientRequestID ||
		got.AADThreadID != "thr-1" || got.ThreadID != "thr-1" || got.PatientID != "p-1" || got.PoolID != "pool-1" ||
		got.State != domain.StateUploading || got.ObjectName != a.ObjectName || got.WrappedDEK != a.WrappedDEK ||
		got.DeclaredMediaType != "text/plain" || got.SizeBytes != 100 || got.ObjectSize != 160 || !got.CreateTime.Equal(a.CreateTime) {
		t.Errorf("Attachment(inserted) = %+v, want %+v", got, a)
	}
	wantRows(t, s, "an insert")
}

func testAttachmentByRequest(t *testing.T, s Subject) {
	a := uploading("user-a", 10)
	a.ClientRequestID = uuid.NewString()
	insert(t, s, a)
	insert(t, s, uploading("user-a", 10)) // no request id
	got, err := s.Repo.AttachmentByRequest(t.Context(), "user-a", a.ClientRequestID)
	if err != nil || got == nil || got.ID != a.ID {
		t.Fatalf("AttachmentByRequest(user-a, its id) = %v, %v, want %s", got, err, a.ID)
	}
	for _, q := range []struct{ uploader, id string }{{"user-b", a.ClientRequestID}, {"user-a", uuid.NewString()}} {
		if got, err := s.Repo.AttachmentByRequest(t.Context(), q.uploader, q.id); got != nil || err != nil {
			t.Errorf("AttachmentByRequest(%s, %s) = %v, %v, want nil, nil", q.uploader, q.id, got, err)
		}
	}
}

func testQuota(t *testing.T, s Subject) {
	ctx := t.Context()
	const quota = 250
	first, second := uploading("user-q", 100), uploading("user-q", 100)
	for _, a := range []*domain.Attachment{first, second} {
		if err := s.Repo.InsertUploading(ctx, a, quota); err != nil {
			t.Fatalf("InsertUploading(within quota) = %v", err)
		}
	}
	if err := s.Repo.InsertUploading(ctx, uploading("user-q", 100), quota); !errors.Is(err, usererr.ErrResourceExhausted) {
		t.Fatalf("InsertUploading(over quota) = %v, want ResourceExhausted", err)
	}
	if err := s.Repo.InsertUploading(ctx, uploading("user-other", 100), quota); err != nil {
		t.Errorf("InsertUploading(another uploader) = %v, want their own quota", err)
	}
	if err := s.Repo.InsertUploading(ctx, uploading("user-q", 1000), 0); err != nil {
		t.Errorf("InsertUploading(no quota) = %v", err)
	}
	// Infected, failed and deleted files hold no quota; pending and clean ones do.
	complete(t, s, first, domain.StateInfected)
	err := s.Repo.UpdateAttachment(ctx, second.ID, func(a *domain.Attachment) (domain.Effects, error) {
		a.MarkDeleted(now())
		return domain.Effects{Changed: true}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	third := uploading("user-q", 100)
	if err := s.Repo.InsertUploading(ctx, third, 1100); err != nil {
		t.Errorf("InsertUploading(after the others left the quota) = %v", err)
	}
	complete(t, s, third, domain.StatePending)
	if err := s.Repo.InsertUploading(ctx, uploading("user-q", 1), 1100); !errors.Is(err, usererr.ErrResourceExhausted) {
		t.Errorf("InsertUploading(pending file counted) = %v, want ResourceExhausted", err)
	}
}

func testReusedRequestID(t *testing.T, s Subject) {
	crid := uuid.NewString()
	a, b := uploading("user-a", 10), uploading("user-a", 10)
	a.ClientRequestID, b.ClientRequestID = crid, crid
	insert(t, s, a)
	if err := s.Repo.InsertUploading(t.Context(), b, 0); !errors.Is(err, usererr.ErrAlreadyExists) {
		t.Errorf("InsertUploading(reused request id) = %v, want AlreadyExists", err)
	}
	other := uploading("user-b", 10)
	other.ClientRequestID = crid
	insert(t, s, other) // request ids are the uploader's own
}

func testCompleteUpload(t *testing.T, s Subject) {
	a := insert(t, s, uploading("user-a", 10))
	a.State, a.MediaType, a.SHA256, a.FileNameSealed, a.ScanAttempts = domain.StateClean, "text/plain", []byte("sum"), []byte("sealed"), 1
	a.ScanTime = now()
	r1, r2 := row(), row()
	if err := s.Repo.CompleteUpload(t.Context(), a, []outbox.Event{r1, r2}); err != nil {
		t.Fatalf("CompleteUpload = %v", err)
	}
	got := load(t, s, a.ID)
	if got.State != domain.StateClean || got.MediaType != "text/plain" || !bytes.Equal(got.SHA256, []byte("sum")) ||
		!bytes.Equal(got.FileNameSealed, []byte("sealed")) || got.ScanAttempts != 1 || !got.ScanTime.Equal(a.ScanTime) ||
		got.WrappedDEK != a.WrappedDEK {
		t.Errorf("Attachment(completed) = %+v, want the upload's facts", got)
	}
	wantRows(t, s, "CompleteUpload", r1.ID, r2.ID)

	// Infected: the key goes.
	inf := insert(t, s, uploading("user-a", 10))
	inf.RecordScan(domain.StateInfected, "Eicar-Signature", now(), 1)
	r3 := row()
	if err := s.Repo.CompleteUpload(t.Context(), inf, []outbox.Event{r3}); err != nil {
		t.Fatal(err)
	}
	if got := load(t, s, inf.ID); got.WrappedDEK != "" || got.FileNameSealed != nil || got.SignatureName != "Eicar-Signature" {
		t.Errorf("Attachment(infected) = %+v, want no key, no name, the signature", got)
	}

	gone := uploading("user-a", 10)
	if err := s.Repo.CompleteUpload(t.Context(), gone, []outbox.Event{row()}); !errors.Is(err, domain.ErrAttachmentNotFound) {
		t.Errorf("CompleteUpload(removed meanwhile) = %v, want ErrAttachmentNotFound", err)
	}
	wantRows(t, s, "CompleteUpload of a removed row", r1.ID, r2.ID, r3.ID)
}

func testUpdateAttachment(t *testing.T, s Subject) {
	ctx := t.Context()
	a := insert(t, s, uploading("user-a", 10))
	complete(t, s, a, domain.StatePending)
	before := s.RowIDs(t)
	called := false
	err := s.Repo.UpdateAttachment(ctx, uuid.NewString(), func(*domain.Attachment) (domain.Effects, error) {
		called = true
		return domain.Effects{}, nil
	})
	if !errors.Is(err, domain.ErrAttachmentNotFound) || called {
		t.Errorf("UpdateAttachment(missing) = %v (change called %v), want ErrAttachmentNotFound without a call", err, called)
	}

	// Rows without a change are written; the attachment stays as it was.
	r1 := row()
	err = s.Repo.UpdateAttachment(ctx, a.ID, func(cur *domain.Attachment) (domain.Effects, error) {
		if cur.ID != a.ID || cur.State != domain.StatePending {
			t.Errorf("change got %+v, want the stored pending attachment", cur)
		}
		cur.SignatureName = "not written"
		return domain.Effects{Rows: []outbox.Event{r1}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := load(t, s, a.ID); got.SignatureName != "" {
		t.Errorf("an unchanged attachment was written back: %+v", got)
	}

	at := now()
	r2 := row()
	err = s.Repo.UpdateAttachment(ctx, a.ID, func(cur *domain.Attachment) (domain.Effects, error) {
		cur.RecordScan(domain.StateFailed, "", at, 3)
		return domain.Effects{Changed: true, Rows: []outbox.Event{r2}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := load(t, s, a.ID)
	if got.State != domain.StateFailed || got.ScanAttempts != 3 || !got.ScanTime.Equal(at) || got.WrappedDEK != "" || got.FileNameSealed != nil {
		t.Errorf("Attachment(after a failed scan) = %+v, want failed, 3 attempts, shredded", got)
	}
	err = s.Repo.UpdateAttachment(ctx, a.ID, func(cur *domain.Attachment) (domain.Effects, error) {
		cur.MarkDeleted(at)
		return domain.Effects{Changed: true}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := load(t, s, a.ID); got.State != domain.StateDeleted || got.SHA256 != nil || !got.DeleteTime.Equal(at) {
		t.Errorf("Attachment(deleted) = %+v, want a tombstone without a hash", got)
	}
	wantRows(t, s, "UpdateAttachment", append(before, r1.ID, r2.ID)...)
}

func testUpdateRollsBack(t *testing.T, s Subject) {
	ctx := t.Context()
	a := insert(t, s, uploading("user-a", 10))
	complete(t, s, a, domain.StateClean)
	before := s.RowIDs(t)
	refused := usererr.New(usererr.FailedPrecondition, "TEST_REFUSAL", "refused")
	err := s.Repo.UpdateAttachment(ctx, a.ID, func(cur *domain.Attachment) (domain.Effects, error) {
		cur.MarkDeleted(now())
		return domain.Effects{Changed: true, Rows: []outbox.Event{row()}}, refused
	})
	if !errors.Is(err, refused) {
		t.Errorf("UpdateAttachment(change refuses) = %v, want the refusal as it is", err)
	}
	// A row the outbox refuses rolls the change back: the action cannot be recorded.
	err = s.Repo.UpdateAttachment(ctx, a.ID, func(cur *domain.Attachment) (domain.Effects, error) {
		cur.MarkDeleted(now())
		return domain.Effects{Changed: true, Rows: []outbox.Event{{ID: outbox.NewID(), Subject: "bad subject"}}}, nil
	})
	if !errors.Is(err, usererr.ErrUnavailable) {
		t.Errorf("UpdateAttachment(invalid row) = %v, want Unavailable (not recorded)", err)
	}
	if got := load(t, s, a.ID); got.State != domain.StateClean || got.WrappedDEK == "" {
		t.Errorf("Attachment(after refused changes) = %+v, want it unchanged", got)
	}
	wantRows(t, s, "refused changes", before...)
}

func testBindAttachment(t *testing.T, s Subject) {
	ctx := t.Context()
	msg := "msg-" + uuid.NewString()
	var seen []int
	at := now()
	for range 3 {
		a := insert(t, s, uploading("user-a", 10))
		complete(t, s, a, domain.StateClean)
		err := s.Repo.BindAttachment(ctx, a.ID, msg, func(cur *domain.Attachment, bound int) (domain.Effects, error) {
			seen = append(seen, bound)
			cur.BindTo("thr-b", msg, at)
			return domain.Effects{Changed: true, Rows: []outbox.Event{row()}}, nil
		})
		if err != nil {
			t.Fatalf("BindAttachment = %v", err)
		}
		if got := load(t, s, a.ID); got.ThreadID != "thr-b" || got.MessageID != msg || !got.BindTime.Equal(at) || got.AADThreadID != "" {
			t.Errorf("Attachment(bound) = %+v, want bound to %s in thr-b", got, msg)
		}
	}
	if !slices.Equal(seen, []int{0, 1, 2}) {
		t.Errorf("bound counts seen = %v, want 0, 1, 2", seen)
	}
	if err := s.Repo.BindAttachment(ctx, uuid.NewString(), msg, func(*domain.Attachment, int) (domain.Effects, error) {
		return domain.Effects{}, nil
	}); !errors.Is(err, domain.ErrAttachmentNotFound) {
		t.Errorf("BindAttachment(missing) = %v, want ErrAttachmentNotFound", err)
	}
}

func testDeleteAttachment(t *testing.T, s Subject) {
	ctx := t.Context()
	a := insert(t, s, uploading("user-a", 10))
	r1, r2 := row(), row()
	if err := s.Repo.DeleteAttachment(ctx, a.ID, []outbox.Event{r1}); err != nil {
		t.Fatalf("DeleteAttachment = %v", err)
	}
	if _, err := s.Repo.Attachment(ctx, a.ID); !errors.Is(err, domain.ErrAttachmentNotFound) {
		t.Errorf("Attachment(deleted) = %v, want ErrAttachmentNotFound", err)
	}
	if err := s.Repo.DeleteAttachment(ctx, a.ID, []outbox.Event{r2}); err != nil {
		t.Errorf("DeleteAttachment(again) = %v, want nil", err)
	}
	if err := s.Repo.DeleteAttachment(ctx, uuid.NewString(), nil); err != nil {
		t.Errorf("DeleteAttachment(missing, no rows) = %v, want nil", err)
	}
	wantRows(t, s, "DeleteAttachment", r1.ID, r2.ID)
}

func testWriteAudit(t *testing.T, s Subject) {
	r1, r2 := row(), row()
	if err := s.Audit.WriteAudit(t.Context(), []outbox.Event{r1, r2}); err != nil {
		t.Fatalf("WriteAudit = %v", err)
	}
	if err := s.Audit.WriteAudit(t.Context(), []outbox.Event{{ID: outbox.NewID(), Subject: "bad subject"}}); !errors.Is(err, usererr.ErrUnavailable) {
		t.Errorf("WriteAudit(invalid row) = %v, want Unavailable (not recorded)", err)
	}
	wantRows(t, s, "WriteAudit", r1.ID, r2.ID)
}

func testListings(t *testing.T, s Subject) {
	ctx := t.Context()
	// In creation order: a stuck upload, a pending draft, a clean draft uploaded for thread
	// thr-l, a clean attachment bound to thr-l, and a tombstone.
	stuck := insert(t, s, uploading("user-l", 10))
	pending := insert(t, s, uploading("user-l", 10))
	complete(t, s, pending, domain.StatePending)
	forThread := uploading("user-l", 10)
	forThread.AADThreadID, forThread.ThreadID = "thr-l", "thr-l"
	insert(t, s, forThread)
	complete(t, s, forThread, domain.StateClean)
	bound := insert(t, s, uploading("user-l", 10))
	complete(t, s, bound, domain.StateClean)
	if err := s.Repo.BindAttachment(ctx, bound.ID, "msg-l", func(a *domain.Attachment, _ int) (domain.Effects, error) {
		a.BindTo("thr-l", "msg-l", now())
		return domain.Effects{Changed: true}, nil
	}); err != nil {
		t.Fatal(err)
	}
	tomb := insert(t, s, uploading("user-l", 10))
	if err := s.Repo.UpdateAttachment(ctx, tomb.ID, func(a *domain.Attachment) (domain.Effects, error) {
		a.MarkDeleted(now())
		return domain.Effects{Changed: true}, nil
	}); err != nil {
		t.Fatal(err)
	}
	byID := func(as ...*domain.Attachment) []string {
		out := ids(as)
		slices.Sort(out)
		return out
	}

	got, err := s.Repo.AttachmentsOfThreads(ctx, []string{"thr-l", "thr-none"})
	if err != nil || !slices.Equal(ids(got), byID(forThread, bound)) {
		t.Errorf("AttachmentsOfThreads(thr-l) = %v, %v, want %v by id", ids(got), err, byID(forThread, bound))
	}

	more, err := s.Repo.PendingAttachments(ctx, 10)
	if err != nil || !slices.Equal(ids(more), []string{pending.ID}) {
		t.Errorf("PendingAttachments = %v, %v, want %s", ids(more), err, pending.ID)
	}
	if err := s.Repo.SetScanAttempts(ctx, pending.ID, 4); err != nil {
		t.Fatal(err)
	}
	if got := load(t, s, pending.ID); got.ScanAttempts != 4 {
		t.Errorf("ScanAttempts after SetScanAttempts(4) = %d", got.ScanAttempts)
	}

	past, future := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tests := []struct {
		name                string
		draftCut, uploadCut time.Time
		limit               int
		want                []string
	}{
		{"nothing old enough", past, past, 10, nil},
		{"stuck uploads only", past, future, 10, []string{stuck.ID}},
		{"drafts only", future, past, 10, []string{pending.ID, forThread.ID, tomb.ID}},
		{"both, oldest first", future, future, 10, []string{stuck.ID, pending.ID, forThread.ID, tomb.ID}},
		{"limited", future, future, 2, []string{stuck.ID, pending.ID}},
	}
	for _, tt := range tests {
		got, err := s.Repo.StaleAttachments(ctx, tt.draftCut, tt.uploadCut, tt.limit)
		if err != nil || !slices.Equal(ids(got), tt.want) {
			t.Errorf("StaleAttachments(%s) = %v, %v, want %v", tt.name, ids(got), err, tt.want)
		}
	}
}
