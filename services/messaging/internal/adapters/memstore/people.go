package memstore

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

func clonePerson(p domain.Person) domain.Person {
	p.Roles, p.DisplayNameSealed = slices.Clone(p.Roles), slices.Clone(p.DisplayNameSealed)
	return p
}

// People implements domain.PersonRepository.
func (s *Store) People(_ context.Context, q domain.PersonQuery) ([]domain.Person, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []domain.Person
	for subject, p := range s.people {
		if subject > q.AfterSubject && (q.UserName == "" || strings.EqualFold(p.UserName, q.UserName)) &&
			(q.ExternalID == "" || p.ExternalID == q.ExternalID) && (len(q.Sources) == 0 || slices.Contains(q.Sources, p.Source)) {
			out = append(out, clonePerson(p))
		}
	}
	slices.SortFunc(out, func(a, b domain.Person) int { return strings.Compare(a.Subject, b.Subject) })
	return out[:min(len(out), q.Limit)], nil
}

// Person implements domain.PersonRepository.
func (s *Store) Person(_ context.Context, subject string) (domain.Person, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.people[subject]
	if !ok {
		return domain.Person{}, domain.ErrPersonNotFound
	}
	return clonePerson(p), nil
}

// PeopleBySubject implements domain.PersonRepository.
func (s *Store) PeopleBySubject(_ context.Context, subjects []string) (map[string]domain.Person, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]domain.Person{}
	for _, subject := range subjects {
		if p, ok := s.people[subject]; ok {
			out[subject] = clonePerson(p)
		}
	}
	return out, nil
}

// PutPerson implements domain.PersonRepository.
func (s *Store) PutPerson(_ context.Context, subject string, change func(domain.Person, bool) (domain.Person, []outbox.Event, error)) (domain.Person, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, exists := s.people[subject]
	next, rows, err := change(clonePerson(cur), exists)
	if err != nil {
		return domain.Person{}, err
	}
	for other, p := range s.people {
		if other != next.Subject && ((next.UserName != "" && strings.EqualFold(p.UserName, next.UserName)) || (next.ExternalID != "" && p.ExternalID == next.ExternalID)) {
			return domain.Person{}, domain.ErrPersonIDTaken
		}
	}
	if err := s.stage().commit(rows); err != nil {
		return domain.Person{}, err
	}
	if exists {
		next.CreatedAt, next.PatientID = cur.CreatedAt, cur.PatientID
	}
	s.people[next.Subject] = clonePerson(next)
	return next, nil
}

// RecordFirstContact implements domain.PersonRepository.
func (s *Store) RecordFirstContact(_ context.Context, p domain.Person, rows []outbox.Event) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.people[p.Subject]; ok {
		return false, nil
	}
	if err := s.stage().commit(rows); err != nil {
		return false, err
	}
	// As in Postgres: first contact records no user name or external id (provisioning's).
	p.UpdatedAt, p.ExternalID, p.UserName = p.CreatedAt, "", ""
	s.people[p.Subject] = clonePerson(p)
	return true, nil
}

// NamePerson implements domain.PersonRepository.
func (s *Store) NamePerson(_ context.Context, subject string, sealed []byte, wrappedDEK, staffName string, at time.Time, rows []outbox.Event) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.people[subject]
	if !ok || p.DisplayNameSealed != nil {
		return false, nil
	}
	if err := s.stage().commit(rows); err != nil {
		return false, err
	}
	p.DisplayNameSealed, p.WrappedDEK, p.StaffDisplayName, p.UpdatedAt = slices.Clone(sealed), wrappedDEK, staffName, at
	s.people[subject] = p
	return true, nil
}
