package memstore

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/securemsg/securemsg/services/attachment/internal/domain"
)

var _ domain.UploadSessionRepository = (*Store)(nil)

// session is a stored upload session with its chunks in offset order.
type session struct {
	s      domain.UploadSession
	chunks []domain.Chunk
}

func cloneChunk(c domain.Chunk) domain.Chunk {
	c.SHA256 = slices.Clone(c.SHA256)
	return c
}

// CreateSession inserts a within its uploader's quota and its open session, together.
func (s *Store) CreateSession(ctx context.Context, a *domain.Attachment, u *domain.UploadSession, quota int64) error {
	if err := s.InsertUploading(ctx, a, quota); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u.State, u.NextOffset = domain.SessionOpen, 0
	u.CreateTime = a.CreateTime
	u.UpdateTime = a.CreateTime
	s.sessions[u.ID] = &session{s: *u}
	return nil
}

// Session returns a copy of session id.
func (s *Store) Session(_ context.Context, id string) (*domain.UploadSession, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.sessions[id]
	if !ok {
		return nil, domain.ErrUploadNotFound
	}
	c := u.s
	return &c, nil
}

// ChunkAt returns session id's chunk at offset, nil when none.
func (s *Store) ChunkAt(_ context.Context, id string, offset int64) (*domain.Chunk, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.sessions[id]; ok {
		for _, c := range u.chunks {
			if c.Offset == offset {
				cc := cloneChunk(c)
				return &cc, nil
			}
		}
	}
	return nil, nil
}

// Chunks returns copies of session id's chunks in offset order.
func (s *Store) Chunks(_ context.Context, id string) ([]domain.Chunk, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.sessions[id]
	if !ok {
		return nil, nil
	}
	out := make([]domain.Chunk, len(u.chunks))
	for i, c := range u.chunks {
		out[i] = cloneChunk(c)
	}
	return out, nil
}

// AppendChunk records c if the session is open and c starts at its next offset.
func (s *Store) AppendChunk(_ context.Context, id string, c domain.Chunk, at time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.sessions[id]
	if !ok || u.s.State != domain.SessionOpen || u.s.NextOffset != c.Offset {
		return false, nil
	}
	u.chunks = append(u.chunks, cloneChunk(c))
	u.s.NextOffset += c.Length
	u.s.UpdateTime = at
	return true, nil
}

// ClaimFinish moves an open session, or one whose claim is stale, to finishing.
func (s *Store) ClaimFinish(_ context.Context, id string, at, staleBefore time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.sessions[id]
	if !ok {
		return false, nil
	}
	staleClaim := u.s.State == domain.SessionFinishing && u.s.UpdateTime.Before(staleBefore)
	if u.s.State != domain.SessionOpen && !staleClaim {
		return false, nil
	}
	u.s.State, u.s.UpdateTime = domain.SessionFinishing, at
	return true, nil
}

// ReleaseFinish moves a finishing session back to open.
func (s *Store) ReleaseFinish(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.sessions[id]; ok && u.s.State == domain.SessionFinishing {
		u.s.State = domain.SessionOpen
	}
	return nil
}

// CloseSession closes the session (with idleBefore set, only an idle one).
func (s *Store) CloseSession(_ context.Context, id string, idleBefore time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.sessions[id]
	if !ok {
		return true, nil
	}
	if !idleBefore.IsZero() && u.s.State != domain.SessionClosed && !u.s.UpdateTime.Before(idleBefore) {
		return false, nil
	}
	u.s.State = domain.SessionClosed
	return true, nil
}

// DeleteSession removes the session and its chunks.
func (s *Store) DeleteSession(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, id)
	return nil
}

// StaleSessions returns closed and idle sessions, oldest first.
func (s *Store) StaleSessions(_ context.Context, idleCutoff time.Time, limit int) ([]*domain.UploadSession, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*domain.UploadSession
	for _, u := range s.sessions {
		if u.s.State == domain.SessionClosed || u.s.UpdateTime.Before(idleCutoff) {
			c := u.s
			out = append(out, &c)
		}
	}
	slices.SortFunc(out, func(a, b *domain.UploadSession) int {
		if c := a.UpdateTime.Compare(b.UpdateTime); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out[:min(len(out), max(limit, 0))], nil
}
