package repotest

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// SessionSubject is one implementation of domain.UploadSessionRepository under test, with the
// attachment repository it shares its store with.
type SessionSubject struct {
	Repo     domain.AttachmentRepository
	Sessions domain.UploadSessionRepository
}

// RunSessions runs the upload-session contract against fresh subjects made by newSubject.
func RunSessions(t *testing.T, newSubject func(t *testing.T) SessionSubject) {
	tests := []struct {
		name string
		run  func(t *testing.T, s SessionSubject)
	}{
		{"CreateAndLoad", testCreateSession},
		{"CreateWithinQuota", testCreateSessionQuota},
		{"AppendChunks", testAppendChunks},
		{"FinishClaims", testFinishClaims},
		{"CloseAndStale", testCloseAndStale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newSubject(t))
		})
	}
}

// newSession creates a session of size bytes for uploader and returns it with its row.
func newSession(t *testing.T, s SessionSubject, uploader string, size int64) (*domain.UploadSession, *domain.Attachment) {
	t.Helper()
	a := uploading(uploader, size)
	a.FileNameSealed = []byte("sealed-name")
	u := &domain.UploadSession{ID: a.ID, UploaderSubject: uploader, StagePrefix: "stage/" + a.ID + "/"}
	if err := s.Sessions.CreateSession(t.Context(), a, u, 0); err != nil {
		t.Fatalf("CreateSession(%s) = %v", a.ID, err)
	}
	return u, a
}

func loadSession(t *testing.T, s SessionSubject, id string) *domain.UploadSession {
	t.Helper()
	u, err := s.Sessions.Session(t.Context(), id)
	if err != nil {
		t.Fatalf("Session(%s) = %v", id, err)
	}
	return u
}

func testCreateSession(t *testing.T, s SessionSubject) {
	if _, err := s.Sessions.Session(t.Context(), uuid.NewString()); !errors.Is(err, domain.ErrUploadNotFound) {
		t.Errorf("Session(missing) = %v, want ErrUploadNotFound", err)
	}
	before := time.Now().Add(-time.Minute)
	u, a := newSession(t, s, "user-a", 100)
	if u.State != domain.SessionOpen || u.NextOffset != 0 || u.CreateTime.Before(before) || a.CreateTime.Before(before) {
		t.Errorf("CreateSession set %+v and row time %v, want open at 0, about now", u, a.CreateTime)
	}
	got := loadSession(t, s, u.ID)
	if got.ID != a.ID || got.UploaderSubject != "user-a" || got.State != domain.SessionOpen || got.NextOffset != 0 ||
		got.StagePrefix != u.StagePrefix || !got.CreateTime.Equal(u.CreateTime) || !got.UpdateTime.Equal(u.UpdateTime) {
		t.Errorf("Session(created) = %+v, want %+v", got, u)
	}
	row := load(t, s.subject(), a.ID)
	if row.State != domain.StateUploading || !bytes.Equal(row.FileNameSealed, []byte("sealed-name")) || row.SizeBytes != 100 {
		t.Errorf("Attachment(session's row) = %+v, want Uploading with the sealed name", row)
	}
	// The session's row is not a stuck streamed upload: the session's own expiry decides.
	stale, err := s.Repo.StaleAttachments(t.Context(), time.Now().Add(time.Hour), time.Now().Add(time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range stale {
		if x.ID == a.ID {
			t.Errorf("StaleAttachments lists the row of an upload session")
		}
	}
	// A reused client request id is refused, and no session is left behind.
	crid := uuid.NewString()
	first := uploading("user-a", 10)
	first.ClientRequestID = crid
	insert(t, s.subject(), first)
	dup := uploading("user-a", 10)
	dup.ClientRequestID = crid
	err = s.Sessions.CreateSession(t.Context(), dup, &domain.UploadSession{ID: dup.ID, UploaderSubject: "user-a", StagePrefix: "stage/" + dup.ID + "/"}, 0)
	if !errors.Is(err, usererr.ErrAlreadyExists) {
		t.Errorf("CreateSession(reused request id) = %v, want AlreadyExists", err)
	}
	if _, err := s.Sessions.Session(t.Context(), dup.ID); !errors.Is(err, domain.ErrUploadNotFound) {
		t.Errorf("Session(refused create) = %v, want ErrUploadNotFound", err)
	}
}

// subject is the attachment-contract view of s.
func (s SessionSubject) subject() Subject { return Subject{Repo: s.Repo} }

func testCreateSessionQuota(t *testing.T, s SessionSubject) {
	ctx := t.Context()
	const quota = 150
	a := uploading("user-q", 100)
	u := &domain.UploadSession{ID: a.ID, UploaderSubject: "user-q", StagePrefix: "stage/" + a.ID + "/"}
	if err := s.Sessions.CreateSession(ctx, a, u, quota); err != nil {
		t.Fatalf("CreateSession(within quota) = %v", err)
	}
	// The session's declared size counts at once, for sessions and streams alike.
	over := uploading("user-q", 100)
	err := s.Sessions.CreateSession(ctx, over, &domain.UploadSession{ID: over.ID, UploaderSubject: "user-q", StagePrefix: "stage/" + over.ID + "/"}, quota)
	if !errors.Is(err, usererr.ErrResourceExhausted) {
		t.Fatalf("CreateSession(over quota) = %v, want ResourceExhausted", err)
	}
	if _, err := s.Sessions.Session(ctx, over.ID); !errors.Is(err, domain.ErrUploadNotFound) {
		t.Errorf("Session(refused by quota) = %v, want ErrUploadNotFound", err)
	}
	if err := s.Repo.InsertUploading(ctx, uploading("user-q", 100), quota); !errors.Is(err, usererr.ErrResourceExhausted) {
		t.Errorf("InsertUploading(beside a session, over quota) = %v, want ResourceExhausted", err)
	}
}

func testAppendChunks(t *testing.T, s SessionSubject) {
	ctx := t.Context()
	u, _ := newSession(t, s, "user-a", 30)
	at := now().Add(time.Second)
	c0 := domain.Chunk{Offset: 0, Length: 10, SHA256: []byte("h0"), ObjectName: u.StagePrefix + "0"}
	if ok, err := s.Sessions.AppendChunk(ctx, u.ID, c0, at); !ok || err != nil {
		t.Fatalf("AppendChunk(next) = %v, %v, want true", ok, err)
	}
	// A second append at the same offset loses: the session has moved on.
	if ok, err := s.Sessions.AppendChunk(ctx, u.ID, c0, at); ok || err != nil {
		t.Errorf("AppendChunk(same offset again) = %v, %v, want false", ok, err)
	}
	c1 := domain.Chunk{Offset: 10, Length: 20, SHA256: []byte("h1"), ObjectName: u.StagePrefix + "1"}
	if ok, err := s.Sessions.AppendChunk(ctx, u.ID, domain.Chunk{Offset: 20, Length: 10, SHA256: []byte("x"), ObjectName: "x"}, at); ok || err != nil {
		t.Errorf("AppendChunk(gap) = %v, %v, want false", ok, err)
	}
	if ok, err := s.Sessions.AppendChunk(ctx, u.ID, c1, at); !ok || err != nil {
		t.Fatalf("AppendChunk(second) = %v, %v, want true", ok, err)
	}
	got := loadSession(t, s, u.ID)
	if got.NextOffset != 30 || !got.UpdateTime.Equal(at) {
		t.Errorf("Session(after two chunks) = next %d at %v, want 30 at %v", got.NextOffset, got.UpdateTime, at)
	}
	chunks, err := s.Sessions.Chunks(ctx, u.ID)
	if err != nil || len(chunks) != 2 || chunks[0].ObjectName != c0.ObjectName || chunks[1].Offset != 10 ||
		chunks[1].Length != 20 || !bytes.Equal(chunks[1].SHA256, []byte("h1")) {
		t.Errorf("Chunks = %+v, %v, want c0 then c1", chunks, err)
	}
	if c, err := s.Sessions.ChunkAt(ctx, u.ID, 10); err != nil || c == nil || c.ObjectName != c1.ObjectName {
		t.Errorf("ChunkAt(10) = %+v, %v, want c1", c, err)
	}
	if c, err := s.Sessions.ChunkAt(ctx, u.ID, 5); err != nil || c != nil {
		t.Errorf("ChunkAt(5) = %+v, %v, want nil, nil", c, err)
	}
	// A closed session takes nothing.
	u2, _ := newSession(t, s, "user-a", 30)
	if ok, err := s.Sessions.CloseSession(ctx, u2.ID, time.Time{}); !ok || err != nil {
		t.Fatalf("CloseSession = %v, %v", ok, err)
	}
	if ok, err := s.Sessions.AppendChunk(ctx, u2.ID, domain.Chunk{Offset: 0, Length: 1, SHA256: []byte("h"), ObjectName: "y"}, at); ok || err != nil {
		t.Errorf("AppendChunk(closed) = %v, %v, want false", ok, err)
	}
}

func testFinishClaims(t *testing.T, s SessionSubject) {
	ctx := t.Context()
	u, _ := newSession(t, s, "user-a", 10)
	t0 := now().Add(time.Minute)
	if ok, err := s.Sessions.ClaimFinish(ctx, u.ID, t0, t0.Add(-time.Hour)); !ok || err != nil {
		t.Fatalf("ClaimFinish(open) = %v, %v, want true", ok, err)
	}
	if ok, err := s.Sessions.ClaimFinish(ctx, u.ID, t0, t0.Add(-time.Hour)); ok || err != nil {
		t.Errorf("ClaimFinish(claimed) = %v, %v, want false", ok, err)
	}
	if ok, err := s.Sessions.AppendChunk(ctx, u.ID, domain.Chunk{Offset: 0, Length: 1, SHA256: []byte("h"), ObjectName: "z"}, t0); ok || err != nil {
		t.Errorf("AppendChunk(finishing) = %v, %v, want false", ok, err)
	}
	// A claim older than the lease is taken over.
	if ok, err := s.Sessions.ClaimFinish(ctx, u.ID, t0.Add(time.Hour), t0.Add(time.Second)); !ok || err != nil {
		t.Errorf("ClaimFinish(stale claim) = %v, %v, want true", ok, err)
	}
	if err := s.Sessions.ReleaseFinish(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if got := loadSession(t, s, u.ID); got.State != domain.SessionOpen {
		t.Errorf("Session(released) state = %s, want open", got.State)
	}
}

func testCloseAndStale(t *testing.T, s SessionSubject) {
	ctx := t.Context()
	idle, _ := newSession(t, s, "user-a", 10)
	active, _ := newSession(t, s, "user-a", 10)
	closed, _ := newSession(t, s, "user-a", 10)
	if ok, err := s.Sessions.CloseSession(ctx, closed.ID, time.Time{}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	later := now().Add(time.Hour)
	if ok, err := s.Sessions.AppendChunk(ctx, active.ID, domain.Chunk{Offset: 0, Length: 10, SHA256: []byte("h"), ObjectName: "a"}, later); !ok || err != nil {
		t.Fatal(ok, err)
	}
	cutoff := now().Add(30 * time.Minute)
	stale, err := s.Sessions.StaleSessions(ctx, cutoff, 100)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, u := range stale {
		got[u.ID] = true
	}
	if !got[idle.ID] || !got[closed.ID] || got[active.ID] {
		t.Errorf("StaleSessions = %v, want the idle and the closed session, not the active one", got)
	}
	// Closing only if idle: the active session stays open.
	if ok, err := s.Sessions.CloseSession(ctx, active.ID, cutoff); ok || err != nil {
		t.Errorf("CloseSession(active, if idle) = %v, %v, want false", ok, err)
	}
	if ok, err := s.Sessions.CloseSession(ctx, idle.ID, cutoff); !ok || err != nil {
		t.Errorf("CloseSession(idle, if idle) = %v, %v, want true", ok, err)
	}
	if err := s.Sessions.DeleteSession(ctx, idle.ID); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Sessions.CloseSession(ctx, idle.ID, cutoff); !ok || err != nil {
		t.Errorf("CloseSession(deleted) = %v, %v, want true (a missing session is closed)", ok, err)
	}
	if chunks, err := s.Sessions.Chunks(ctx, idle.ID); err != nil || len(chunks) != 0 {
		t.Errorf("Chunks(deleted session) = %v, %v, want none", chunks, err)
	}
	if err := s.Sessions.DeleteSession(ctx, idle.ID); err != nil {
		t.Errorf("DeleteSession(deleted) = %v, want nil", err)
	}
}
