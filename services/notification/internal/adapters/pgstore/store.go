// Package pgstore keeps the notification service's state in Postgres (schema notification):
// preferences with sealed contact points, proxy notification grants, templates, deliveries with
// their attempt log, and reminders. Contact points are sealed and opened here, through the
// sealer, so no plaintext address ever reaches a row.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/notification/internal/adapters/sealer"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

// ErrVersionMismatch is returned by SavePreferences and UpsertTemplate when the expected
// version (from an etag) is not the stored one.
var ErrVersionMismatch = errors.New("version mismatch")

// Store is the Postgres adapter.
type Store struct {
	Pool   *pgxpool.Pool
	sealer *sealer.Sealer
}

// New returns a store over pool (search_path = the service schema) sealing with s.
func New(pool *pgxpool.Pool, s *sealer.Sealer) *Store { return &Store{Pool: pool, sealer: s} }

// Tx runs fn in a transaction.
func (s *Store) Tx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pg.WithTx(ctx, s.Pool, fn)
}

var channelColumns = map[domain.Channel]string{
	domain.ChannelEmail: "email", domain.ChannelSMS: "sms", domain.ChannelPush: "push", domain.ChannelWebhook: "webhook",
}

const prefColumns = `subject, role, email_enabled, email_address, email_verified, sms_enabled, sms_address, sms_verified,
	push_enabled, push_address, push_verified, webhook_enabled, webhook_address, webhook_verified,
	quiet_enabled, quiet_start, quiet_end, time_zone, digest_window_ms, reminders_enabled, reminder_after_ms,
	locale, pool_subscriptions, version, update_time`

type prefRow struct {
	p      domain.Preferences
	sealed map[domain.Channel][]byte
}

func scanPref(row pgx.Row) (prefRow, error) {
	var r prefRow
	var role string
	var en, ver [4]bool
	var addr [4][]byte
	var qs, qe int16
	var digest, remind int64
	p := &r.p
	err := row.Scan(&p.Subject, &role, &en[0], &addr[0], &ver[0], &en[1], &addr[1], &ver[1], &en[2], &addr[2], &ver[2], &en[3], &addr[3], &ver[3],
		&p.Quiet.Enabled, &qs, &qe, &p.Quiet.TimeZone, &digest, &p.RemindersEnabled, &remind, &p.Locale, &p.PoolSubscriptions, &p.Version, &p.UpdateTime)
	if err != nil {
		return r, err
	}
	p.Role = domain.Role(role)
	p.Quiet.StartMinute, p.Quiet.EndMinute = int(qs), int(qe)
	p.DigestWindow, p.ReminderAfter = time.Duration(digest)*time.Millisecond, time.Duration(remind)*time.Millisecond
	p.Channels = map[domain.Channel]domain.ChannelSetting{}
	r.sealed = map[domain.Channel][]byte{}
	for i, c := range domain.Channels {
		p.Channels[c] = domain.ChannelSetting{Enabled: en[i], Verified: ver[i], HasAddress: addr[i] != nil}
		if addr[i] != nil {
			r.sealed[c] = addr[i]
		}
	}
	return r, nil
}

// LoadPreferences reads subject's preferences; decrypt opens the contact points (a Vault call
// on a cold cache). found is false (and the defaults are returned) when none were saved.
func (s *Store) LoadPreferences(ctx context.Context, q pgx.Tx, subject string, decrypt bool) (domain.Preferences, bool, error) {
	var row pgx.Row
	const sql = `SELECT ` + prefColumns + ` FROM preferences WHERE subject = $1`
	if q != nil {
		row = q.QueryRow(ctx, sql, subject)
	} else {
		row = s.Pool.QueryRow(ctx, sql, subject)
	}
	r, err := scanPref(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return domain.DefaultPreferences(subject), false, nil
	}
	if err != nil {
		return domain.Preferences{}, false, fmt.Errorf("load preferences: %w", err)
	}
	if decrypt && len(r.sealed) > 0 {
		if err := s.open(ctx, q, &r); err != nil {
			return domain.Preferences{}, false, err
		}
	}
	return r.p, true, nil
}

// OpenAddress returns subject's contact point for c, or "" when none is stored.
func (s *Store) OpenAddress(ctx context.Context, subject string, c domain.Channel) (string, error) {
	var sealed []byte
	var wrapped *string
	err := s.Pool.QueryRow(ctx, `SELECT p.`+channelColumns[c]+`_address, k.wrapped_dek FROM preferences p
		LEFT JOIN person_keys k ON k.subject = p.subject WHERE p.subject = $1`, subject).Scan(&sealed, &wrapped)
	if errors.Is(err, pgx.ErrNoRows) || sealed == nil {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("load contact point: %w", err)
	}
	if wrapped == nil {
		return "", errors.New("contact point without a person key")
	}
	return s.sealer.Open(ctx, *wrapped, subject, c.String(), sealed)
}

func (s *Store) open(ctx context.Context, q pgx.Tx, r *prefRow) error {
	wrapped, err := s.personKey(ctx, q, r.p.Subject)
	if err != nil {
		return err
	}
	if wrapped == "" {
		return errors.New("contact points without a person key")
	}
	for c, env := range r.sealed {
		addr, err := s.sealer.Open(ctx, wrapped, r.p.Subject, c.String(), env)
		if err != nil {
			return err
		}
		set := r.p.Channels[c]
		set.Address = addr
		r.p.Channels[c] = set
	}
	return nil
}

func (s *Store) personKey(ctx context.Context, q pgx.Tx, subject string) (string, error) {
	var wrapped string
	var err error
	if q != nil {
		err = q.QueryRow(ctx, `SELECT wrapped_dek FROM person_keys WHERE subject = $1`, subject).Scan(&wrapped)
	} else {
		err = s.Pool.QueryRow(ctx, `SELECT wrapped_dek FROM person_keys WHERE subject = $1`, subject).Scan(&wrapped)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("load person key: %w", err)
	}
	return wrapped, nil
}

// ensurePersonKey returns subject's wrapped DEK, creating one on first use.
func (s *Store) ensurePersonKey(ctx context.Context, tx pgx.Tx, subject string) (string, error) {
	if w, err := s.personKey(ctx, tx, subject); err != nil || w != "" {
		return w, err
	}
	dek, err := s.sealer.NewDEK(ctx)
	if err != nil {
		return "", fmt.Errorf("create person key: %w", err)
	}
	clear(dek.Plaintext)
	if _, err := tx.Exec(ctx, `INSERT INTO person_keys (subject, wrapped_dek) VALUES ($1, $2) ON CONFLICT (subject) DO NOTHING`, subject, dek.Wrapped); err != nil {
		return "", fmt.Errorf("store person key: %w", err)
	}
	return s.personKey(ctx, tx, subject)
}

// SavePreferences stores p (every field, contact points sealed) if the stored version is
// expectVersion (0: no check), and returns it with its new version and time.
func (s *Store) SavePreferences(ctx context.Context, tx pgx.Tx, p domain.Preferences, expectVersion int64) (domain.Preferences, error) {
	var current int64
	err := tx.QueryRow(ctx, `SELECT version FROM preferences WHERE subject = $1 FOR UPDATE`, p.Subject).Scan(&current)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return p, fmt.Errorf("lock preferences: %w", err)
	}
	if expectVersion != 0 && expectVersion != current {
		return p, ErrVersionMismatch
	}
	var sealed [4][]byte
	var wrapped string
	for i, c := range domain.Channels {
		addr := p.Channels[c].Address
		if addr == "" {
			continue
		}
		if wrapped == "" {
			if wrapped, err = s.ensurePersonKey(ctx, tx, p.Subject); err != nil {
				return p, err
			}
		}
		if sealed[i], err = s.sealer.Seal(ctx, wrapped, p.Subject, c.String(), addr); err != nil {
			return p, fmt.Errorf("seal %s contact point: %w", c, err)
		}
	}
	ch := func(c domain.Channel) domain.ChannelSetting { return p.Channels[c] }
	if p.PoolSubscriptions == nil {
		p.PoolSubscriptions = []string{}
	}
	err = tx.QueryRow(ctx, `INSERT INTO preferences (`+prefColumns+`)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,1,now())
		ON CONFLICT (subject) DO UPDATE SET role=$2, email_enabled=$3, email_address=$4, email_verified=$5,
		  sms_enabled=$6, sms_address=$7, sms_verified=$8, push_enabled=$9, push_address=$10, push_verified=$11,
		  webhook_enabled=$12, webhook_address=$13, webhook_verified=$14, quiet_enabled=$15, quiet_start=$16,
		  quiet_end=$17, time_zone=$18, digest_window_ms=$19, reminders_enabled=$20, reminder_after_ms=$21,
		  locale=$22, pool_subscriptions=$23, version=preferences.version+1, update_time=now()
		RETURNING version, update_time`,
		p.Subject, string(p.Role),
		ch(domain.ChannelEmail).Enabled, sealed[0], ch(domain.ChannelEmail).Verified,
		ch(domain.ChannelSMS).Enabled, sealed[1], ch(domain.ChannelSMS).Verified,
		ch(domain.ChannelPush).Enabled, sealed[2], ch(domain.ChannelPush).Verified,
		ch(domain.ChannelWebhook).Enabled, sealed[3], ch(domain.ChannelWebhook).Verified,
		p.Quiet.Enabled, int16(p.Quiet.StartMinute), int16(p.Quiet.EndMinute), p.Quiet.TimeZone,
		p.DigestWindow.Milliseconds(), p.RemindersEnabled, p.ReminderAfter.Milliseconds(), p.Locale, p.PoolSubscriptions,
	).Scan(&p.Version, &p.UpdateTime)
	if err != nil {
		return p, fmt.Errorf("save preferences: %w", err)
	}
	for i, c := range domain.Channels {
		set := p.Channels[c]
		set.HasAddress = sealed[i] != nil
		p.Channels[c] = set
	}
	return p, nil
}

// SetRole records the role subject acted in, without touching other settings (creating a
// default row when none exists).
func (s *Store) SetRole(ctx context.Context, tx pgx.Tx, subject string, role domain.Role) error {
	_, err := tx.Exec(ctx, `INSERT INTO preferences (subject, role) VALUES ($1, $2)
		ON CONFLICT (subject) DO UPDATE SET role = $2 WHERE preferences.role IS DISTINCT FROM $2`, subject, string(role))
	return err
}

// ReplaceNotifyGrants replaces proxy's notification grants with grants (patient → expiry).
func (s *Store) ReplaceNotifyGrants(ctx context.Context, tx pgx.Tx, proxy string, grants map[string]time.Time) error {
	if _, err := tx.Exec(ctx, `DELETE FROM notify_grants WHERE proxy_subject = $1`, proxy); err != nil {
		return fmt.Errorf("clear grants: %w", err)
	}
	for patient, exp := range grants {
		if _, err := tx.Exec(ctx, `INSERT INTO notify_grants (proxy_subject, patient_id, expires_at) VALUES ($1,$2,$3)`, proxy, patient, exp); err != nil {
			return fmt.Errorf("store grant: %w", err)
		}
	}
	return nil
}

// LoadPreferencesMany reads the preferences of subjects without opening contact points.
func (s *Store) LoadPreferencesMany(ctx context.Context, tx pgx.Tx, subjects []string) (map[string]domain.Preferences, error) {
	rows, err := tx.Query(ctx, `SELECT `+prefColumns+` FROM preferences WHERE subject = ANY($1)`, subjects)
	if err != nil {
		return nil, fmt.Errorf("load preferences: %w", err)
	}
	defer rows.Close()
	out := map[string]domain.Preferences{}
	for rows.Next() {
		r, err := scanPref(rows)
		if err != nil {
			return nil, fmt.Errorf("load preferences: %w", err)
		}
		out[r.p.Subject] = r.p
	}
	return out, rows.Err()
}

// PoolSubscribers lists the people subscribed to pool's alerts.
func (s *Store) PoolSubscribers(ctx context.Context, tx pgx.Tx, pool string) ([]string, error) {
	return collectStrings(tx.Query(ctx, `SELECT subject FROM preferences WHERE pool_subscriptions @> ARRAY[$1::text]`, pool))
}

// NotifyProxies lists the proxies whose notification grant for patient is active at now.
func (s *Store) NotifyProxies(ctx context.Context, tx pgx.Tx, patient string, now time.Time) ([]string, error) {
	return collectStrings(tx.Query(ctx, `SELECT proxy_subject FROM notify_grants WHERE patient_id = $1 AND expires_at > $2`, patient, now))
}

func collectStrings(rows pgx.Rows, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// InsertDelivery adds d unless a delivery with its idempotency key exists; inserted reports
// which. d.ID is set when empty.
func (s *Store) InsertDelivery(ctx context.Context, tx pgx.Tx, d *domain.Delivery) (bool, error) {
	if d.ID == "" {
		d.ID = uuid.Must(uuid.NewV7()).String()
	}
	var next *time.Time
	if !d.NextAttemptAt.IsZero() {
		next = &d.NextAttemptAt
	}
	tag, err := tx.Exec(ctx, `INSERT INTO deliveries (id, idempotency_key, event_id, recipient_subject, channel, kind,
		message_id, thread_id, pool_id, patient_id, sensitivity, message_time, item_count, status, suppression_code, next_attempt_at)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)
		ON CONFLICT ON CONSTRAINT deliveries_idempotency_key DO NOTHING`,
		d.ID, d.IdempotencyKey, d.EventID, d.RecipientSubject, int16(d.Channel), int16(d.Kind), d.MessageID, d.ThreadID,
		d.PoolID, d.PatientID, d.Sensitivity, d.MessageTime, max(d.Count, 1), int16(d.Status), d.SuppressionCode, next)
	if err != nil {
		return false, fmt.Errorf("insert delivery: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// MergeIntoOpenDigest folds a message into the recipient's open (still pending) digest for the
// thread and channel, and reports whether there was one.
func (s *Store) MergeIntoOpenDigest(ctx context.Context, tx pgx.Tx, recipient string, ch domain.Channel, thread, messageID string, msgTime time.Time) (bool, error) {
	tag, err := tx.Exec(ctx, `UPDATE deliveries SET item_count = item_count + 1,
		message_id = CASE WHEN $5 >= message_time THEN $4 ELSE message_id END,
		message_time = GREATEST(message_time, $5), updated_at = now()
		WHERE id = (SELECT id FROM deliveries WHERE recipient_subject = $1 AND channel = $2 AND thread_id = $3
		            AND kind = 2 AND status = 1 ORDER BY created_at DESC LIMIT 1 FOR UPDATE)`,
		recipient, int16(ch), thread, messageID, msgTime)
	if err != nil {
		return false, fmt.Errorf("merge into digest: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// InsertReminder schedules r unless one exists for the recipient and message.
func (s *Store) InsertReminder(ctx context.Context, tx pgx.Tx, r domain.Reminder) error {
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

// MessageTime returns when message was written, as far as this service saw it (from a
// reminder or a delivery of reader's).
func (s *Store) MessageTime(ctx context.Context, tx pgx.Tx, reader, messageID string) (time.Time, bool, error) {
	var t time.Time
	err := tx.QueryRow(ctx, `SELECT message_time FROM reminders WHERE recipient_subject = $1 AND message_id = $2
		UNION ALL SELECT message_time FROM deliveries WHERE recipient_subject = $1 AND message_id = $2 LIMIT 1`, reader, messageID).Scan(&t)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, false, nil
	}
	return t, err == nil, err
}

// CancelForRead cancels reader's pending reminders and unsent deliveries in thread for messages
// written at or before cutoff.
func (s *Store) CancelForRead(ctx context.Context, tx pgx.Tx, reader, thread string, cutoff time.Time) (int64, int64, error) {
	r, err := tx.Exec(ctx, `UPDATE reminders SET status = 2 WHERE recipient_subject = $1 AND thread_id = $2 AND status = 1 AND message_time <= $3`, reader, thread, cutoff)
	if err != nil {
		return 0, 0, fmt.Errorf("cancel reminders: %w", err)
	}
	d, err := tx.Exec(ctx, `UPDATE deliveries SET status = 5, suppression_code = 'already_read', updated_at = now(), next_attempt_at = NULL
		WHERE recipient_subject = $1 AND thread_id = $2 AND status IN (1, 3) AND message_time <= $3`, reader, thread, cutoff)
	if err != nil {
		return 0, 0, fmt.Errorf("suppress deliveries: %w", err)
	}
	return r.RowsAffected(), d.RowsAffected(), nil
}

const deliveryColumns = `id, idempotency_key, event_id, recipient_subject, channel, kind, message_id, thread_id, pool_id,
	patient_id, sensitivity, message_time, item_count, status, suppression_code, attempts, next_attempt_at, created_at, updated_at`

func scanDelivery(row pgx.Row) (domain.Delivery, error) {
	var d domain.Delivery
	var id uuid.UUID
	var ch, kind, status int16
	var next *time.Time
	err := row.Scan(&id, &d.IdempotencyKey, &d.EventID, &d.RecipientSubject, &ch, &kind, &d.MessageID, &d.ThreadID, &d.PoolID,
		&d.PatientID, &d.Sensitivity, &d.MessageTime, &d.Count, &status, &d.SuppressionCode, &d.Attempts, &next, &d.CreatedAt, &d.UpdatedAt)
	d.ID, d.Channel, d.Kind, d.Status = id.String(), domain.Channel(ch), domain.Kind(kind), domain.Status(status)
	if next != nil {
		d.NextAttemptAt = *next
	}
	return d, err
}

// ClaimDue claims up to limit due deliveries for sending: they move to SENDING with the attempt
// counted and a lease, so no other worker takes them (SKIP LOCKED lets replicas share the work).
func (s *Store) ClaimDue(ctx context.Context, limit int, lease time.Duration) ([]domain.Delivery, error) {
	rows, err := s.Pool.Query(ctx, `UPDATE deliveries SET status = 100, attempts = attempts + 1,
		claimed_until = now() + make_interval(secs => $2), updated_at = now()
		WHERE id IN (SELECT id FROM deliveries WHERE status IN (1, 3) AND next_attempt_at <= now()
		             ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
		RETURNING `+deliveryColumns, limit, lease.Seconds())
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (domain.Delivery, error) { return scanDelivery(r) })
}

// NextDue returns when the next delivery falls due (zero when none is waiting).
func (s *Store) NextDue(ctx context.Context) (time.Time, error) {
	var t *time.Time
	err := s.Pool.QueryRow(ctx, `SELECT min(next_attempt_at) FROM deliveries WHERE status IN (1, 3)`).Scan(&t)
	if err != nil || t == nil {
		return time.Time{}, err
	}
	return *t, nil
}

// Release returns a claimed delivery to PENDING at at without counting the attempt (quiet hours).
func (s *Store) Release(ctx context.Context, id string, at time.Time) error {
	_, err := s.Pool.Exec(ctx, `UPDATE deliveries SET status = 1, attempts = attempts - 1, next_attempt_at = $2,
		claimed_until = NULL, updated_at = now() WHERE id = $1 AND status = 100`, id, at)
	return err
}

// Suppress marks a delivery SUPPRESSED with code.
func (s *Store) Suppress(ctx context.Context, tx pgx.Tx, id, code string) error {
	_, err := tx.Exec(ctx, `UPDATE deliveries SET status = 5, suppression_code = $2, claimed_until = NULL,
		next_attempt_at = NULL, updated_at = now() WHERE id = $1`, id, code)
	return err
}

// FinishAttempt records attempt a of delivery id and moves the delivery to a.Status (RETRYING
// with a.NextAttempt, SENT or FAILED).
func (s *Store) FinishAttempt(ctx context.Context, tx pgx.Tx, id string, a domain.Attempt) error {
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
		return fmt.Errorf("finish delivery %s: no longer claimed", id)
	}
	_, err = tx.Exec(ctx, `INSERT INTO delivery_attempts (delivery_id, attempt, status, start_time, finish_time, error_code, next_attempt_time)
		VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (delivery_id, attempt) DO NOTHING`,
		id, a.Attempt, int16(a.Status), a.StartTime, a.FinishTime, a.ErrorCode, next)
	if err != nil {
		return fmt.Errorf("log attempt: %w", err)
	}
	return nil
}

// StaleClaims locks up to limit deliveries whose claim lease ran out: their worker died between
// claiming and recording the outcome.
func (s *Store) StaleClaims(ctx context.Context, tx pgx.Tx, limit int) ([]domain.Delivery, error) {
	rows, err := tx.Query(ctx, `SELECT `+deliveryColumns+` FROM deliveries WHERE status = 100 AND claimed_until < now()
		ORDER BY claimed_until LIMIT $1 FOR UPDATE SKIP LOCKED`, limit)
	if err != nil {
		return nil, fmt.Errorf("find stale claims: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (domain.Delivery, error) { return scanDelivery(r) })
}

// DueReminders locks up to limit pending reminders due at now and marks them fired; the caller
// creates their deliveries in the same transaction.
func (s *Store) DueReminders(ctx context.Context, tx pgx.Tx, limit int) ([]domain.Reminder, error) {
	rows, err := tx.Query(ctx, `UPDATE reminders SET status = 3 WHERE id IN (
		SELECT id FROM reminders WHERE status = 1 AND due_at <= now() ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED)
		RETURNING id, recipient_subject, thread_id, message_id, pool_id, patient_id, sensitivity, message_time, due_at`, limit)
	if err != nil {
		return nil, fmt.Errorf("due reminders: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (domain.Reminder, error) {
		var m domain.Reminder
		var id uuid.UUID
		err := r.Scan(&id, &m.RecipientSubject, &m.ThreadID, &m.MessageID, &m.PoolID, &m.PatientID, &m.Sensitivity, &m.MessageTime, &m.DueAt)
		m.ID = id.String()
		return m, err
	})
}

// Cursor is a keyset position in the delivery log (newest first).
type Cursor struct {
	CreatedAt time.Time
	ID        string
}

// ListDeliveries returns up to limit deliveries matching f after cur, newest first, each with
// its attempts.
func (s *Store) ListDeliveries(ctx context.Context, f domain.DeliveryFilter, cur *Cursor, limit int) ([]domain.Delivery, error) {
	sql := `SELECT ` + deliveryColumns + ` FROM deliveries WHERE recipient_subject = $1
		AND ($2 = 0 OR channel = $2) AND ($3 = 0 OR (CASE WHEN status = 100 THEN 1 ELSE status END) = $3)
		AND ($4 = '' OR message_id = $4) AND ($5::timestamptz IS NULL OR created_at >= $5)
		AND ($6::timestamptz IS NULL OR created_at < $6)
		AND ($7::timestamptz IS NULL OR (created_at, id) < ($7, $8::uuid))
		ORDER BY created_at DESC, id DESC LIMIT $9`
	var start, end, after *time.Time
	afterID := uuid.Nil.String()
	if !f.Start.IsZero() {
		start = &f.Start
	}
	if !f.End.IsZero() {
		end = &f.End
	}
	if cur != nil {
		after, afterID = &cur.CreatedAt, cur.ID
	}
	rows, err := s.Pool.Query(ctx, sql, f.Recipient, int16(f.Channel), int16(f.Status), f.MessageID, start, end, after, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (domain.Delivery, error) { return scanDelivery(r) })
	if err != nil || len(out) == 0 {
		return out, err
	}
	ids := make([]string, len(out))
	idx := map[string]int{}
	for i, d := range out {
		ids[i], idx[d.ID] = d.ID, i
	}
	arows, err := s.Pool.Query(ctx, `SELECT delivery_id, attempt, status, start_time, finish_time, error_code, next_attempt_time
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

// Template returns the stored override of a template.
func (s *Store) Template(ctx context.Context, kind domain.Kind, ch domain.Channel, locale string) (domain.Template, bool, error) {
	t := domain.Template{Kind: kind, Channel: ch, Locale: locale}
	err := s.Pool.QueryRow(ctx, `SELECT subject_template, body_template, version, update_time, updated_by FROM templates
		WHERE kind = $1 AND channel = $2 AND locale = $3`, int16(kind), int16(ch), locale).Scan(&t.Subject, &t.Body, &t.Version, &t.UpdateTime, &t.UpdatedBy)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, false, nil
	}
	return t, err == nil, err
}

// Templates returns every stored override.
func (s *Store) Templates(ctx context.Context) ([]domain.Template, error) {
	rows, err := s.Pool.Query(ctx, `SELECT kind, channel, locale, subject_template, body_template, version, update_time, updated_by FROM templates`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (domain.Template, error) {
		var t domain.Template
		var k, c int16
		err := r.Scan(&k, &c, &t.Locale, &t.Subject, &t.Body, &t.Version, &t.UpdateTime, &t.UpdatedBy)
		t.Kind, t.Channel = domain.Kind(k), domain.Channel(c)
		return t, err
	})
}

// UpsertTemplate stores t if the stored version is expectVersion (0: no check; a template never
// stored has version 0) and returns it with its new version.
func (s *Store) UpsertTemplate(ctx context.Context, tx pgx.Tx, t domain.Template, expectVersion int64, by string) (domain.Template, error) {
	var current int64
	err := tx.QueryRow(ctx, `SELECT version FROM templates WHERE kind = $1 AND channel = $2 AND locale = $3 FOR UPDATE`,
		int16(t.Kind), int16(t.Channel), t.Locale).Scan(&current)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return t, err
	}
	if expectVersion != 0 && expectVersion != current {
		return t, ErrVersionMismatch
	}
	err = tx.QueryRow(ctx, `INSERT INTO templates (kind, channel, locale, subject_template, body_template, version, update_time, updated_by)
		VALUES ($1,$2,$3,$4,$5,$6,now(),$7) ON CONFLICT (kind, channel, locale) DO UPDATE SET subject_template = $4,
		body_template = $5, version = $6, update_time = now(), updated_by = $7 RETURNING version, update_time`,
		int16(t.Kind), int16(t.Channel), t.Locale, t.Subject, t.Body, current+1, by).Scan(&t.Version, &t.UpdateTime)
	t.UpdatedBy, t.Default = by, false
	return t, err
}
