package app

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strings"
	"time"
	"unicode/utf8"

	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// AlertPage is one page of alerts, newest first.
type AlertPage struct {
	Alerts        []domain.RaisedAlert
	NextPageToken string
}

var (
	errBadAlertToken = usererr.New(usererr.InvalidArgument, "INVALID_PAGE_TOKEN", "malformed page_token")
	errOwnAlert      = usererr.New(usererr.PermissionDenied, "OWN_ALERT", "an alert about your own activity is acknowledged by another auditor")
)

// ListAlerts returns a page of the alerts the detector raised, for an auditor. The listing is
// audited first (a QUERY of the audit log, reason alert_list), and refused if that fails.
func (s *Service) ListAlerts(ctx context.Context, f domain.AlertFilter, size int32, token string) (AlertPage, error) {
	if err := requireAny(ctx, false, auth.RoleAuditor); err != nil {
		return AlertPage{}, err
	}
	if size < 0 {
		return AlertPage{}, errNegativePageSize
	}
	limit := pageSize(size, 50, 200)
	bind := bindKey(f)
	after, err := parseAlertToken(token, bind)
	if err != nil {
		return AlertPage{}, err
	}
	if err := s.recordAccess(ctx, eventsv1.Action_ACTION_QUERY, "alert_list", ""); err != nil {
		return AlertPage{}, err
	}
	alerts, err := s.alerts.ListAlerts(ctx, f, after, limit+1)
	if err != nil {
		return AlertPage{}, err
	}
	page := AlertPage{Alerts: alerts}
	if len(alerts) > limit {
		page.Alerts = alerts[:limit]
		last := page.Alerts[limit-1]
		page.NextPageToken = alertToken(bind, domain.AlertCursor{RaisedAt: last.RaisedAt, ID: last.ID})
	}
	return page, nil
}

// AcknowledgeAlert records that the calling auditor looked into an alert, with a note, and
// audits it (an UPDATE of the alert, reason alert_acknowledged) in the same commit. An alert
// already acknowledged is returned as it was, and nothing is recorded again; an alert about the
// caller's own activity is refused (OWN_ALERT).
func (s *Service) AcknowledgeAlert(ctx context.Context, id, note string) (domain.RaisedAlert, error) {
	if err := requireAny(ctx, false, auth.RoleAuditor); err != nil {
		return domain.RaisedAlert{}, err
	}
	note = strings.TrimSpace(note)
	if id == "" || note == "" || utf8.RuneCountInString(note) > domain.MaxAlertNote {
		return domain.RaisedAlert{}, usererr.Newf(usererr.InvalidArgument, "INVALID_ACKNOWLEDGEMENT",
			"alert_id and a note of 1 to %d characters are required", domain.MaxAlertNote)
	}
	p, _ := auth.FromContext(ctx) // requireAny found one
	a, _, err := s.alerts.AcknowledgeAlert(ctx, id, p.Subject, note, s.now(), func(a domain.RaisedAlert) ([]outbox.Event, error) {
		// Segregation of duties: an alert about an auditor's own activity is for another
		// auditor to close.
		if a.Actor.GetSubject() == p.Subject {
			return nil, errOwnAlert
		}
		ev, err := s.emitter.Event(ctx, s.emitter.NewRecord(ctx, eventsv1.Action_ACTION_UPDATE,
			auditlog.Target{Type: eventsv1.RecordType_RECORD_TYPE_AUDIT_LOG, ID: a.ID}, auditlog.Reason("alert_acknowledged"), legalPurpose))
		if err != nil {
			return nil, err
		}
		return []outbox.Event{ev}, nil
	})
	return a, err
}

// alertToken encodes a page's last alert, bound to the filter it was listed with.
func alertToken(bind []byte, c domain.AlertCursor) string {
	sum := sha256.Sum256(bind)
	b := make([]byte, 0, 8+8+len(c.ID))
	b = append(b, sum[:8]...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.RaisedAt.UnixMicro()))
	b = append(b, c.ID...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func parseAlertToken(tok string, bind []byte) (*domain.AlertCursor, error) {
	if tok == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) <= 16 || len(b) > 16+128 || !utf8.Valid(b[16:]) {
		return nil, errBadAlertToken
	}
	sum := sha256.Sum256(bind)
	if string(b[:8]) != string(sum[:8]) {
		return nil, usererr.New(usererr.InvalidArgument, "INVALID_PAGE_TOKEN", "page_token was issued for another request")
	}
	micros := int64(binary.BigEndian.Uint64(b[8:16])) //nolint:gosec // G115: written by alertToken from a positive value
	return &domain.AlertCursor{RaisedAt: time.UnixMicro(micros).UTC(), ID: string(b[16:])}, nil
}
