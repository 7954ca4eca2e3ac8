package pgstore

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

// Template implements domain.TemplateRepository.
func (s *Store) Template(ctx context.Context, kind domain.Kind, ch domain.Channel, locale string) (t domain.Template, ok bool, err error) {
	defer refuse(&err)
	t = domain.Template{Kind: kind, Channel: ch, Locale: locale}
	err = s.pool.QueryRow(ctx, `SELECT subject_template, body_template, version, update_time, updated_by FROM templates
		WHERE kind = $1 AND channel = $2 AND locale = $3`, int16(kind), int16(ch), locale).Scan(&t.Subject, &t.Body, &t.Version, &t.UpdateTime, &t.UpdatedBy)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, false, nil
	}
	return t, err == nil, err
}

// Templates implements domain.TemplateRepository.
func (s *Store) Templates(ctx context.Context) (_ []domain.Template, err error) {
	defer refuse(&err)
	rows, err := s.pool.Query(ctx, `SELECT kind, channel, locale, subject_template, body_template, version, update_time, updated_by FROM templates`)
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

// UpdateTemplate implements domain.TemplateRepository.
func (s *Store) UpdateTemplate(ctx context.Context, key domain.Template, update func(*domain.Template) ([]outbox.Event, error)) (t domain.Template, err error) {
	defer refuse(&err)
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		cur := domain.Template{Kind: key.Kind, Channel: key.Channel, Locale: key.Locale}
		err := tx.QueryRow(ctx, `SELECT subject_template, body_template, version, update_time, updated_by FROM templates
			WHERE kind = $1 AND channel = $2 AND locale = $3 FOR UPDATE`, int16(cur.Kind), int16(cur.Channel), cur.Locale).
			Scan(&cur.Subject, &cur.Body, &cur.Version, &cur.UpdateTime, &cur.UpdatedBy)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		stored := cur.Version
		audit, err := update(&cur)
		if err != nil {
			return err
		}
		cur.Kind, cur.Channel, cur.Locale, cur.Version = key.Kind, key.Channel, key.Locale, stored+1
		err = tx.QueryRow(ctx, `INSERT INTO templates (kind, channel, locale, subject_template, body_template, version, update_time, updated_by)
			VALUES ($1,$2,$3,$4,$5,$6,now(),$7) ON CONFLICT (kind, channel, locale) DO UPDATE SET subject_template = $4,
			body_template = $5, version = $6, update_time = now(), updated_by = $7 RETURNING version, update_time`,
			int16(cur.Kind), int16(cur.Channel), cur.Locale, cur.Subject, cur.Body, cur.Version, cur.UpdatedBy).Scan(&cur.Version, &cur.UpdateTime)
		if err != nil {
			return err
		}
		cur.Default = false
		t = cur
		return outbox.Add(ctx, tx, audit...)
	})
	return t, err
}
