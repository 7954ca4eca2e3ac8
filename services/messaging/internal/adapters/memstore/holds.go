package memstore

import (
	"context"
	"slices"
	"strings"

	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// LegalHolds implements domain.RetentionRepository: patient holds by patient id, then held
// threads by id, bytewise as Postgres compares them under COLLATE "C".
func (s *Store) LegalHolds(_ context.Context, after domain.LegalHoldCursor, limit int) ([]domain.LegalHold, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []domain.LegalHold
	for _, h := range s.patientHolds {
		all = append(all, h)
	}
	for id, t := range s.threads {
		if t.LegalHold {
			h := s.threadHolds[id]
			h.ThreadID, h.CaseReference = id, t.LegalHoldCase
			all = append(all, h)
		}
	}
	slices.SortFunc(all, func(a, b domain.LegalHold) int { return compareCursor(a.Cursor(), b.Cursor()) })
	var out []domain.LegalHold
	for _, h := range all {
		if compareCursor(h.Cursor(), after) > 0 && len(out) < limit {
			out = append(out, h)
		}
	}
	return out, nil
}

func compareCursor(a, b domain.LegalHoldCursor) int {
	switch {
	case a.Thread == b.Thread:
		return strings.Compare(a.Key, b.Key)
	case a.Thread:
		return 1
	default:
		return -1
	}
}

// CountLegalHolds implements domain.RetentionRepository.
func (s *Store) CountLegalHolds(context.Context) (domain.LegalHoldCounts, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := domain.LegalHoldCounts{PatientHolds: int64(len(s.patientHolds))}
	for _, t := range s.threads {
		_, patientHeld := s.patientHolds[t.PatientID]
		if t.LegalHold {
			c.ThreadHolds++
		}
		if t.LegalHold || patientHeld {
			c.ThreadsHeld++
		}
	}
	return c, nil
}
