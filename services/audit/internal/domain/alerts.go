package domain

import (
	"time"

	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
)

// RaisedAlert is an alert as stored for auditors: what fired, when, and whether someone has
// looked into it.
type RaisedAlert struct {
	// ID is the AnomalyAlert event's id.
	ID string
	Alert
	Severity eventsv1.Severity
	RaisedAt time.Time
	// AcknowledgedAt is zero while the alert is open.
	AcknowledgedAt time.Time
	AcknowledgedBy string
	Note           string
}

// Open reports whether nobody has acknowledged the alert yet.
func (a RaisedAlert) Open() bool { return a.AcknowledgedAt.IsZero() }

// MaxAlertNote bounds an acknowledgement's note, in characters.
const MaxAlertNote = 500

// AppendEffects are what commits with an append besides its entries: the outbox events (alert
// events and their audit records) and the alerts raised.
type AppendEffects struct {
	Events []outbox.Event
	Alerts []RaisedAlert
}

// AlertFilter selects alerts for ListAlerts.
type AlertFilter struct {
	OpenOnly bool
	RuleID   string // "" for every rule
}

// AlertCursor is the last alert of a page, newest first: (RaisedAt, ID) descending.
type AlertCursor struct {
	RaisedAt time.Time
	ID       string
}
