package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

// ErrMalformedEvent is returned for an event that can never be processed (missing or
// malformed ids); the consumer terminates it instead of retrying.
var ErrMalformedEvent = errors.New("malformed event")

var errNoTemplate = errors.New("no template")

const adolescent = int16(commonv1.Sensitivity_SENSITIVITY_ADOLESCENT_CONFIDENTIAL)

// CheckMessageCreated is the pure validation of a MessageCreated event (no I/O): it returns
// ErrMalformedEvent for an event that can never be processed (missing or malformed ids).
func CheckMessageCreated(ev *eventsv1.MessageCreated) error {
	if !domain.IsUUID(ev.GetMeta().GetEventId()) || !domain.IsUUID(ev.GetThreadId()) || !domain.IsUUID(ev.GetMessageId()) ||
		(ev.GetPoolId() != "" && !domain.IsPoolID(ev.GetPoolId())) {
		return ErrMalformedEvent
	}
	return nil
}

// CheckMessageRead is the pure validation of a MessageRead event (no I/O): it returns
// ErrMalformedEvent for an event that can never be processed.
func CheckMessageRead(ev *eventsv1.MessageRead) error {
	if !domain.IsUUID(ev.GetMeta().GetEventId()) || !domain.IsUUID(ev.GetThreadId()) || ev.GetReaderSubject() == "" {
		return ErrMalformedEvent
	}
	return nil
}

// MessageCreated turns a new message into deliveries (and reminders) for its recipients, in
// one transaction; a repeated event changes nothing.
func (s *Service) MessageCreated(ctx context.Context, ev *eventsv1.MessageCreated) error {
	eventID := ev.GetMeta().GetEventId()
	if err := CheckMessageCreated(ev); err != nil {
		return err
	}
	if ev.GetAutoReply() {
		return nil // the pool's automatic reply is never alerted on its own
	}
	msgTime := ev.GetMeta().GetOccurredAt().AsTime()
	if ev.GetMeta().GetOccurredAt() == nil {
		msgTime = time.Now()
	}
	sensitivity := int16(ev.GetSensitivity())
	err := s.d.Store.Tx(ctx, func(tx pgx.Tx) error {
		now := time.Now()
		proxies, err := s.d.Store.NotifyProxies(ctx, tx, ev.GetPatientId(), now)
		if err != nil {
			return err
		}
		recipients := slices.Clone(ev.GetRecipientSubjects())
		if sensitivity != adolescent {
			recipients = append(recipients, proxies...)
		}
		if ev.GetPoolId() != "" {
			subs, err := s.d.Store.PoolSubscribers(ctx, tx, ev.GetPoolId())
			if err != nil {
				return err
			}
			recipients = append(recipients, subs...)
		}
		slices.Sort(recipients)
		recipients = slices.Compact(recipients)
		recipients = slices.DeleteFunc(recipients, func(r string) bool { return r == "" || r == ev.GetSenderSubject() })
		prefs, err := s.d.Store.LoadPreferencesMany(ctx, tx, recipients)
		if err != nil {
			return err
		}
		for _, r := range recipients {
			p, ok := prefs[r]
			if !ok {
				p = domain.DefaultPreferences(r)
			}
			base := domain.Delivery{
				EventID: eventID, RecipientSubject: r, Kind: domain.KindNewMessage, MessageID: ev.GetMessageId(),
				ThreadID: ev.GetThreadId(), PoolID: ev.GetPoolId(), PatientID: ev.GetPatientId(),
				Sensitivity: sensitivity, MessageTime: msgTime, Count: 1,
			}
			if p.Role == domain.RoleProxy {
				// Adolescent privacy: a proxy never hears of a confidential thread, not even as a
				// suppressed entry in their delivery log.
				if sensitivity == adolescent {
					continue
				}
				if !slices.Contains(proxies, r) {
					if err := s.suppressed(ctx, tx, base, domain.SuppressNoConsent); err != nil {
						return err
					}
					continue
				}
			}
			if err := s.fanOut(ctx, tx, base, p, eventID); err != nil {
				return err
			}
			if p.RemindersEnabled && p.ReminderAfter > 0 {
				err := s.d.Store.InsertReminder(ctx, tx, domain.Reminder{
					RecipientSubject: r, ThreadID: base.ThreadID, MessageID: base.MessageID, PoolID: base.PoolID,
					PatientID: base.PatientID, Sensitivity: sensitivity, MessageTime: msgTime, DueAt: msgTime.Add(p.ReminderAfter),
				})
				if err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("message created %s: %w", eventID, err)
	}
	s.Wake()
	return nil
}

// suppressed records one SUPPRESSED delivery (channel unspecified) explaining why nobody was
// alerted.
func (s *Service) suppressed(ctx context.Context, tx pgx.Tx, d domain.Delivery, code string) error {
	d.Channel, d.Status, d.SuppressionCode = domain.ChannelUnspecified, domain.StatusSuppressed, code
	d.IdempotencyKey = domain.IdempotencyKey(d.EventID, d.RecipientSubject, domain.ChannelUnspecified)
	_, err := s.d.Store.InsertDelivery(ctx, tx, &d)
	return err
}

// fanOut creates base's deliveries on every channel p enables. source names what caused them
// (the event id, or the reminder) for the idempotency key.
func (s *Service) fanOut(ctx context.Context, tx pgx.Tx, base domain.Delivery, p domain.Preferences, source string) error {
	any := false
	for _, ch := range domain.Channels {
		set := p.Channel(ch)
		if !set.Enabled {
			continue
		}
		any = true
		d := base
		d.Channel = ch
		d.IdempotencyKey = domain.IdempotencyKey(source, d.RecipientSubject, ch)
		if !set.HasAddress {
			d.Status, d.SuppressionCode = domain.StatusSuppressed, domain.SuppressNoAddress
			if _, err := s.d.Store.InsertDelivery(ctx, tx, &d); err != nil {
				return err
			}
			continue
		}
		d.Status, d.NextAttemptAt = domain.StatusPending, time.Now()
		if base.Kind == domain.KindNewMessage && p.DigestWindow > 0 {
			// Digest per thread: the first message opens a digest that goes out when the window
			// ends; later ones fold into it. The folded event keeps a SUPPRESSED row under its own
			// idempotency key, so a redelivered event cannot count twice.
			d.Kind = domain.KindDigest
			d.Status, d.SuppressionCode, d.NextAttemptAt = domain.StatusSuppressed, domain.SuppressDigested, time.Time{}
			inserted, err := s.d.Store.InsertDelivery(ctx, tx, &d)
			if err != nil || !inserted {
				return err
			}
			merged, err := s.d.Store.MergeIntoOpenDigest(ctx, tx, d.RecipientSubject, ch, d.ThreadID, d.MessageID, d.MessageTime)
			if err != nil || merged {
				return err
			}
			open := d
			open.ID, open.Status, open.SuppressionCode = "", domain.StatusPending, ""
			open.IdempotencyKey = domain.IdempotencyKey("digest:"+source, d.RecipientSubject, ch)
			open.NextAttemptAt = time.Now().Add(p.DigestWindow)
			if _, err := s.d.Store.InsertDelivery(ctx, tx, &open); err != nil {
				return err
			}
			continue
		}
		if _, err := s.d.Store.InsertDelivery(ctx, tx, &d); err != nil {
			return err
		}
	}
	if !any {
		return s.suppressed(ctx, tx, base, domain.SuppressChannelDisabled)
	}
	return nil
}

// MessageRead cancels the reader's reminders and unsent alerts for the messages they read.
func (s *Service) MessageRead(ctx context.Context, ev *eventsv1.MessageRead) error {
	if err := CheckMessageRead(ev); err != nil {
		return err
	}
	return s.d.Store.Tx(ctx, func(tx pgx.Tx) error {
		cutoff := ev.GetMeta().GetOccurredAt().AsTime()
		if ev.GetUnreadCount() == 0 {
			cutoff = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
		} else if t, ok, err := s.d.Store.MessageTime(ctx, tx, ev.GetReaderSubject(), ev.GetUpToMessageId()); err != nil {
			return err
		} else if ok {
			cutoff = t
		}
		_, _, err := s.d.Store.CancelForRead(ctx, tx, ev.GetReaderSubject(), ev.GetThreadId(), cutoff)
		return err
	})
}

// FireReminders turns due reminders into UNREAD_REMINDER deliveries and reports how many fired.
func (s *Service) FireReminders(ctx context.Context) (int, error) {
	var n int
	err := s.d.Store.Tx(ctx, func(tx pgx.Tx) error {
		due, err := s.d.Store.DueReminders(ctx, tx, 200)
		if err != nil || len(due) == 0 {
			return err
		}
		n = len(due)
		subjects := make([]string, 0, len(due))
		for _, r := range due {
			subjects = append(subjects, r.RecipientSubject)
		}
		prefs, err := s.d.Store.LoadPreferencesMany(ctx, tx, subjects)
		if err != nil {
			return err
		}
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
			if err := s.fanOut(ctx, tx, base, p, "reminder:"+r.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if n > 0 {
		s.Wake()
	}
	return n, err
}
