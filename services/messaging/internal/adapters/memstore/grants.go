package memstore

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// ProxyGrants implements domain.GrantRepository.
func (s *Store) ProxyGrants(_ context.Context, q domain.GrantQuery) ([]domain.ProxyGrant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []domain.ProxyGrant
	for _, g := range s.grants {
		if (q.PatientID == "" || g.PatientID == q.PatientID) && (q.ProxySubject == "" || g.ProxySubject == q.ProxySubject) {
			g.Scopes = slices.Clone(g.Scopes)
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(a, b domain.ProxyGrant) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(b.ID, a.ID))
	})
	if len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

// CreateProxyGrant implements domain.GrantRepository.
func (s *Store) CreateProxyGrant(_ context.Context, g domain.ProxyGrant, rows []outbox.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stage().commit(rows); err != nil {
		return err
	}
	g.Scopes = slices.Clone(g.Scopes)
	s.grants[g.ID] = g
	return nil
}

// RevokeProxyGrant implements domain.GrantRepository.
func (s *Store) RevokeProxyGrant(_ context.Context, id string, at time.Time, decide func(domain.ProxyGrant) ([]outbox.Event, error)) (domain.ProxyGrant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.grants[id]
	if !ok {
		return domain.ProxyGrant{}, domain.ErrGrantNotFound
	}
	rows, err := decide(g)
	if err != nil || rows == nil {
		return g, err
	}
	if err := s.stage().commit(rows); err != nil {
		return domain.ProxyGrant{}, err
	}
	g.RevokedAt = at
	s.grants[id] = g
	return g, nil
}
