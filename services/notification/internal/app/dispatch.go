package app

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/backoff"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/tracing"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

// ServiceSubject is the audit actor of alerts: the notification service itself.
const ServiceSubject = "service:notification"

// errorOutcomeUnknown is the attempt error code of a claim whose worker vanished.
const errorOutcomeUnknown = "outcome_unknown"

// recordRetry is how often, and how far apart, recording an outcome is tried after the send
// happened: five tries, 50ms, 100ms, 200ms and 400ms apart; then the claim is left to expire.
var recordRetry = struct {
	schedule backoff.Exponential
	tries    int
}{backoff.Exponential{Floor: 50 * time.Millisecond, Ceiling: 400 * time.Millisecond}, 5}

// RunDispatcher sends due deliveries until ctx ends, then lets in-flight sends finish and
// record their outcome before it returns. It also recovers expired claims and fires due
// reminders.
func (s *Service) RunDispatcher(ctx context.Context) error {
	lastHousekeeping := time.Time{}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		claimed, err := s.DispatchOnce(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("dispatch failed", "error", err)
		}
		if time.Since(lastHousekeeping) >= s.cfg.PollInterval {
			lastHousekeeping = time.Now()
			if _, err := s.RecoverStaleClaims(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("recover stale claims failed", "error", err)
			}
			if _, err := s.FireReminders(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("fire reminders failed", "error", err)
			}
		}
		if claimed == s.cfg.Workers {
			if ctx.Err() != nil {
				return nil
			}
			continue // a full batch: more may be due
		}
		timer.Reset(s.cfg.PollInterval)
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
			if !timer.Stop() {
				<-timer.C
			}
		case <-timer.C:
		}
	}
}

// DispatchOnce claims up to Workers due deliveries, sends them concurrently and records their
// outcomes. It returns how many it claimed.
func (s *Service) DispatchOnce(ctx context.Context) (int, error) {
	if ctx.Err() != nil {
		return 0, nil
	}
	// Claimed work is finished even when ctx ends meanwhile: interrupting between a send and
	// its record is what would make a duplicate (or a lost record) possible. The claim itself
	// runs uncancelled too: a claim cancelled mid-query may still commit, and rows claimed but
	// never sent would later count as crashed sends (email is then not retried).
	work := context.WithoutCancel(ctx)
	batch, err := s.delivery.ClaimDue(work, s.cfg.Workers, s.cfg.Lease)
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	for _, d := range batch {
		wg.Go(func() { s.deliver(work, d) })
	}
	wg.Wait()
	return len(batch), nil
}

// deliver sends one claimed delivery and records the outcome.
func (s *Service) deliver(ctx context.Context, d domain.Delivery) {
	ctx, span := startDeliverySpan(ctx, d)
	defer span.End()
	start := time.Now()
	prefs, err := s.prefs.Preferences(ctx, d.RecipientSubject)
	if err != nil {
		s.finish(ctx, d, start, &domain.SendError{Code: "storage_unavailable"})
		return
	}
	set := prefs.Channel(d.Channel)
	switch {
	case !set.Enabled:
		s.suppress(ctx, d, domain.SuppressChannelDisabled)
		return
	case !set.HasAddress:
		s.suppress(ctx, d, domain.SuppressNoAddress)
		return
	}
	if until := prefs.Quiet.QuietUntil(start); !until.IsZero() {
		if err := s.delivery.Release(ctx, d.ID, until); err != nil {
			s.log.Warn("release for quiet hours failed", "delivery_id", d.ID, "error", err)
		}
		return
	}
	sender := s.senders[d.Channel]
	if sender == nil {
		s.finish(ctx, d, start, &domain.SendError{Code: "channel_not_configured", Permanent: true})
		return
	}
	tmpl, err := s.template(ctx, d.Kind, d.Channel, prefs.Locale)
	if err != nil && d.Channel != domain.ChannelWebhook {
		s.finish(ctx, d, start, &domain.SendError{Code: "template_unavailable"})
		return
	}
	var text domain.Rendered
	if d.Channel != domain.ChannelWebhook {
		text, err = domain.Render(tmpl, domain.TemplateData{OrganisationName: s.cfg.OrganisationName, PortalLink: s.cfg.PortalLink, Count: d.Count})
		if err != nil {
			s.finish(ctx, d, start, &domain.SendError{Code: "template_rejected", Permanent: true})
			return
		}
	}
	addr, err := s.prefs.ContactPoint(ctx, d.RecipientSubject, d.Channel)
	if err != nil {
		s.finish(ctx, d, start, &domain.SendError{Code: "key_service_unavailable"})
		return
	}
	alert := domain.Alert{
		DeliveryID: d.ID, Channel: d.Channel, Kind: d.Kind, Address: addr, Text: text,
		ThreadID: d.ThreadID, MessageID: d.MessageID, PoolID: d.PoolID, Count: d.Count,
		PortalLink: s.cfg.PortalLink, OccurredAt: d.MessageTime,
	}
	sendCtx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
	sendCtx, sendSpan := startSendSpan(sendCtx, d.Channel)
	err = sender.Send(sendCtx, alert)
	endSendSpan(sendSpan, err)
	cancel()
	if err != nil {
		s.finish(ctx, d, start, domain.AsSendError(err))
		return
	}
	s.finish(ctx, d, start, nil)
}

func (s *Service) suppress(ctx context.Context, d domain.Delivery, code string) {
	trace.SpanFromContext(ctx).SetAttributes(attribute.String("securemsg.delivery.suppressed", code))
	if err := s.delivery.Suppress(ctx, d.ID, code); err != nil {
		s.log.Warn("suppress delivery failed", "delivery_id", d.ID, "error", err)
		return
	}
	s.countOutcome(d.Channel, domain.StatusSuppressed)
}

// DeliveryOutcome is how many attempts on Channel were recorded with Status (sent, retrying,
// failed — dead-lettered — or suppressed) since the service started.
type DeliveryOutcome struct {
	Channel domain.Channel
	Status  domain.Status
	Count   uint64
}

// DeliveryOutcomes returns the recorded outcome counts of every channel and final or retrying
// status, zeros included, for metrics.
func (s *Service) DeliveryOutcomes() []DeliveryOutcome {
	var out []DeliveryOutcome
	for _, ch := range domain.Channels {
		for _, st := range []domain.Status{domain.StatusSent, domain.StatusRetrying, domain.StatusFailed, domain.StatusSuppressed} {
			out = append(out, DeliveryOutcome{Channel: ch, Status: st, Count: s.outcomes[ch][st].Load()})
		}
	}
	return out
}

// countOutcome counts one recorded outcome; values outside the known sets are not counted.
func (s *Service) countOutcome(ch domain.Channel, st domain.Status) {
	if ch > domain.ChannelUnspecified && int(ch) < len(s.outcomes) && st > 0 && int(st) < len(s.outcomes[ch]) {
		s.outcomes[ch][st].Add(1)
	}
}

// finish records attempt d.Attempts's outcome and its audit record. It retries the record a few
// times (the send already happened); if it still fails, the lease expires and
// RecoverStaleClaims applies the per-channel rule.
func (s *Service) finish(ctx context.Context, d domain.Delivery, start time.Time, sendErr *domain.SendError) {
	a := domain.Attempt{Attempt: d.Attempts, StartTime: start, FinishTime: time.Now(), Status: domain.StatusSent}
	if sendErr != nil {
		span := trace.SpanFromContext(ctx)
		span.SetAttributes(attribute.String("securemsg.delivery.error_code", sendErr.Code))
		span.SetStatus(codes.Error, "")
		a.ErrorCode = sendErr.Code
		if sendErr.Permanent || s.cfg.Retry.Exhausted(d.Attempts) {
			a.Status = domain.StatusFailed
		} else {
			a.Status = domain.StatusRetrying
			a.NextAttempt = a.FinishTime.Add(s.cfg.Retry.Backoff(d.Attempts))
		}
	}
	err := s.record(ctx, d, a)
	for try := 1; try < recordRetry.tries && err != nil && !errors.Is(err, domain.ErrNotClaimed); try++ {
		time.Sleep(recordRetry.schedule.Delay(try)) // backoff between record retries, not synchronisation
		err = s.record(ctx, d, a)
	}
	if err != nil {
		s.log.Error("recording a delivery outcome failed; the claim will expire", "delivery_id", d.ID, "error", err)
		return
	}
	s.countOutcome(d.Channel, a.Status)
}

func (s *Service) record(ctx context.Context, d domain.Delivery, a domain.Attempt) error {
	audit, err := s.alertAudit(ctx, d, a)
	if err != nil {
		return err
	}
	return s.delivery.FinishAttempt(ctx, d.ID, a, audit)
}

// alertAudit is the ALERT_SENT or ALERT_ABANDONED record of a finished attempt: who was alerted
// (actor.on_behalf_of), on which channel (reason_code), about which message (record_id). Never
// the contact point. A retry is not audited.
func (s *Service) alertAudit(ctx context.Context, d domain.Delivery, a domain.Attempt) ([]outbox.Event, error) {
	var action eventsv1.Action
	var outcome auditlog.RecordOption
	switch a.Status {
	case domain.StatusSent:
		action, outcome = eventsv1.Action_ACTION_ALERT_SENT, auditlog.Reason(d.Channel.String()+"."+d.Kind.String())
	case domain.StatusFailed:
		action, outcome = eventsv1.Action_ACTION_ALERT_ABANDONED, auditlog.Failed(d.Channel.String()+"."+a.ErrorCode)
	default:
		return nil, nil
	}
	rec := s.audit.NewRecord(ctx, action,
		auditlog.Target{Type: eventsv1.RecordType_RECORD_TYPE_MESSAGE, ID: d.MessageID, PatientID: d.PatientID,
			PoolID: d.PoolID, Sensitivity: commonv1.Sensitivity(d.Sensitivity)},
		auditlog.As(auditlog.Actor{Subject: ServiceSubject, Role: commonv1.Role_ROLE_SERVICE, OnBehalfOf: d.RecipientSubject}),
		outcome, auditlog.Operation("notification.dispatch."+d.Channel.String()))
	ev, err := s.audit.Event(ctx, rec)
	if err != nil {
		return nil, err
	}
	return []outbox.Event{ev}, nil
}

// RecoverStaleClaims applies the crash rule to claims whose lease expired (see the package
// documentation): email is dead-lettered as "outcome_unknown" (at most once), other channels
// are retried (the gateway de-duplicates on the delivery id). It returns how many it handled.
func (s *Service) RecoverStaleClaims(ctx context.Context) (int, error) {
	now := time.Now()
	type outcome struct {
		ch domain.Channel
		st domain.Status
	}
	var recovered []outcome // counted once the recovery committed
	n, err := s.delivery.RecoverStaleClaims(ctx, 100, func(d domain.Delivery) (domain.Attempt, []outbox.Event, error) {
		a := domain.Attempt{Attempt: d.Attempts, StartTime: now, FinishTime: now, ErrorCode: errorOutcomeUnknown}
		if d.Channel == domain.ChannelEmail || s.cfg.Retry.Exhausted(d.Attempts) {
			a.Status = domain.StatusFailed
		} else {
			a.Status, a.NextAttempt = domain.StatusRetrying, now
		}
		audit, err := s.alertAudit(ctx, d, a)
		recovered = append(recovered, outcome{d.Channel, a.Status})
		return a, audit, err
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		return n, err
	}
	for _, o := range recovered[:min(n, len(recovered))] {
		s.countOutcome(o.ch, o.st)
	}
	if n > 0 {
		s.Wake()
	}
	return n, nil
}

// startDeliverySpan starts the span of one delivery attempt, continuing the trace of the event
// that asked for it (Delivery.TraceParent). An untraced delivery (a reminder, or tracing off)
// gets no span. Attributes are enums and counts only: never the recipient or the address.
func startDeliverySpan(ctx context.Context, d domain.Delivery) (context.Context, trace.Span) {
	if d.TraceParent == "" {
		return ctx, noop.Span{}
	}
	return tracing.Tracer().Start(tracing.WithRemoteParent(ctx, d.TraceParent), "notification deliver",
		trace.WithAttributes(
			attribute.String("securemsg.delivery.channel", d.Channel.String()),
			attribute.String("securemsg.delivery.kind", d.Kind.String()),
			attribute.Int("securemsg.delivery.attempt", d.Attempts),
		))
}

// startSendSpan starts the span of the hand-off to the channel's provider (the SMTP relay, the
// SMS gateway, the webhook receiver), under the delivery's span when there is one.
func startSendSpan(ctx context.Context, ch domain.Channel) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, noop.Span{}
	}
	return tracing.Tracer().Start(ctx, "send "+ch.String(), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("securemsg.delivery.channel", ch.String())))
}

func endSendSpan(span trace.Span, err error) {
	if err != nil {
		span.SetAttributes(attribute.String("securemsg.delivery.error_code", domain.AsSendError(err).Code))
		span.SetStatus(codes.Error, "")
	}
	span.End()
}
