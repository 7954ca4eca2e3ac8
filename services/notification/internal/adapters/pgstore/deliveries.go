package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

// AddFanout implements domain.DeliveryRepository.
func (s *Store) AddFanout(ctx context.Context, f domain.Fanout) (err error) {
	defer refuse(&err)
	if f.Empty() {
		return nil
	}
	return s.inTx(ctx, func(tx pgx.Tx) error { return addFanout(ctx, tx, f) })
}

func addFanout(ctx context.Context, tx pgx.Tx, f domain.Fanout) error {
	for _, d := range f.Deliveries {
		if _, err := insertDelivery(ctx, tx, d); err != nil {
			return err
		}
	}
	for _, e := range f.Digests {
		inserted, err := insertDelivery(ctx, tx, e.Marker)
		if err != nil || !inserted {
			return err
		}
		merged, err := mergeIntoOpenDigest(ctx, tx, e.Marker)
		if err != nil {
			return err
		}
		if merged {
			continue
		}
		if _, err := insertDelivery(ctx, tx, e.Open); err != nil {
			return err
		}
	}
	for _, r := range f.Reminders {
		if err := insertReminder(ctx, tx, r); err != nil {
			return err
		}
	}
	return nil
}

// insertDelivery adds d unless a delivery with its idempotency key exists; inserted reports
// which.
func insertDelivery(ctx context.Context, tx pgx.Tx, d domain.Delivery) (bool, error) {
	if d.ID == "" {
		d.ID = uuid.Must(uuid.NewV7()).String()
	}
	var next *time.Time
	if !d.NextAttemptAt.IsZero() {
		next = &d.NextAttemptAt
	}
	tag, err := tx.Exec(ctx, `INSERT INTO deliveries (id, idempotency_key, event_id, recipient_subject, channel, kind,
		message_id, thread_id, pool_id, patient_id, sensitivity, message_time, item_count, status, suppression_code, next_attempt_at, trace_parent)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,NULLIF($17, ''))
		ON CONFLICT ON CONSTRAINT deliveries_idempotency_key DO NOTHING`,
		d.ID, d.IdempotencyKey, d.EventID, d.RecipientSubject, int16(d.Channel), int16(d.Kind), d.MessageID, d.ThreadID,
		d.PoolID, d.PatientID, d.Sensitivity, d.MessageTime, max(d.Count, 1), int16(d.Status), d.SuppressionCode, next, d.TraceParent)
	if err != nil {
		return false, fmt.Errorf("insert delivery: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// mergeIntoOpenDigest folds marker's message into the recipient's open (still pending) digest
// for the thread and channel, and reports whether there was one.
func mergeIntoOpenDigest(ctx context.Context, tx pgx.Tx, marker domain.Delivery) (bool, error) {
	tag, err := tx.Exec(ctx, `UPDATE deliveries SET item_count = item_count + 1,
		message_id = CASE WHEN $5 >= message_time THEN $4 ELSE message_id END,
		message_time = GREATEST(message_time, $5), updated_at = now()
		WHERE id = (SELECT id FROM deliveries WHERE recipient_subject = $1 AND channel = $2 AND thread_id = $3
		            AND kind = 2 AND status = 1 ORDER BY created_at DESC LIMIT 1 FOR UPDATE)`,
		marker.RecipientSubject, int16(marker.Channel), marker.ThreadID, marker.MessageID, marker.MessageTime)
	if err != nil {
		return false, fmt.Errorf("merge into digest: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// insertReminder schedules r unless one exists for the recipient and message.
func insertReminder(ctx context.Context, tx pgx.Tx, r domain.Reminder) error {
	if r.ID == "" {
		r.ID = uuid.Must(uuid.NewV7()).String()
	}
	_, err := tx.Exec(ctx, `INSERT INTO reminders (id, recipient_subject, thread_id, message_id, pool_id, patient_id, sensitivity, message_time, due_at)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT ON CONSTRAINT reminders_recipient_message DO NOTHING`,
		r.ID, r.RecipientSubject, r.ThreadID, r.MessageID, r.PoolID, r.PatientID, r.Sensitivity, r.MessageTime, r.DueAt)
	if err != nil {
		return fmt.Errorf("insert reminder: %w", err)
	}
	return nil
}

// MessageTime implements domain.DeliveryRepository.
func (s *Store) MessageTime(ctx context.Context, reader, messageID string) (t time.Time, ok bool, err error) {
	defer refuse(&err)
	err = s.pool.QueryRow(ctx, `SELECT message_time FROM reminders WHERE recipient_subject = $1 AND message_id = $2
		UNION ALL SELECT message_time FROM deliveries WHERE recipient_subject = $1 AND message_id = $2 LIMIT 1`, reader, messageID).Scan(&t)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, false, nil
	}
	return t, err == nil, err
}

// CancelForRead implements domain.DeliveryRepository.
func (s *Store) CancelForRead(ctx context.Context, reader, thread string, cutoff time.Time) (reminders, deliveries int, err error) {
	defer refuse(&err)
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		r, err := tx.Exec(ctx, `UPDATE reminders SET status = 2 WHERE recipient_subject = $1 AND thread_id = $2 AND status = 1 AND message_time <= $3`, reader, thread, cutoff)
		if err != nil {
			return fmt.Errorf("cancel reminders: %w", err)
		}
		d, err := tx.Exec(ctx, `UPDATE deliveries SET status = 5, suppression_code = 'already_read', updated_at = now(), next_attempt_at = NULL
			WHERE recipient_subject = $1 AND thread_id = $2 AND status IN (1, 3) AND message_time <= $3`, reader, thread, cutoff)
		if err != nil {
			return fmt.Errorf("suppress deliveries: %w", err)
		}
		reminders, deliveries = int(r.RowsAffected()), int(d.RowsAffected())
		return nil
	})
	return reminders, deliveries, err
}

const deliveryColumns = `id, idempotency_key, event_id, recipient_subject, channel, kind, message_id, thread_id, pool_id,
	patient_id, sensitivity, message_time, item_count, status, suppression_code, attempts, next_attempt_at, created_at, updated_at,
	coalesce(trace_parent, '')`

func scanDelivery(row pgx.Row) (domain.Delivery, error) {
	var d domain.Delivery
	var id uuid.UUID
	var ch, kind, status int16
	var next *time.Time
	err := row.Scan(&id, &d.IdempotencyKey, &d.EventID, &d.RecipientSubject, &ch, &kind, &d.MessageID, &d.ThreadID, &d.PoolID,
		&d.PatientID, &d.Sensitivity, &d.MessageTime, &d.Count, &status, &d.SuppressionCode, &d.Attempts, &next, &d.CreatedAt, &d.UpdatedAt,
		&d.TraceParent)
	d.ID, d.Channel, d.Kind, d.Status = id.String(), domain.Channel(ch), domain.Kind(kind), domain.Status(status)
	if next != nil {
		d.NextAttemptAt = *next
	}
	return d, err
}

func collectDeliveries(rows pgx.Rows, err error) ([]domain.Delivery, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (domain.Delivery, error) { return scanDelivery(r) })
}

// ClaimDue implements domain.DeliveryRepository in one statement (SKIP LOCKED lets replicas
// share the work).
func (s *Store) ClaimDue(ctx context.Context, limit int, lease time.Duration) (_ []domain.Delivery, err error) {
	defer refuse(&err)
	out, err := collectDeliveries(s.pool.Query(ctx, `UPDATE deliveries SET status = 100, attempts = attempts + 1,
		claimed_until = now() + make_interval(secs => $2), updated_at = now()
		WHERE id IN (SELECT id FROM deliveries WHERE status IN (1, 3) AND next_attempt_at <= now()
		             ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
		RETURNING `+deliveryColumns, limit, lease.Seconds()))
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	return out, nil
}

// Release implements domain.DeliveryRepository.
func (s *Store) Release(ctx context.Context, id string, at time.Time) (err error) {
	defer refuse(&err)
	_, err = s.pool.Exec(ctx, `UPDATE deliveries SET status = 1, attempts = attempts - 1, next_attempt_at = $2,
		claimed_until = NULL, updated_at = now() WHERE id = $1 AND status = 100`, id, at)
	return err
}

// Suppress implements domain.DeliveryRepository.
func (s *Store) Suppress(ctx context.Context, id, code string) (err error) {
	defer refuse(&err)
	_, err = s.pool.Exec(ctx, `UPDATE deliveries SET status = 5, suppression_code = $2, claimed_until = NULL,
		next_attempt_at = NULL, updated_at = now() WHERE id = $1`, id, code)
	return err
}

// FinishAttempt implements domain.DeliveryRepository.
func (s *Store) FinishAttempt(ctx context.Context, id string, a domain.Attempt, audit []outbox.Event) (err error) {
	defer refuse(&err)
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := finishAttempt(ctx, tx, id, a); err != nil {
			return err
		}
		return outbox.Add(ctx, tx, audit...)
	})
}

func finishAttempt(ctx context.Context, tx pgx.Tx, id string, a domain.Attempt) error {
	var next *time.Time
	if !a.NextAttempt.IsZero() {
		next = &a.NextAttempt
	}
	tag, err := tx.Exec(ctx, `UPDATE deliveries SET status = $2, next_attempt_at = $3, claimed_until = NULL, updated_at = now()
		WHERE id = $1 AND status = 100`, id, int16(a.Status), next)
	if err != nil {
		return fmt.Errorf("finish delivery: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("finish delivery %s: %w", id, domain.ErrNotClaimed)
	}
	_, err = tx.Exec(ctx, `INSERT INTO delivery_attempts (delivery_id, attempt, status, start_time, finish_time, error_code, next_attempt_time)
		VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (delivery_id, attempt) DO NOTHING`,
		id, a.Attempt, int16(a.Status), a.StartTime, a.FinishTime, a.ErrorCode, next)
	if err != nil {
		return fmt.Errorf("log attempt: %w", err)
	}
	return nil
}

// RecoverStaleClaims implements domain.DeliveryRepository: the stale claims are locked (SKIP
// LOCKED) for the whole transaction.
func (s *Store) RecoverStaleClaims(ctx context.Context, limit int, settle func(domain.Delivery) (domain.Attempt, []outbox.Event, error)) (n int, err error) {
	defer refuse(&err)
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		stale, err := collectDeliveries(tx.Query(ctx, `SELECT `+deliveryColumns+` FROM deliveries WHERE status = 100 AND claimed_until < now()
			ORDER BY claimed_until LIMIT $1 FOR UPDATE SKIP LOCKED`, limit))
		if err != nil {
			return fmt.Errorf("find stale claims: %w", err)
		}
		n = len(stale)
		for _, d := range stale {
			a, audit, err := settle(d)
			if err != nil {
				return err
			}
			if err := finishAttempt(ctx, tx, d.ID, a); err != nil {
				return err
			}
			if err := outbox.Add(ctx, tx, audit...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err // rolled back: nothing was settled
	}
	return n, nil
}

// FireDueReminders implements domain.DeliveryRepository: the due reminders are marked fired
// (SKIP LOCKED, so replicas fire each once) and their fanout added in one transaction.
func (s *Store) FireDueReminders(ctx context.Context, limit int, plan func([]domain.Reminder, map[string]domain.Preferences) (domain.Fanout, error)) (n int, err error) {
	defer refuse(&err)
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE reminders SET status = 3 WHERE id IN (
			SELECT id FROM reminders WHERE status = 1 AND due_at <= now() ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED)
			RETURNING id, recipient_subject, thread_id, message_id, pool_id, patient_id, sensitivity, message_time, due_at`, limit)
		if err != nil {
			return fmt.Errorf("due reminders: %w", err)
		}
		due, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (domain.Reminder, error) {
			var m domain.Reminder
			var id uuid.UUID
			err := r.Scan(&id, &m.RecipientSubject, &m.ThreadID, &m.MessageID, &m.PoolID, &m.PatientID, &m.Sensitivity, &m.MessageTime, &m.DueAt)
			m.ID = id.String()
			return m, err
		})
		if err != nil || len(due) == 0 {
			return err
		}
		n = len(due)
		subjects := make([]string, 0, len(due))
		for _, r := range due {
			subjects = append(subjects, r.RecipientSubject)
		}
		prefs, err := preferencesOf(ctx, tx, subjects)
		if err != nil {
			return err
		}
		f, err := plan(due, prefs)
		if err != nil {
			return err
		}
		return addFanout(ctx, tx, f)
	})
	if err != nil {
		return 0, err // rolled back: nothing fired
	}
	return n, nil
}

// ListDeliveries implements domain.DeliveryRepository.
func (s *Store) ListDeliveries(ctx context.Context, f domain.DeliveryFilter, after *domain.DeliveryCursor, limit int) (_ []domain.Delivery, err error) {
	defer refuse(&err)
	sql := `SELECT ` + deliveryColumns + ` FROM deliveries WHERE recipient_subject = $1
		AND ($2 = 0 OR channel = $2) AND ($3 = 0 OR (CASE WHEN status = 100 THEN 1 ELSE status END) = $3)
		AND ($4 = '' OR message_id = $4) AND ($5::timestamptz IS NULL OR created_at >= $5)
		AND ($6::timestamptz IS NULL OR created_at < $6)
		AND ($7::timestamptz IS NULL OR (created_at, id) < ($7, $8::uuid))
		ORDER BY created_at DESC, id DESC LIMIT $9`
	var start, end, afterTime *time.Time
	afterID := uuid.Nil.String()
	if !f.Start.IsZero() {
		start = &f.Start
	}
	if !f.End.IsZero() {
		end = &f.End
	}
	if after != nil {
		afterTime, afterID = &after.CreatedAt, after.ID
	}
	out, err := collectDeliveries(s.pool.Query(ctx, sql, f.Recipient, int16(f.Channel), int16(f.Status), f.MessageID, start, end, afterTime, afterID, limit))
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	if len(out) == 0 {
		return out, nil
	}
	ids := make([]string, len(out))
	idx := map[string]int{}
	for i, d := range out {
		ids[i], idx[d.ID] = d.ID, i
	}
	arows, err := s.pool.Query(ctx, `SELECT delivery_id, attempt, status, start_time, finish_time, error_code, next_attempt_time
		FROM delivery_attempts WHERE delivery_id = ANY($1::uuid[]) ORDER BY delivery_id, attempt`, ids)
	if err != nil {
		return nil, fmt.Errorf("list attempts: %w", err)
	}
	defer arows.Close()
	for arows.Next() {
		var id uuid.UUID
		var a domain.Attempt
		var st int16
		var next *time.Time
		if err := arows.Scan(&id, &a.Attempt, &st, &a.StartTime, &a.FinishTime, &a.ErrorCode, &next); err != nil {
			return nil, fmt.Errorf("list attempts: %w", err)
		}
		a.Status = domain.Status(st)
		if next != nil {
			a.NextAttempt = *next
		}
		i := idx[id.String()]
		out[i].Log = append(out[i].Log, a)
	}
	return out, arows.Err()
}
