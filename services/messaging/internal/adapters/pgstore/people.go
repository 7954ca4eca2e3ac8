package pgstore

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

const personCols = `subject, coalesce(external_id, ''), coalesce(user_name, ''), display_name_sealed,
	coalesce(wrapped_dek, ''), staff_display_name, roles, status, patient_id, source, created_at, updated_at`

// personInsertCols are the columns personCols reads, in its order, for writing.
const personInsertCols = `subject, external_id, user_name, display_name_sealed, wrapped_dek, staff_display_name, roles,
	status, patient_id, source, created_at, updated_at`

func scanPerson(row pgx.Row) (domain.Person, error) {
	var p domain.Person
	var roles []int16
	var status, source int16
	err := row.Scan(&p.Subject, &p.ExternalID, &p.UserName, &p.DisplayNameSealed, &p.WrappedDEK, &p.StaffDisplayName,
		&roles, &status, &p.PatientID, &source, &p.CreatedAt, &p.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return domain.Person{}, domain.ErrPersonNotFound
	}
	for _, r := range roles {
		p.Roles = append(p.Roles, commonv1.Role(r))
	}
	p.Status, p.Source = directoryv1.PersonStatus(status), domain.PersonSource(source)
	return p, err
}

// People implements domain.PersonRepository.
func (s *Store) People(ctx context.Context, q domain.PersonQuery) ([]domain.Person, error) {
	args := []any{q.AfterSubject}
	where := []string{"subject > $1"}
	if q.UserName != "" {
		args = append(args, q.UserName)
		// SCIM's userName is case-insensitive, and so is the unique index on it.
		where = append(where, "lower(user_name) = lower($"+strconv.Itoa(len(args))+")")
	}
	if q.ExternalID != "" {
		args = append(args, q.ExternalID)
		where = append(where, "external_id = $"+strconv.Itoa(len(args)))
	}
	if len(q.Sources) > 0 {
		sources := make([]int16, len(q.Sources))
		for i, src := range q.Sources {
			sources[i] = int16(src)
		}
		args = append(args, sources)
		where = append(where, "source = ANY($"+strconv.Itoa(len(args))+")")
	}
	args = append(args, q.Limit)
	rows, err := s.pool.Query(ctx, `SELECT `+personCols+` FROM people WHERE `+strings.Join(where, " AND ")+
		` ORDER BY subject LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return nil, dbError(err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (domain.Person, error) { return scanPerson(row) })
	return out, dbError(err)
}

// Person implements domain.PersonRepository.
func (s *Store) Person(ctx context.Context, subject string) (domain.Person, error) {
	p, err := scanPerson(s.pool.QueryRow(ctx, `SELECT `+personCols+` FROM people WHERE subject = $1`, subject))
	return p, dbError(err)
}

// PeopleBySubject implements domain.PersonRepository.
func (s *Store) PeopleBySubject(ctx context.Context, subjects []string) (map[string]domain.Person, error) {
	out := map[string]domain.Person{}
	if len(subjects) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+personCols+` FROM people WHERE subject = ANY($1)`, subjects)
	if err != nil {
		return nil, dbError(err)
	}
	people, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (domain.Person, error) { return scanPerson(row) })
	for _, p := range people {
		out[p.Subject] = p
	}
	return out, dbError(err)
}

// PutPerson implements domain.PersonRepository.
func (s *Store) PutPerson(ctx context.Context, subject string, change func(domain.Person, bool) (domain.Person, []outbox.Event, error)) (domain.Person, error) {
	var out domain.Person
	err := s.inDirectoryTx(ctx, func(tx pgx.Tx, d *directoryChange) error {
		cur, err := scanPerson(tx.QueryRow(ctx, `SELECT `+personCols+` FROM people WHERE subject = $1 FOR UPDATE`, subject))
		exists := err == nil
		if err != nil && !errors.Is(err, domain.ErrPersonNotFound) {
			return err
		}
		next, rows, err := change(cur, exists)
		if err != nil {
			return err
		}
		if exists {
			// The upsert keeps the row's creation time and patient record; return them as stored.
			next.CreatedAt, next.PatientID = cur.CreatedAt, cur.PatientID
		}
		if err := upsertPerson(ctx, tx, next); err != nil {
			return err
		}
		d.publish(changes{people: []string{next.Subject}}, next.UpdatedAt)
		out = next
		d.outbox(rows)
		return nil
	})
	if err != nil {
		return domain.Person{}, err
	}
	return out, nil
}

// RecordFirstContact implements domain.PersonRepository.
func (s *Store) RecordFirstContact(ctx context.Context, p domain.Person, rows []outbox.Event) (bool, error) {
	var added bool
	err := s.inDirectoryTx(ctx, func(tx pgx.Tx, d *directoryChange) error {
		var err error
		added, err = insertIfAbsent(ctx, tx, `INSERT INTO people (`+personInsertCols+`)
			VALUES ($1, NULL, NULL, $2, $3, $4, $5, $6, $7, $8, $9, $9) ON CONFLICT DO NOTHING`,
			p.Subject, p.DisplayNameSealed, nullText(p.WrappedDEK), p.StaffDisplayName, roleCodes(p.Roles), smallint(p.Status), p.PatientID, int16(p.Source), p.CreatedAt)
		if err != nil || !added {
			return err
		}
		d.publish(changes{people: []string{p.Subject}}, p.CreatedAt)
		d.outbox(rows)
		return nil
	})
	if err != nil {
		return false, err
	}
	return added, nil
}

// NamePerson implements domain.PersonRepository.
func (s *Store) NamePerson(ctx context.Context, subject string, sealed []byte, wrappedDEK, staffName string, at time.Time, rows []outbox.Event) (bool, error) {
	var named bool
	err := s.inDirectoryTx(ctx, func(tx pgx.Tx, d *directoryChange) error {
		tag, err := tx.Exec(ctx, `UPDATE people SET display_name_sealed = $2, wrapped_dek = $3, staff_display_name = $4, updated_at = $5
			WHERE subject = $1 AND display_name_sealed IS NULL`, subject, sealed, nullText(wrappedDEK), staffName, at)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		named = true
		d.publish(changes{people: []string{subject}}, at)
		d.outbox(rows)
		return nil
	})
	if err != nil {
		return false, err
	}
	return named, nil
}

func upsertPerson(ctx context.Context, tx pgx.Tx, p domain.Person) error {
	_, err := tx.Exec(ctx, `INSERT INTO people (`+personInsertCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		ON CONFLICT (subject) DO UPDATE SET external_id = excluded.external_id, user_name = excluded.user_name,
			display_name_sealed = excluded.display_name_sealed, wrapped_dek = excluded.wrapped_dek,
			staff_display_name = excluded.staff_display_name, roles = excluded.roles, status = excluded.status,
			source = excluded.source, updated_at = excluded.updated_at`,
		p.Subject, nullText(p.ExternalID), nullText(p.UserName), p.DisplayNameSealed, nullText(p.WrappedDEK), p.StaffDisplayName,
		roleCodes(p.Roles), smallint(p.Status), p.PatientID, int16(p.Source), p.CreatedAt, p.UpdatedAt)
	if pg.IsUniqueViolation(err, "people_external_id") || pg.IsUniqueViolation(err, "people_user_name") {
		return domain.ErrPersonIDTaken
	}
	return err
}

func roleCodes(roles []commonv1.Role) []int16 {
	out := make([]int16, len(roles))
	for i, r := range roles {
		out[i] = smallint(r)
	}
	return out
}

// nullText stores "" as NULL, so that the unique indexes let many people have no value.
func nullText(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
