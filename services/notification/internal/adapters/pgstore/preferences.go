package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

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

// OwnPreferences implements domain.PreferencesRepository.
func (s *Store) OwnPreferences(ctx context.Context, who domain.Identity) (p domain.Preferences, err error) {
	defer refuse(&err)
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		if err := recordIdentity(ctx, tx, who); err != nil {
			return err
		}
		var err error
		p, err = s.load(ctx, tx, who.Subject, true, "")
		return err
	})
	return p, err
}

// UpdatePreferences implements domain.PreferencesRepository.
func (s *Store) UpdatePreferences(ctx context.Context, who domain.Identity, update func(*domain.Preferences) ([]outbox.Event, error)) (p domain.Preferences, err error) {
	defer refuse(&err)
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		if err := recordIdentity(ctx, tx, who); err != nil {
			return err
		}
		cur, err := s.load(ctx, tx, who.Subject, true, " FOR UPDATE")
		if err != nil {
			return err
		}
		audit, err := update(&cur)
		if err != nil {
			return err
		}
		if p, err = s.save(ctx, tx, cur); err != nil {
			return err
		}
		return outbox.Add(ctx, tx, audit...)
	})
	return p, err
}

// Preferences implements domain.PreferencesRepository.
func (s *Store) Preferences(ctx context.Context, subject string) (p domain.Preferences, err error) {
	defer refuse(&err)
	return s.load(ctx, s.pool, subject, false, "")
}

// load reads subject's preferences (DefaultPreferences when none are stored), opening the
// contact points when open is set (a Vault call on a cold cache); lock is appended to the query.
func (s *Store) load(ctx context.Context, q queryer, subject string, open bool, lock string) (domain.Preferences, error) {
	r, err := scanPref(q.QueryRow(ctx, `SELECT `+prefColumns+` FROM preferences WHERE subject = $1`+lock, subject))
	if errors.Is(err, pgx.ErrNoRows) {
		return domain.DefaultPreferences(subject), nil
	}
	if err != nil {
		return domain.Preferences{}, fmt.Errorf("load preferences: %w", err)
	}
	if open && len(r.sealed) > 0 {
		if err := s.open(ctx, q, &r); err != nil {
			return domain.Preferences{}, err
		}
	}
	return r.p, nil
}

// PreferencesOf implements domain.PreferencesRepository.
func (s *Store) PreferencesOf(ctx context.Context, subjects []string) (_ map[string]domain.Preferences, err error) {
	defer refuse(&err)
	return preferencesOf(ctx, s.pool, subjects)
}

func preferencesOf(ctx context.Context, q queryer, subjects []string) (map[string]domain.Preferences, error) {
	rows, err := q.Query(ctx, `SELECT `+prefColumns+` FROM preferences WHERE subject = ANY($1)`, subjects)
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

// ContactPoint implements domain.PreferencesRepository.
func (s *Store) ContactPoint(ctx context.Context, subject string, c domain.Channel) (_ string, err error) {
	defer refuse(&err)
	col, ok := channelColumns[c]
	if !ok {
		return "", nil
	}
	var sealed []byte
	var wrapped *string
	err = s.pool.QueryRow(ctx, `SELECT p.`+col+`_address, k.wrapped_dek FROM preferences p
		LEFT JOIN person_keys k ON k.subject = p.subject WHERE p.subject = $1`, subject).Scan(&sealed, &wrapped)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && sealed == nil {
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

func (s *Store) open(ctx context.Context, q queryer, r *prefRow) error {
	wrapped, err := personKey(ctx, q, r.p.Subject)
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

func personKey(ctx context.Context, q queryer, subject string) (string, error) {
	var wrapped string
	err := q.QueryRow(ctx, `SELECT wrapped_dek FROM person_keys WHERE subject = $1`, subject).Scan(&wrapped)
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
	if w, err := personKey(ctx, tx, subject); err != nil || w != "" {
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
	return personKey(ctx, tx, subject)
}

// save stores p (every field, contact points sealed) and returns it with its new version and
// time. The caller holds the row's lock.
func (s *Store) save(ctx context.Context, tx pgx.Tx, p domain.Preferences) (domain.Preferences, error) {
	var sealed [4][]byte
	var wrapped string
	var err error
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
		p.Quiet.Enabled, int16(p.Quiet.StartMinute), int16(p.Quiet.EndMinute), p.Quiet.TimeZone, //nolint:gosec // G115: minutes are 0..1439 (Preferences.Validate)
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

// recordIdentity records the role who acted in, without touching other settings (creating a
// default row when none exists), and replaces a proxy's notification grants.
func recordIdentity(ctx context.Context, tx pgx.Tx, who domain.Identity) error {
	_, err := tx.Exec(ctx, `INSERT INTO preferences (subject, role) VALUES ($1, $2)
		ON CONFLICT (subject) DO UPDATE SET role = $2 WHERE preferences.role IS DISTINCT FROM $2`, who.Subject, string(who.Role))
	if err != nil {
		return fmt.Errorf("record role: %w", err)
	}
	if who.NotifyGrants == nil {
		return nil
	}
	if _, err := tx.Exec(ctx, `DELETE FROM notify_grants WHERE proxy_subject = $1`, who.Subject); err != nil {
		return fmt.Errorf("clear grants: %w", err)
	}
	for patient, exp := range who.NotifyGrants {
		if _, err := tx.Exec(ctx, `INSERT INTO notify_grants (proxy_subject, patient_id, expires_at) VALUES ($1,$2,$3)`, who.Subject, patient, exp); err != nil {
			return fmt.Errorf("store grant: %w", err)
		}
	}
	return nil
}

// PoolSubscribers implements domain.PreferencesRepository.
func (s *Store) PoolSubscribers(ctx context.Context, pool string) (_ []string, err error) {
	defer refuse(&err)
	return collectStrings(s.pool.Query(ctx, `SELECT subject FROM preferences WHERE pool_subscriptions @> ARRAY[$1::text]`, pool))
}

// NotifyProxies implements domain.PreferencesRepository.
func (s *Store) NotifyProxies(ctx context.Context, patient string, at time.Time) (_ []string, err error) {
	defer refuse(&err)
	return collectStrings(s.pool.Query(ctx, `SELECT proxy_subject FROM notify_grants WHERE patient_id = $1 AND expires_at > $2`, patient, at))
}
