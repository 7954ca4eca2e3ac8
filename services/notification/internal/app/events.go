package app

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/tracing"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

// MessageCreated turns a new message into deliveries (and reminders) for its recipients, added
// in one commit; a repeated event changes nothing.
func (s *Service) MessageCreated(ctx context.Context, ev domain.MessageCreated) error {
	if err := ev.Check(); err != nil {
		return err
	}
	if ev.AutoReply {
		return nil // the pool's automatic reply is never alerted on its own
	}
	msgTime := ev.OccurredAt
	if msgTime.IsZero() {
		msgTime = time.Now()
	}
	plan, err := s.planMessageCreated(ctx, ev, msgTime)
	if err == nil {
		err = s.delivery.AddFanout(ctx, plan)
	}
	if err != nil {
		return fmt.Errorf("message created %s: %w", ev.EventID, err)
	}
	s.Wake()
	return nil
}

// planMessageCreated resolves ev's recipients (the named ones, the patient's proxies with a
// notifications grant unless the thread is adolescent-confidential, the pool's subscribers;
// never the sender) and plans their alerts.
func (s *Service) planMessageCreated(ctx context.Context, ev domain.MessageCreated, msgTime time.Time) (domain.Fanout, error) {
	var plan domain.Fanout
	proxies, err := s.prefs.NotifyProxies(ctx, ev.PatientID, time.Now())
	if err != nil {
		return plan, err
	}
	recipients := slices.Clone(ev.Recipients)
	if ev.Sensitivity != domain.SensitivityAdolescentConfidential {
		recipients = append(recipients, proxies...)
	}
	if ev.PoolID != "" {
		subs, err := s.prefs.PoolSubscribers(ctx, ev.PoolID)
		if err != nil {
			return plan, err
		}
		recipients = append(recipients, subs...)
	}
	slices.Sort(recipients)
	recipients = slices.Compact(recipients)
	recipients = slices.DeleteFunc(recipients, func(r string) bool { return r == "" || r == ev.SenderSubject })
	prefs, err := s.prefs.PreferencesOf(ctx, recipients)
	if err != nil {
		return plan, err
	}
	for _, r := range recipients {
		p, ok := prefs[r]
		if !ok {
			p = domain.DefaultPreferences(r)
		}
		base := domain.Delivery{
			EventID: ev.EventID, RecipientSubject: r, Kind: domain.KindNewMessage, MessageID: ev.MessageID,
			ThreadID: ev.ThreadID, PoolID: ev.PoolID, PatientID: ev.PatientID,
			Sensitivity: ev.Sensitivity, MessageTime: msgTime, Count: 1, TraceParent: tracing.TraceParent(ctx),
		}
		if p.Role == domain.RoleProxy {
			// Adolescent privacy: a proxy never hears of a confidential thread, not even as a
			// suppressed entry in their delivery log.
			if ev.Sensitivity == domain.SensitivityAdolescentConfidential {
				continue
			}
			if !slices.Contains(proxies, r) {
				plan.Deliveries = append(plan.Deliveries, suppressed(base, domain.SuppressNoConsent))
				continue
			}
		}
		fanOut(&plan, base, p, ev.EventID)
		if p.RemindersEnabled && p.ReminderAfter > 0 {
			plan.Reminders = append(plan.Reminders, domain.Reminder{
				RecipientSubject: r, ThreadID: base.ThreadID, MessageID: base.MessageID, PoolID: base.PoolID,
				PatientID: base.PatientID, Sensitivity: base.Sensitivity, MessageTime: msgTime, DueAt: msgTime.Add(p.ReminderAfter),
			})
		}
	}
	return plan, nil
}

// suppressed is the one SUPPRESSED delivery (channel unspecified) explaining why nobody was
// alerted.
func suppressed(d domain.Delivery, code string) domain.Delivery {
	d.Channel, d.Status, d.SuppressionCode = domain.ChannelUnspecified, domain.StatusSuppressed, code
	d.IdempotencyKey = domain.IdempotencyKey(d.EventID, d.RecipientSubject, domain.ChannelUnspecified)
	return d
}

// fanOut plans base's deliveries on every channel p enables. source names what caused them
// (the event id, or the reminder) for the idempotency key.
func fanOut(plan *domain.Fanout, base domain.Delivery, p domain.Preferences, source string) {
	anyEnabled := false
	for _, ch := range domain.Channels {
		set := p.Channel(ch)
		if !set.Enabled {
			continue
		}
		anyEnabled = true
		d := base
		d.Channel = ch
		d.IdempotencyKey = domain.IdempotencyKey(source, d.RecipientSubject, ch)
		switch {
		case !set.HasAddress:
			d.Status, d.SuppressionCode = domain.StatusSuppressed, domain.SuppressNoAddress
			plan.Deliveries = append(plan.Deliveries, d)
		case base.Kind == domain.KindNewMessage && p.DigestWindow > 0:
			// Digest per thread: the first message opens a digest that goes out when the window
			// ends; later ones fold into it. The folded event keeps a SUPPRESSED row under its own
			// idempotency key, so a redelivered event cannot count twice.
			d.Kind = domain.KindDigest
			marker := d
			marker.Status, marker.SuppressionCode = domain.StatusSuppressed, domain.SuppressDigested
			open := d
			open.Status = domain.StatusPending
			open.IdempotencyKey = domain.IdempotencyKey("digest:"+source, d.RecipientSubject, ch)
			open.NextAttemptAt = time.Now().Add(p.DigestWindow)
			plan.Digests = append(plan.Digests, domain.DigestEntry{Marker: marker, Open: open})
		default:
			d.Status, d.NextAttemptAt = domain.StatusPending, time.Now()
			plan.Deliveries = append(plan.Deliveries, d)
		}
	}
	if !anyEnabled {
		plan.Deliveries = append(plan.Deliveries, suppressed(base, domain.SuppressChannelDisabled))
	}
}

// MessageRead cancels the reader's reminders and unsent alerts for the messages they read.
func (s *Service) MessageRead(ctx context.Context, ev domain.MessageRead) error {
	if err := ev.Check(); err != nil {
		return err
	}
	cutoff := ev.OccurredAt
	if ev.UnreadCount == 0 {
		cutoff = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	} else if t, ok, err := s.delivery.MessageTime(ctx, ev.ReaderSubject, ev.UpToMessageID); err != nil {
		return err
	} else if ok {
		cutoff = t
	}
	_, _, err := s.delivery.CancelForRead(ctx, ev.ReaderSubject, ev.ThreadID, cutoff)
	return err
}

// FireReminders turns due reminders into UNREAD_REMINDER deliveries and reports how many fired.
func (s *Service) FireReminders(ctx context.Context) (int, error) {
	n, err := s.delivery.FireDueReminders(ctx, 200, func(due []domain.Reminder, prefs map[string]domain.Preferences) (domain.Fanout, error) {
		var plan domain.Fanout
		for _, r := range due {
			p, ok := prefs[r.RecipientSubject]
			if !ok || !p.RemindersEnabled {
				continue
			}
			base := domain.Delivery{
				EventID: r.ID, RecipientSubject: r.RecipientSubject, Kind: domain.KindUnreadReminder, MessageID: r.MessageID,
				ThreadID: r.ThreadID, PoolID: r.PoolID, PatientID: r.PatientID, Sensitivity: r.Sensitivity,
				MessageTime: r.MessageTime, Count: 1,
			}
			fanOut(&plan, base, p, "reminder:"+r.ID)
		}
		return plan, nil
	})
	if n > 0 {
		s.Wake()
	}
	return n, err
}
