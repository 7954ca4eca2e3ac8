package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// hoursJSON is how active hours are stored (care_pools.active_hours).
type hoursJSON struct {
	TimeZone string       `json:"time_zone,omitempty"`
	Windows  []windowJSON `json:"windows,omitempty"`
}

type windowJSON struct {
	Day   int `json:"day"`
	Open  int `json:"open"`
	Close int `json:"close"`
}

func encodeHours(h domain.ActiveHours) ([]byte, error) {
	out := hoursJSON{TimeZone: h.TimeZone}
	for _, w := range h.Windows {
		out.Windows = append(out.Windows, windowJSON(w))
	}
	return json.Marshal(out)
}

func decodeHours(b []byte) (domain.ActiveHours, error) {
	var in hoursJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return domain.ActiveHours{}, fmt.Errorf("stored active hours: %w", err)
	}
	h := domain.ActiveHours{TimeZone: in.TimeZone}
	for _, w := range in.Windows {
		h.Windows = append(h.Windows, domain.HoursWindow(w))
	}
	return h, nil
}

// poolCols are a pool's columns with its patients, member count and settings (p is
// care_pools, s the LEFT JOINed pool_settings).
const poolCols = `p.id, p.name, p.organisation, p.open_to_all_patients, p.active, p.active_hours,
	p.created_at, p.updated_at, p.version,
	coalesce((SELECT array_agg(pp.patient_id ORDER BY pp.patient_id) FROM care_pool_patients pp WHERE pp.pool_id = p.id), '{}'),
	(SELECT count(*) FROM care_pool_members m WHERE m.pool_id = p.id),
	coalesce(s.auto_reply_enabled, false), coalesce(s.auto_reply_text, ''), s.turnaround_seconds,
	coalesce(s.emergency_disclaimer, ''), coalesce(s.updated_at, p.created_at), coalesce(s.updated_by_subject, ''), coalesce(s.version, 0)`

const poolFrom = ` FROM care_pools p LEFT JOIN pool_settings s ON s.pool_id = p.id`

// scanPool reads poolCols (and, with mayWrite, one more boolean column).
func scanPool(row pgx.Row, mayWrite *bool) (domain.PoolView, error) {
	var v domain.PoolView
	p := &v.Pool
	var openToAll bool
	var hours []byte
	var members int64
	var turnaround *int64
	dest := []any{&p.ID, &p.Name, &p.Organisation, &openToAll, &p.Active, &hours, &p.CreatedAt, &p.UpdatedAt, &p.Version,
		&p.PatientIDs, &members,
		&v.Settings.AutoReplyEnabled, &v.Settings.AutoReplyText, &turnaround, &v.Settings.EmergencyDisclaimer,
		&v.Settings.UpdatedAt, &v.Settings.UpdatedBySubject, &v.Settings.Version}
	if mayWrite != nil {
		dest = append(dest, mayWrite)
	}
	if err := row.Scan(dest...); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return v, domain.ErrPoolNotFound
		}
		return v, err
	}
	p.ListedOnly, p.MemberCount, v.Settings.PoolID = !openToAll, int32(members), p.ID //nolint:gosec // G115: a pool's member count is far below 2^31
	if turnaround != nil {
		v.Settings.Turnaround = time.Duration(*turnaround) * time.Second
	}
	var err error
	p.Hours, err = decodeHours(hours)
	return v, err
}

// Pool implements domain.PoolRepository.
func (s *Store) Pool(ctx context.Context, id, patientID string) (domain.PoolView, error) {
	var may bool
	v, err := scanPool(s.pool.QueryRow(ctx, `SELECT `+poolCols+`,
		(p.open_to_all_patients OR EXISTS (SELECT 1 FROM care_pool_patients pp WHERE pp.pool_id = p.id AND pp.patient_id = $2))`+
		poolFrom+` WHERE p.id = $1`, id, patientID), &may)
	v.MayWrite = may && patientID != ""
	return v, dbError(err)
}

// Pools implements domain.PoolRepository.
func (s *Store) Pools(ctx context.Context, q domain.PoolQuery) ([]domain.PoolView, error) {
	sql := `SELECT ` + poolCols + poolFrom + ` WHERE (p.name, p.id) > ($1, $2)
		AND ($3 OR p.active)
		AND ($4 = '' OR p.open_to_all_patients OR EXISTS (SELECT 1 FROM care_pool_patients pp WHERE pp.pool_id = p.id AND pp.patient_id = $4))
		AND ($5::text[] IS NULL OR p.id = ANY($5))
		ORDER BY p.name, p.id LIMIT $6`
	var only []string
	if q.Only != nil {
		only = nonNil(q.Only)
	}
	rows, err := s.pool.Query(ctx, sql, q.AfterName, q.AfterID, q.IncludeInactive && q.WritableBy == "", q.WritableBy, only, q.Limit)
	if err != nil {
		return nil, dbError(err)
	}
	defer rows.Close()
	var out []domain.PoolView
	for rows.Next() {
		v, err := scanPool(rows, nil)
		if err != nil {
			return nil, dbError(err)
		}
		v.MayWrite = q.WritableBy != ""
		out = append(out, v)
	}
	return out, dbError(rows.Err())
}

// CreatePool implements domain.PoolRepository.
func (s *Store) CreatePool(ctx context.Context, p domain.Pool, rows []outbox.Event) (domain.Pool, error) {
	hours, err := encodeHours(p.Hours)
	if err != nil {
		return domain.Pool{}, err
	}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		added, err := insertIfAbsent(ctx, tx, `INSERT INTO care_pools (id, name, organisation, open_to_all_patients, active, active_hours, created_at, updated_at)
			VALUES ($1, $2, $3, $4, true, $5, $6, $6) ON CONFLICT DO NOTHING`, p.ID, p.Name, p.Organisation, !p.ListedOnly, hours, p.CreatedAt)
		if err != nil {
			return err
		}
		if !added {
			return domain.ErrPoolExists
		}
		if err := setPoolPatients(ctx, tx, p.ID, p.PatientIDs); err != nil {
			return err
		}
		return addOutbox(ctx, tx, rows)
	})
	p.Active, p.Version, p.UpdatedAt = true, 1, p.CreatedAt
	return p, err
}

func setPoolPatients(ctx context.Context, tx pgx.Tx, poolID string, patients []string) error {
	if _, err := tx.Exec(ctx, `DELETE FROM care_pool_patients WHERE pool_id = $1 AND NOT patient_id = ANY($2)`, poolID, nonNil(patients)); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO care_pool_patients (pool_id, patient_id) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING`, poolID, nonNil(patients))
	return err
}

// UpdatePool implements domain.PoolRepository. Activating or deactivating a pool republishes
// the membership entries of its members, which list active pools only.
func (s *Store) UpdatePool(ctx context.Context, id string, change func(domain.Pool) (domain.Pool, []outbox.Event, error)) (domain.Pool, error) {
	var out domain.Pool
	err := s.inDirectoryTx(ctx, func(tx pgx.Tx, d *directoryChange) error {
		cur, err := scanPool(tx.QueryRow(ctx, `SELECT `+poolCols+poolFrom+` WHERE p.id = $1 FOR UPDATE OF p`, id), nil)
		if err != nil {
			return err
		}
		next, rows, err := change(cur.Pool)
		if err != nil {
			return err
		}
		hours, err := encodeHours(next.Hours)
		if err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `UPDATE care_pools SET name = $2, organisation = $3, open_to_all_patients = $4, active = $5,
			active_hours = $6, updated_at = $7, version = version + 1 WHERE id = $1 RETURNING version`,
			id, next.Name, next.Organisation, !next.ListedOnly, next.Active, hours, next.UpdatedAt).Scan(&next.Version); err != nil {
			return err
		}
		patients := next.PatientIDs
		if !next.ListedOnly {
			patients = nil
		}
		if err := setPoolPatients(ctx, tx, id, patients); err != nil {
			return err
		}
		if next.Active != cur.Pool.Active {
			members, err := memberSubjects(ctx, tx, id)
			if err != nil {
				return err
			}
			d.publish(changes{members: members}, next.UpdatedAt)
		}
		out = next
		d.outbox(rows)
		return nil
	})
	if err != nil {
		return domain.Pool{}, err
	}
	return out, nil
}

func memberSubjects(ctx context.Context, tx pgx.Tx, poolID string) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT subject FROM care_pool_members WHERE pool_id = $1`, poolID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// lockPool locks a pool's row, so that membership changes and deactivation do not interleave;
// ErrPoolNotFound when there is none.
func lockPool(ctx context.Context, tx pgx.Tx, poolID string) error {
	var id string
	err := tx.QueryRow(ctx, `SELECT id FROM care_pools WHERE id = $1 FOR UPDATE`, poolID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return domain.ErrPoolNotFound
	}
	return err
}

// SetPoolMember implements domain.PoolRepository.
func (s *Store) SetPoolMember(ctx context.Context, m domain.PoolMember, rowsFor func(added bool) ([]outbox.Event, error)) (domain.PoolMember, bool, error) {
	var added bool
	err := s.inDirectoryTx(ctx, func(tx pgx.Tx, d *directoryChange) error {
		if err := lockPool(ctx, tx, m.PoolID); err != nil {
			return err
		}
		// xmax = 0 tells an inserted row from an updated one.
		if err := tx.QueryRow(ctx, `INSERT INTO care_pool_members (pool_id, subject, role, added_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (pool_id, subject) DO UPDATE SET role = excluded.role RETURNING (xmax = 0), added_at`,
			m.PoolID, m.Subject, smallint(m.Role), m.AddedAt).Scan(&added, &m.AddedAt); err != nil {
			return err
		}
		rows, err := rowsFor(added)
		if err != nil {
			return err
		}
		d.publish(changes{members: []string{m.Subject}}, m.AddedAt)
		d.outbox(rows)
		return nil
	})
	if err != nil {
		return domain.PoolMember{}, false, err
	}
	return m, added, nil
}

// RemovePoolMember implements domain.PoolRepository.
func (s *Store) RemovePoolMember(ctx context.Context, poolID, subject string, rows []outbox.Event) (int32, error) {
	var assigned int32
	err := s.inDirectoryTx(ctx, func(tx pgx.Tx, d *directoryChange) error {
		if err := lockPool(ctx, tx, poolID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM care_pool_members WHERE pool_id = $1 AND subject = $2`, poolID, subject)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return domain.ErrNotPoolMember
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM threads WHERE pool_id = $1 AND assignee_subject = $2 AND status = $3`,
			poolID, subject, int16(domain.StatusAssigned)).Scan(&assigned); err != nil {
			return err
		}
		d.publish(changes{members: []string{subject}}, time.Now())
		d.outbox(rows)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return assigned, nil
}

// PoolMembers implements domain.PoolRepository.
func (s *Store) PoolMembers(ctx context.Context, poolID, afterSubject string, limit int) ([]domain.PoolMember, error) {
	rows, err := s.pool.Query(ctx, `SELECT subject, role, added_at FROM care_pool_members WHERE pool_id = $1 AND subject > $2
		ORDER BY subject LIMIT $3`, poolID, afterSubject, limit)
	if err != nil {
		return nil, dbError(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (domain.PoolMember, error) {
		m := domain.PoolMember{PoolID: poolID}
		var role int16
		err := r.Scan(&m.Subject, &role, &m.AddedAt)
		m.Role = directoryv1.PoolRole(role)
		return m, err
	})
	return out, dbError(err)
}
