package memstore

import (
	"cmp"
	"context"
	"slices"

	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// poolView is a stored pool as a read returns it. Callers hold mu.
func (s *Store) poolView(p domain.Pool) domain.PoolView {
	p.PatientIDs = slices.Clone(p.PatientIDs)
	slices.Sort(p.PatientIDs)
	p.MemberCount = int32(len(s.members[p.ID])) //nolint:gosec // G115: a test store's member count is small
	return domain.PoolView{Pool: p, Settings: s.poolSettings(p.ID)}
}

// Pool implements domain.PoolRepository.
func (s *Store) Pool(_ context.Context, id, patientID string) (domain.PoolView, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pools[id]
	if !ok {
		return domain.PoolView{}, domain.ErrPoolNotFound
	}
	v := s.poolView(p)
	v.MayWrite = patientID != "" && p.WritableBy(patientID)
	return v, nil
}

// Pools implements domain.PoolRepository.
func (s *Store) Pools(_ context.Context, q domain.PoolQuery) ([]domain.PoolView, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []domain.PoolView
	for _, p := range s.pools {
		switch {
		case cmp.Or(cmp.Compare(p.Name, q.AfterName), cmp.Compare(p.ID, q.AfterID)) <= 0,
			!p.Active && (!q.IncludeInactive || q.WritableBy != ""),
			q.WritableBy != "" && !p.WritableBy(q.WritableBy),
			q.Only != nil && !slices.Contains(q.Only, p.ID):
			continue
		}
		v := s.poolView(p)
		v.MayWrite = q.WritableBy != ""
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b domain.PoolView) int {
		return cmp.Or(cmp.Compare(a.Pool.Name, b.Pool.Name), cmp.Compare(a.Pool.ID, b.Pool.ID))
	})
	if len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

// CreatePool implements domain.PoolRepository.
func (s *Store) CreatePool(_ context.Context, p domain.Pool, rows []outbox.Event) (domain.Pool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pools[p.ID]; ok {
		return domain.Pool{}, domain.ErrPoolExists
	}
	if err := s.stage().commit(rows); err != nil {
		return domain.Pool{}, err
	}
	p.Active, p.Version, p.UpdatedAt = true, 1, p.CreatedAt
	p.PatientIDs = slices.Clone(p.PatientIDs)
	s.pools[p.ID] = p
	return p, nil
}

// UpdatePool implements domain.PoolRepository.
func (s *Store) UpdatePool(_ context.Context, id string, change func(domain.Pool) (domain.Pool, []outbox.Event, error)) (domain.Pool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.pools[id]
	if !ok {
		return domain.Pool{}, domain.ErrPoolNotFound
	}
	next, rows, err := change(s.poolView(cur).Pool)
	if err != nil {
		return domain.Pool{}, err
	}
	if err := s.stage().commit(rows); err != nil {
		return domain.Pool{}, err
	}
	next.ID, next.CreatedAt, next.Version = id, cur.CreatedAt, cur.Version+1
	if !next.ListedOnly {
		next.PatientIDs = nil
	}
	next.PatientIDs = slices.Clone(next.PatientIDs)
	s.pools[id] = next
	return next, nil
}

// SetPoolMember implements domain.PoolRepository.
func (s *Store) SetPoolMember(_ context.Context, m domain.PoolMember, rowsFor func(bool) ([]outbox.Event, error)) (domain.PoolMember, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pools[m.PoolID]; !ok {
		return domain.PoolMember{}, false, domain.ErrPoolNotFound
	}
	prev, had := s.members[m.PoolID][m.Subject]
	rows, err := rowsFor(!had)
	if err != nil {
		return domain.PoolMember{}, false, err
	}
	if err := s.stage().commit(rows); err != nil {
		return domain.PoolMember{}, false, err
	}
	if had {
		m.AddedAt = prev.AddedAt
	}
	if s.members[m.PoolID] == nil {
		s.members[m.PoolID] = map[string]domain.PoolMember{}
	}
	s.members[m.PoolID][m.Subject] = m
	return m, !had, nil
}

// RemovePoolMember implements domain.PoolRepository.
func (s *Store) RemovePoolMember(_ context.Context, poolID, subject string, rows []outbox.Event) (int32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pools[poolID]; !ok {
		return 0, domain.ErrPoolNotFound
	}
	if _, ok := s.members[poolID][subject]; !ok {
		return 0, domain.ErrNotPoolMember
	}
	if err := s.stage().commit(rows); err != nil {
		return 0, err
	}
	delete(s.members[poolID], subject)
	var assigned int32
	for _, t := range s.threads {
		if t.PoolID == poolID && t.AssigneeSubject == subject && t.Status == domain.StatusAssigned {
			assigned++
		}
	}
	return assigned, nil
}

// PoolMembers implements domain.PoolRepository.
func (s *Store) PoolMembers(_ context.Context, poolID, afterSubject string, limit int) ([]domain.PoolMember, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []domain.PoolMember
	for subject, m := range s.members[poolID] {
		if subject > afterSubject {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b domain.PoolMember) int { return cmp.Compare(a.Subject, b.Subject) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// PoolRole implements domain.Members from the store's own memberships: in the use cases' unit
// tests the store stands in for the directory too.
func (s *Store) PoolRole(subject, poolID string) directoryv1.PoolRole {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.members[poolID][subject].Role
}
