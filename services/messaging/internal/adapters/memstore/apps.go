package memstore

import (
	"context"
	"slices"
	"strings"

	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

func cloneApp(a domain.ClientApp) domain.ClientApp {
	a.AllowedScopes, a.PoolIDs = slices.Clone(a.AllowedScopes), slices.Clone(a.PoolIDs)
	return a
}

// poolsExist fails with ErrPoolNotFound unless every pool exists. Callers hold mu.
func (s *Store) poolsExist(ids []string) error {
	for _, id := range ids {
		if _, ok := s.pools[id]; !ok {
			return domain.ErrPoolNotFound
		}
	}
	return nil
}

// ClientApps implements domain.AppRepository.
func (s *Store) ClientApps(_ context.Context, afterID string, limit int) ([]domain.ClientApp, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []domain.ClientApp
	for id, a := range s.apps {
		if id > afterID {
			out = append(out, cloneApp(a))
		}
	}
	slices.SortFunc(out, func(a, b domain.ClientApp) int { return strings.Compare(a.ClientID, b.ClientID) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// RegisterClientApp implements domain.AppRepository.
func (s *Store) RegisterClientApp(_ context.Context, a domain.ClientApp, rows []outbox.Event) (domain.ClientApp, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.poolsExist(a.PoolIDs); err != nil {
		return domain.ClientApp{}, err
	}
	if _, ok := s.apps[a.ClientID]; ok {
		return domain.ClientApp{}, domain.ErrAppExists
	}
	if err := s.stage().commit(rows); err != nil {
		return domain.ClientApp{}, err
	}
	a.Active = true
	s.apps[a.ClientID] = cloneApp(a)
	return a, nil
}

// UpdateClientApp implements domain.AppRepository.
func (s *Store) UpdateClientApp(_ context.Context, clientID string, change func(domain.ClientApp) (domain.ClientApp, []outbox.Event, error)) (domain.ClientApp, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.apps[clientID]
	if !ok {
		return domain.ClientApp{}, domain.ErrAppNotFound
	}
	next, rows, err := change(cloneApp(cur))
	if err != nil {
		return domain.ClientApp{}, err
	}
	if err := s.poolsExist(next.PoolIDs); err != nil {
		return domain.ClientApp{}, err
	}
	if err := s.stage().commit(rows); err != nil {
		return domain.ClientApp{}, err
	}
	next.ClientID, next.Kind = clientID, cur.Kind
	s.apps[clientID] = cloneApp(next)
	return next, nil
}
