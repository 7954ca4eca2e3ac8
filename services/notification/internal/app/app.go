// Package app holds the notification service's use cases: turning message events into
// deliveries (recipients, preferences, digests, reminders), dispatching deliveries to the
// channels with retries and a dead-letter state, and the API's preference, delivery-log and
// template operations.
//
// # Delivery semantics
//
// Each (source event, recipient, channel) becomes at most one delivery row: its idempotency key
// hash(event id, recipient, channel) is unique, so JetStream redeliveries and replays after a
// restart insert nothing new. The event is acknowledged only after the transaction that wrote
// its deliveries committed.
//
// A delivery is sent by claim-then-send: a worker moves it to SENDING with a lease in one
// statement (FOR UPDATE SKIP LOCKED, so replicas never claim the same row), sends, and then
// records the outcome (and its audit record) in one transaction. Shutdown never interrupts the
// step between send and record: in-flight sends finish on a context detached from shutdown.
//
// Only a hard crash (or a database outage outlasting the lease) between the provider's
// acceptance and the record leaves the outcome unknown. The choice then differs per channel:
//
//   - Email is at most once: SMTP has no idempotency key, so re-sending could duplicate the
//     alert. An expired email claim is dead-lettered with error code "outcome_unknown" (and
//     audited as abandoned); the person may miss one login prompt, and the unread reminder
//     still covers it.
//   - SMS, push and webhook are at least once on the wire but once in effect: every request
//     carries Idempotency-Key = delivery id, so the gateway drops a repeat. An expired claim is
//     retried.
package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/notification/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

// Deps are what the use cases need. Zero durations take the defaults named on each field.
type Deps struct {
	Store  *pgstore.Store
	Audit  *auditlog.Emitter
	Policy *policy.Engine
	// Senders by channel; a channel without a sender dead-letters its deliveries
	// ("channel_not_configured").
	Senders map[domain.Channel]domain.Sender
	// Defaults are the shipped templates (package templates).
	Defaults []domain.Template
	// OrganisationName and PortalLink fill the templates.
	OrganisationName string
	PortalLink       string
	Retry            domain.RetryPolicy
	// Workers is how many sends run at once (default 8).
	Workers int
	// Lease bounds how long a claimed delivery may stay unrecorded before it counts as
	// crashed (default 2m; must exceed SendTimeout).
	Lease time.Duration
	// SendTimeout bounds one provider call (default 30s).
	SendTimeout time.Duration
	// PollInterval is how often the dispatcher looks for due work when nothing woke it
	// (default 1s).
	PollInterval time.Duration
	Logger       *slog.Logger
}

// Service runs the use cases.
type Service struct {
	d        Deps
	wake     chan struct{}
	defaults map[string]domain.Template
}

// New returns the service.
func New(d Deps) *Service {
	if d.Workers <= 0 {
		d.Workers = 8
	}
	if d.Lease <= 0 {
		d.Lease = 2 * time.Minute
	}
	if d.SendTimeout <= 0 {
		d.SendTimeout = 30 * time.Second
	}
	if d.PollInterval <= 0 {
		d.PollInterval = time.Second
	}
	if d.Retry.MaxAttempts <= 0 {
		d.Retry = domain.DefaultRetryPolicy
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	s := &Service{d: d, wake: make(chan struct{}, 1), defaults: map[string]domain.Template{}}
	for _, t := range d.Defaults {
		s.defaults[t.Key()] = t
	}
	return s
}

// Wake tells the dispatcher that new work may be due now.
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// template returns the template for kind, channel and locale: the stored override, else the
// shipped default, falling back to DefaultLocale.
func (s *Service) template(ctx context.Context, kind domain.Kind, ch domain.Channel, locale string) (domain.Template, error) {
	for _, loc := range []string{locale, domain.DefaultLocale} {
		if loc == "" {
			continue
		}
		t, ok, err := s.d.Store.Template(ctx, kind, ch, loc)
		if err != nil {
			return t, err
		}
		if ok {
			return t, nil
		}
		if t, ok := s.defaults[domain.Template{Kind: kind, Channel: ch, Locale: loc}.Key()]; ok {
			return t, nil
		}
	}
	return domain.Template{}, errNoTemplate
}
