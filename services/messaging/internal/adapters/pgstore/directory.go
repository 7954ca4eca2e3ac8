package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	"github.com/securemsg/securemsg/services/internal/platform/directory"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// Seeded is what SeedDirectory added.
type Seeded struct {
	// Entries are the directory entries it put into the bucket.
	Entries []proto.Message
	// PoolSettings are the pools whose settings it stored.
	PoolSettings []string
}

// SeedDirectory inserts what of seed is missing and puts the entries of every person and
// application it touched into the directory bucket, in one commit; once committed it applies
// those entries locally (WithDirectory). A pool's settings are stored when it has none, even
// when the pool itself was there already, as updated by domain.SeedSubject.
func (s *Store) SeedDirectory(ctx context.Context, seed domain.DirectorySeed, now time.Time) (Seeded, error) {
	var entries []proto.Message
	var settings []string
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		touched := changes{}
		for _, a := range seed.Apps {
			kind, _ := a.KindValue()
			added, err := insertIfAbsent(ctx, tx, `INSERT INTO client_apps (client_id, kind, display_name, allowed_scopes, pool_ids, active, updated_at)
				VALUES ($1, $2, $3, $4, $5, true, $6) ON CONFLICT DO NOTHING`,
				a.ClientID, smallint(kind), a.DisplayName, nonNil(a.AllowedScopes), nonNil(a.PoolIDs), now)
			if err != nil {
				return err
			}
			if added {
				touched.apps = append(touched.apps, a.ClientID)
			}
		}
		for _, p := range seed.Pools {
			added, err := insertIfAbsent(ctx, tx, `INSERT INTO care_pools (id, name, organisation, open_to_all_patients, created_at, updated_at)
				VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT DO NOTHING`, p.ID, p.Name, p.Organisation, len(p.PatientIDs) == 0, now)
			if err != nil {
				return err
			}
			if added {
				for _, patient := range p.PatientIDs {
					if _, err := tx.Exec(ctx, `INSERT INTO care_pool_patients (pool_id, patient_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, p.ID, patient); err != nil {
						return err
					}
				}
			}
			if p.Settings != nil {
				st, _ := p.Settings.Values(p.ID)
				st.UpdatedAt, st.UpdatedBySubject = now, domain.SeedSubject
				// Version 0 inserts only when no row exists, so stored settings are never changed.
				_, added, err := savePoolSettings(ctx, tx, st, 0)
				if err != nil {
					return err
				}
				if added {
					settings = append(settings, p.ID)
				}
			}
		}
		for _, m := range seed.Members {
			role, _ := m.RoleValue()
			added, err := insertIfAbsent(ctx, tx, `INSERT INTO care_pool_members (pool_id, subject, role, added_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
				m.PoolID, m.Subject, smallint(role), now)
			if err != nil {
				return err
			}
			if added {
				touched.members = append(touched.members, m.Subject)
			}
		}
		for _, p := range seed.People {
			roles, _ := p.RoleValues()
			codes := make([]int16, len(roles))
			for i, r := range roles {
				codes[i] = smallint(r)
			}
			added, err := insertIfAbsent(ctx, tx, `INSERT INTO people (subject, status, roles, updated_at, created_at) VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING`,
				p.Subject, smallint(directoryv1.PersonStatus_PERSON_STATUS_ACTIVE), codes, now)
			if err != nil {
				return err
			}
			if added {
				touched.people = append(touched.people, p.Subject)
			}
		}
		for _, g := range seed.Grants {
			d, _ := g.Duration()
			added, err := insertIfAbsent(ctx, tx, `INSERT INTO proxy_grants (id, proxy_subject, patient_id, scopes, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
				g.ID, g.ProxySubject, g.PatientID, g.Scopes, now.Add(d), now)
			if err != nil {
				return err
			}
			if added {
				touched.grants = append(touched.grants, g.ProxySubject)
			}
		}
		var err error
		entries, err = s.publishDirectory(ctx, tx, touched, now)
		return err
	})
	if err != nil {
		return Seeded{}, err
	}
	s.applyDirectory(entries)
	return Seeded{Entries: entries, PoolSettings: settings}, nil
}

// changes names the directory entries a write touched.
type changes struct{ people, members, grants, apps []string }

func (c changes) empty() bool {
	return len(c.people) == 0 && len(c.members) == 0 && len(c.grants) == 0 && len(c.apps) == 0
}

// directoryChange is what one directory transaction asks to commit besides its own writes:
// the entries to rebuild and publish, and the outbox rows (audit records, events).
type directoryChange struct {
	changes changes
	at      time.Time
	rows    []outbox.Event
}

// publish asks for the entries named in c to be rebuilt from the rows as the transaction leaves
// them, versioned at at.
func (d *directoryChange) publish(c changes, at time.Time) { d.changes, d.at = c, at }

// outbox adds rows to the commit.
func (d *directoryChange) outbox(rows []outbox.Event) { d.rows = append(d.rows, rows...) }

// inDirectoryTx runs fn in one transaction that also publishes the directory entries and adds
// the outbox rows fn asked for, and once it commits applies the entries to this process's
// snapshot (WithDirectory): a change admits or refuses callers here from the next call on, and
// everywhere else once the relay has published it.
func (s *Store) inDirectoryTx(ctx context.Context, fn func(tx pgx.Tx, d *directoryChange) error) error {
	var entries []proto.Message
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		d := &directoryChange{}
		if err := fn(tx, d); err != nil {
			return err
		}
		if !d.changes.empty() {
			var err error
			if entries, err = s.publishDirectory(ctx, tx, d.changes, d.at); err != nil {
				return err
			}
		}
		return addOutbox(ctx, tx, d.rows)
	})
	if err != nil {
		return err
	}
	s.applyDirectory(entries)
	return nil
}

// publishDirectory rebuilds every entry named in c from the rows as tx sees them, each with a
// fresh version, and adds their puts to tx's outbox.
func (s *Store) publishDirectory(ctx context.Context, tx pgx.Tx, c changes, now time.Time) ([]proto.Message, error) {
	if s.directoryBucket == "" {
		return nil, errors.New("pgstore: no directory bucket configured")
	}
	var entries []proto.Message
	var rows []outbox.Event
	add := func(key string, e proto.Message, err error) error {
		if err != nil {
			return err
		}
		ev, err := directory.Put(s.directoryBucket, key, e)
		if err != nil {
			return err
		}
		entries, rows = append(entries, e), append(rows, ev)
		return nil
	}
	for _, subject := range unique(c.people) {
		e, err := personEntry(ctx, tx, subject)
		if err := add(directory.PersonKey(subject), e, err); err != nil {
			return nil, err
		}
	}
	for _, subject := range unique(c.members) {
		e, err := membershipEntry(ctx, tx, subject)
		if err := add(directory.MembershipKey(subject), e, err); err != nil {
			return nil, err
		}
	}
	for _, proxy := range unique(c.grants) {
		e, err := grantsEntry(ctx, tx, proxy, now)
		if err := add(directory.GrantsKey(proxy), e, err); err != nil {
			return nil, err
		}
	}
	for _, id := range unique(c.apps) {
		e, err := appEntry(ctx, tx, id)
		if err := add(directory.AppKey(id), e, err); err != nil {
			return nil, err
		}
	}
	if err := addOutbox(ctx, tx, rows); err != nil {
		return nil, err
	}
	return entries, nil
}

// insertIfAbsent runs an INSERT … ON CONFLICT DO NOTHING and reports whether it added the row.
func insertIfAbsent(ctx context.Context, tx pgx.Tx, sql string, args ...any) (bool, error) {
	tag, err := tx.Exec(ctx, sql, args...)
	return err == nil && tag.RowsAffected() > 0, err
}

func nextVersion(ctx context.Context, tx pgx.Tx) (int64, error) {
	var v int64
	err := tx.QueryRow(ctx, `SELECT nextval('directory_versions')`).Scan(&v)
	return v, err
}

func personEntry(ctx context.Context, tx pgx.Tx, subject string) (*directoryv1.PersonEntry, error) {
	e := &directoryv1.PersonEntry{Subject: subject}
	var status int16
	var roles []int16
	if err := tx.QueryRow(ctx, `SELECT status, roles, staff_display_name, display_name_sealed IS NOT NULL FROM people WHERE subject = $1`,
		subject).Scan(&status, &roles, &e.StaffDisplayName, &e.Named); err != nil {
		return nil, fmt.Errorf("read person: %w", err)
	}
	e.Status = directoryv1.PersonStatus(status)
	for _, r := range roles {
		e.Roles = append(e.Roles, commonv1.Role(r))
	}
	var err error
	e.Version, err = nextVersion(ctx, tx)
	return e, err
}

// membershipEntry lists the person's memberships of active pools: a deactivated pool grants
// nothing.
func membershipEntry(ctx context.Context, tx pgx.Tx, subject string) (*directoryv1.MembershipEntry, error) {
	e := &directoryv1.MembershipEntry{Subject: subject}
	rows, err := tx.Query(ctx, `SELECT m.pool_id, m.role FROM care_pool_members m JOIN care_pools p ON p.id = m.pool_id AND p.active
		WHERE m.subject = $1 ORDER BY m.pool_id`, subject)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var pool string
		var role int16
		if err := rows.Scan(&pool, &role); err != nil {
			rows.Close()
			return nil, err
		}
		e.Pools = append(e.Pools, &directoryv1.PoolMembership{PoolId: pool, Role: directoryv1.PoolRole(role)})
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	e.Version, err = nextVersion(ctx, tx)
	return e, err
}

func grantsEntry(ctx context.Context, tx pgx.Tx, proxy string, now time.Time) (*directoryv1.ProxyGrantsEntry, error) {
	e := &directoryv1.ProxyGrantsEntry{ProxySubject: proxy}
	rows, err := tx.Query(ctx, `SELECT id, patient_id, scopes, expires_at FROM proxy_grants
		WHERE proxy_subject = $1 AND revoked_at IS NULL AND expires_at > $2 ORDER BY id`, proxy, now)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		g := &directoryv1.StoredProxyGrant{}
		var exp time.Time
		if err := rows.Scan(&g.GrantId, &g.PatientId, &g.Scopes, &exp); err != nil {
			rows.Close()
			return nil, err
		}
		g.ExpireTime = timestamppb.New(exp)
		e.Grants = append(e.Grants, g)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	e.Version, err = nextVersion(ctx, tx)
	return e, err
}

func appEntry(ctx context.Context, tx pgx.Tx, clientID string) (*directoryv1.ClientAppEntry, error) {
	e := &directoryv1.ClientAppEntry{ClientId: clientID}
	var kind int16
	if err := tx.QueryRow(ctx, `SELECT kind, display_name, allowed_scopes, pool_ids, active FROM client_apps WHERE client_id = $1`, clientID).
		Scan(&kind, &e.DisplayName, &e.AllowedScopes, &e.PoolIds, &e.Active); err != nil {
		return nil, fmt.Errorf("read client app: %w", err)
	}
	e.Kind = directoryv1.ClientAppKind(kind)
	var err error
	e.Version, err = nextVersion(ctx, tx)
	return e, err
}

func unique(ids []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
