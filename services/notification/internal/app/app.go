// Package app holds the notification service's use cases: turning message events into
// deliveries (recipients, preferences, digests, reminders), dispatching deliveries to the
// channels with retries and a dead-letter state, and the API's preference, delivery-log and
// template operations. It works on domain values through the repository interfaces of package
// domain; it never sees a transaction, a proto of the API or a gRPC status.
//
// # Delivery semantics
//
// Each (source event, recipient, channel) becomes at most one delivery row: its idempotency key
// hash(event id, recipient, channel) is unique, so JetStream redeliveries and replays after a
// restart insert nothing new. The event is acknowledged only after the commit that wrote its
// deliveries.
//
// A delivery is sent by claim-then-send: a worker moves it to SENDING with a lease in one
// statement (FOR UPDATE SKIP LOCKED, so replicas never claim the same row), sends, and then
// records the outcome (and its audit record) in one commit. Shutdown never interrupts the step
// between send and record: in-flight sends finish on a context detached from shutdown.
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
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

// Config are the use cases' settings. Zero durations and counts take the defaults named on
// each field.
type Config struct {
	// OrganisationName and PortalLink fill the templates; both are required.
	OrganisationName string
	PortalLink       string
	// DefaultTemplates are the shipped templates (package templates).
	DefaultTemplates []domain.Template
	// Retry is how failed sends are retried (default domain.DefaultRetryPolicy).
	Retry domain.RetryPolicy
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
}

// Deps are the use cases' collaborators.
type Deps struct {
	Preferences domain.PreferencesRepository
	Deliveries  domain.DeliveryRepository
	Templates   domain.TemplateRepository
	// Senders by channel; a channel without a sender dead-letters its deliveries
	// ("channel_not_configured").
	Senders map[domain.Channel]domain.Sender
	// Policy answers the record-level questions (and audits denials and PHI reads).
	Policy domain.Authorizer
	// Audit builds the audit records the repositories commit with each change.
	Audit *auditlog.Emitter
	// Logger for failures of background work (never PHI); default slog.Default().
	Logger *slog.Logger
}

// Service runs the use cases.
type Service struct {
	cfg      Config
	prefs    domain.PreferencesRepository
	delivery domain.DeliveryRepository
	tmpl     domain.TemplateRepository
	senders  map[domain.Channel]domain.Sender
	policy   domain.Authorizer
	audit    *auditlog.Emitter
	log      *slog.Logger
	wake     chan struct{}
	defaults map[string]domain.Template
	// outcomes counts recorded attempt outcomes by channel and status (DeliveryOutcomes).
	outcomes [domain.ChannelWebhook + 1][domain.StatusSuppressed + 1]atomic.Uint64
}

// New returns the service, or an error naming what is missing.
func New(cfg Config, d Deps) (*Service, error) {
	var errs []error
	if cfg.OrganisationName == "" || cfg.PortalLink == "" {
		errs = append(errs, errors.New("notification: organisation name and portal link are required"))
	}
	if d.Preferences == nil || d.Deliveries == nil || d.Templates == nil || d.Policy == nil || d.Audit == nil {
		errs = append(errs, errors.New("notification: the repositories, the policy engine and the audit emitter are required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 2 * time.Minute
	}
	if cfg.SendTimeout <= 0 {
		cfg.SendTimeout = 30 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.Retry.MaxAttempts <= 0 {
		cfg.Retry = domain.DefaultRetryPolicy
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	s := &Service{
		cfg: cfg, prefs: d.Preferences, delivery: d.Deliveries, tmpl: d.Templates, senders: d.Senders,
		policy: d.Policy, audit: d.Audit, log: d.Logger,
		wake: make(chan struct{}, 1), defaults: map[string]domain.Template{},
	}
	for _, t := range cfg.DefaultTemplates {
		s.defaults[t.Key()] = t
	}
	return s, nil
}

// Wake tells the dispatcher that new work may be due now.
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

var errNoTemplate = errors.New("no template")

// template returns the template for kind, channel and locale: the stored override, else the
// shipped default, falling back to DefaultLocale.
func (s *Service) template(ctx context.Context, kind domain.Kind, ch domain.Channel, locale string) (domain.Template, error) {
	for _, loc := range []string{locale, domain.DefaultLocale} {
		if loc == "" {
			continue
		}
		t, ok, err := s.tmpl.Template(ctx, kind, ch, loc)
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
