package memstore

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"time"

	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
)

var _ domain.Alerts = (*Store)(nil)

// micro rounds t to Postgres' microseconds, so both stores return the same times.
func micro(t time.Time) time.Time { return t.Round(time.Microsecond) }

// newestFirst orders alerts as ListAlerts returns them: RaisedAt, then ID, descending.
func newestFirst(a, b domain.RaisedAlert) int {
	if c := b.RaisedAt.Compare(a.RaisedAt); c != 0 {
		return c
	}
	return cmp.Compare(b.ID, a.ID)
}

// ListAlerts implements domain.Alerts.
func (s *Store) ListAlerts(_ context.Context, f domain.AlertFilter, after *domain.AlertCursor, limit int) ([]domain.RaisedAlert, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := slices.SortedFunc(maps.Values(s.alerts), newestFirst)
	var out []domain.RaisedAlert
	for _, a := range all {
		switch {
		case f.RuleID != "" && a.RuleID != f.RuleID, f.OpenOnly && !a.Open():
			continue
		case after != nil && newestFirst(domain.RaisedAlert{RaisedAt: after.RaisedAt, ID: after.ID}, a) >= 0:
			continue // not after the cursor
		}
		if len(out) == limit {
			break
		}
		out = append(out, a)
	}
	return out, nil
}

// AcknowledgeAlert implements domain.Alerts.
func (s *Store) AcknowledgeAlert(_ context.Context, id, by, note string, at time.Time, audit func(domain.RaisedAlert) ([]outbox.Event, error)) (domain.RaisedAlert, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.alerts[id]
	if !ok {
		return domain.RaisedAlert{}, false, domain.ErrAlertNotFound
	}
	if !a.Open() {
		return a, false, nil
	}
	a.AcknowledgedAt, a.AcknowledgedBy, a.Note = micro(at), by, note
	events, err := audit(a)
	if err != nil {
		return domain.RaisedAlert{}, false, err
	}
	if events, err = s.checkEvents(events); err != nil {
		return domain.RaisedAlert{}, false, err
	}
	s.alerts[id] = a
	s.addEvents(events)
	return a, true, nil
}
