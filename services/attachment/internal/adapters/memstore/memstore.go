// Package memstore is an in-memory domain.AttachmentRepository and domain.AuditWriter, for
// tests of the use cases that need no database. It keeps the Postgres adapter's rules — the
// quota and the uniqueness of client request ids, what a change writes back, all-or-nothing
// commits with their outbox rows — which the contract tests in adapters/repotest check on both.
package memstore

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// Store holds attachments and the outbox rows committed with them. A change function given to
// UpdateAttachment or BindAttachment runs under the store's lock, as under Postgres' row lock,
// and must not call the store.
type Store struct {
	mu          sync.Mutex
	attachments map[string]*domain.Attachment
	sessions    map[string]*session
	rows        []outbox.Event
	now         func() time.Time
}

// New returns an empty store whose rows are created at now() (time.Now when nil).
func New(now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{attachments: map[string]*domain.Attachment{}, sessions: map[string]*session{}, now: now}
}

var (
	_ domain.AttachmentRepository = (*Store)(nil)
	_ domain.AuditWriter          = (*Store)(nil)
)

// Rows returns the outbox rows committed so far, in commit order.
func (s *Store) Rows() []outbox.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.rows)
}

// clone copies a so that neither the caller nor the store sees the other's later changes.
func clone(a *domain.Attachment) *domain.Attachment {
	c := *a
	c.FileNameSealed = slices.Clone(a.FileNameSealed)
	c.SHA256 = slices.Clone(a.SHA256)
	return &c
}

// appendRows validates rows as the outbox insert does and adds them; the caller holds mu.
func (s *Store) appendRows(rows []outbox.Event) error {
	if _, err := outbox.NewRows(context.Background(), rows...); err != nil {
		return domain.NotRecorded(err)
	}
	s.rows = append(s.rows, rows...)
	return nil
}

// Attachment returns a copy of the attachment with id.
func (s *Store) Attachment(_ context.Context, id string) (*domain.Attachment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.attachments[id]
	if !ok {
		return nil, domain.ErrAttachmentNotFound
	}
	return clone(a), nil
}

// AttachmentByRequest finds uploader's attachment made with requestID; nil when none.
func (s *Store) AttachmentByRequest(_ context.Context, uploader, requestID string) (*domain.Attachment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.byRequest(uploader, requestID); a != nil {
		return clone(a), nil
	}
	return nil, nil
}

func (s *Store) byRequest(uploader, requestID string) *domain.Attachment {
	if requestID == "" {
		return nil // like SQL's NULL, no request id equals another
	}
	for _, a := range s.attachments {
		if a.UploaderSubject == uploader && a.ClientRequestID == requestID {
			return a
		}
	}
	return nil
}

// InsertUploading adds a within its uploader's quota.
func (s *Store) InsertUploading(_ context.Context, a *domain.Attachment, quota int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if quota > 0 {
		held := a.SizeBytes
		for _, b := range s.attachments {
			if b.UploaderSubject == a.UploaderSubject &&
				(b.State == domain.StateUploading || b.State == domain.StatePending || b.State == domain.StateClean) {
				held += b.SizeBytes
			}
		}
		if held > quota {
			return usererr.New(usererr.ResourceExhausted, "QUOTA_EXCEEDED", "upload would exceed the storage quota")
		}
	}
	if s.byRequest(a.UploaderSubject, a.ClientRequestID) != nil {
		return usererr.New(usererr.AlreadyExists, "CLIENT_REQUEST_ID_REUSED", "client_request_id was already used")
	}
	if _, taken := s.attachments[a.ID]; taken {
		return errDuplicate("id")
	}
	for _, b := range s.attachments {
		if b.ObjectName == a.ObjectName {
			return errDuplicate("object name")
		}
	}
	a.CreateTime = s.now()
	s.attachments[a.ID] = clone(a)
	return nil
}

// errDuplicate is a broken unique constraint the domain does not name (an internal failure,
// as in Postgres).
type errDuplicate string

func (e errDuplicate) Error() string { return "memstore: duplicate attachment " + string(e) }

// CompleteUpload stores a finished upload's facts and outcome with rows.
func (s *Store) CompleteUpload(_ context.Context, a *domain.Attachment, rows []outbox.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := outbox.NewRows(context.Background(), rows...); err != nil {
		return domain.NotRecorded(err)
	}
	cur, ok := s.attachments[a.ID]
	if !ok {
		return domain.ErrAttachmentNotFound
	}
	c := clone(cur)
	c.State, c.MediaType, c.SizeBytes, c.ObjectSize = a.State, a.MediaType, a.SizeBytes, a.ObjectSize
	c.SHA256, c.FileNameSealed = slices.Clone(a.SHA256), slices.Clone(a.FileNameSealed)
	c.SignatureName, c.ScanTime, c.ScanAttempts, c.WrappedDEK = a.SignatureName, a.ScanTime, a.ScanAttempts, a.WrappedDEK
	if !a.CreateTime.IsZero() {
		c.CreateTime = a.CreateTime
	}
	s.attachments[a.ID] = c
	s.rows = append(s.rows, rows...)
	return nil
}

// UpdateAttachment runs change on a copy and commits it with its rows.
func (s *Store) UpdateAttachment(_ context.Context, id string, change func(*domain.Attachment) (domain.Effects, error)) error {
	return s.update(id, func(a *domain.Attachment) (domain.Effects, error) { return change(a) })
}

// BindAttachment is UpdateAttachment with the count of attachments bound to messageID.
func (s *Store) BindAttachment(_ context.Context, id, messageID string, change func(*domain.Attachment, int) (domain.Effects, error)) error {
	return s.update(id, func(a *domain.Attachment) (domain.Effects, error) {
		bound := 0
		for _, b := range s.attachments {
			if b.MessageID == messageID {
				bound++
			}
		}
		return change(a, bound)
	})
}

// update runs change under the lock on a copy of id and commits what it decided.
func (s *Store) update(id string, change func(*domain.Attachment) (domain.Effects, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.attachments[id]
	if !ok {
		return domain.ErrAttachmentNotFound
	}
	a := clone(cur)
	eff, err := change(a)
	if err != nil {
		return err
	}
	if _, err := outbox.NewRows(context.Background(), eff.Rows...); err != nil {
		return domain.NotRecorded(err)
	}
	if eff.Changed {
		// What the Postgres adapter writes back: the mutable columns, not the upload's facts.
		c := clone(cur)
		c.State, c.ThreadID, c.MessageID, c.PatientID, c.PoolID = a.State, a.ThreadID, a.MessageID, a.PatientID, a.PoolID
		c.WrappedDEK, c.FileNameSealed, c.SHA256 = a.WrappedDEK, slices.Clone(a.FileNameSealed), slices.Clone(a.SHA256)
		c.SignatureName, c.ScanAttempts, c.ScanTime = a.SignatureName, a.ScanAttempts, a.ScanTime
		c.BindTime, c.DeleteTime = a.BindTime, a.DeleteTime
		s.attachments[id] = c
	}
	s.rows = append(s.rows, eff.Rows...)
	return nil
}

// DeleteAttachment removes id and commits rows.
func (s *Store) DeleteAttachment(_ context.Context, id string, rows []outbox.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.appendRows(rows); err != nil {
		return err
	}
	delete(s.attachments, id)
	return nil
}

// WriteAudit commits rows by themselves.
func (s *Store) WriteAudit(_ context.Context, rows []outbox.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appendRows(rows)
}

// SetScanAttempts records failed scans of id; a missing row is not an error.
func (s *Store) SetScanAttempts(_ context.Context, id string, attempts int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.attachments[id]; ok {
		a.ScanAttempts = attempts
	}
	return nil
}

// AttachmentsOfThreads returns the attachments bound to or uploaded for the threads, by id.
func (s *Store) AttachmentsOfThreads(_ context.Context, threadIDs []string) ([]*domain.Attachment, error) {
	out := s.filter(func(a *domain.Attachment) bool {
		return slices.Contains(threadIDs, a.ThreadID) || (a.AADThreadID != "" && slices.Contains(threadIDs, a.AADThreadID))
	})
	slices.SortFunc(out, func(a, b *domain.Attachment) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// PendingAttachments returns up to limit pending attachments, oldest first.
func (s *Store) PendingAttachments(_ context.Context, limit int) ([]*domain.Attachment, error) {
	return oldest(s.filter(func(a *domain.Attachment) bool { return a.State == domain.StatePending }), limit), nil
}

// StaleAttachments returns up to limit expired drafts and stuck uploads, oldest first.
func (s *Store) StaleAttachments(_ context.Context, draftCutoff, uploadCutoff time.Time, limit int) ([]*domain.Attachment, error) {
	return oldest(s.filter(func(a *domain.Attachment) bool {
		if a.State == domain.StateUploading {
			_, inSession := s.sessions[a.ID]
			return a.CreateTime.Before(uploadCutoff) && !inSession
		}
		return a.MessageID == "" && a.CreateTime.Before(draftCutoff)
	}), limit), nil
}

// filter returns copies of the attachments keep accepts.
func (s *Store) filter(keep func(*domain.Attachment) bool) []*domain.Attachment {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*domain.Attachment
	for _, a := range s.attachments {
		if keep(a) {
			out = append(out, clone(a))
		}
	}
	return out
}

// oldest sorts as by creation time and keeps the first limit.
func oldest(as []*domain.Attachment, limit int) []*domain.Attachment {
	slices.SortStableFunc(as, func(a, b *domain.Attachment) int {
		if c := a.CreateTime.Compare(b.CreateTime); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return as[:min(len(as), max(limit, 0))]
}
