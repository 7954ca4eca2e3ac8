package app

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"slices"
	"strconv"
	"time"

	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// poolAudience is who a listing of pools is for; it decides what the caller sees.
type poolAudience int

const (
	audiencePatientSide poolAudience = iota // patients and proxies: pools they may write to
	audienceCareTeam                        // clinicians and staff: the pools they work in
	audienceAdmin                           // administrators: every pool
	audienceDirectory                       // the identity provider's provisioning client: every pool, no patients
)

func audienceOf(p *auth.Principal) poolAudience {
	switch {
	case p.HasRole(auth.RoleAdmin):
		return audienceAdmin
	case p.HasRole(auth.RoleProvisioner):
		return audienceDirectory
	case p.HasRole(auth.RoleClinician) || p.HasRole(auth.RoleStaff):
		return audienceCareTeam
	}
	return audiencePatientSide
}

// PoolView is a pool as one caller may see it: patients and proxies never see who else may
// write to a pool or how many work in it.
type PoolView struct {
	domain.PoolView
	OpenNow bool
}

func (s *Service) poolViewFor(a poolAudience, v domain.PoolView) PoolView {
	if a != audienceAdmin {
		v.Pool.PatientIDs = nil
	}
	if a == audiencePatientSide {
		v.Pool.MemberCount = 0
	}
	return PoolView{PoolView: v, OpenNow: v.Pool.Hours.OpenAt(s.Now())}
}

// ListPoolsCmd selects pools.
type ListPoolsCmd struct {
	PatientID       string
	IncludeInactive bool
	PageSize        int
	PageToken       string
}

// ListPools lists the pools the caller may see (audienceOf), by name.
func (s *Service) ListPools(ctx context.Context, p *auth.Principal, c ListPoolsCmd) ([]PoolView, string, error) {
	limit := pageLimit(c.PageSize, 100, 500)
	q := domain.PoolQuery{Limit: limit + 1}
	if c.PageToken != "" {
		parts, err := parseKeysetToken("pools", c.PageToken, 2)
		if err != nil {
			return nil, "", err
		}
		q.AfterName, q.AfterID = parts[0], parts[1]
	}
	a := audienceOf(p)
	switch a {
	case audienceAdmin, audienceDirectory:
		q.IncludeInactive = c.IncludeInactive
	case audienceCareTeam:
		q.Only = slices.Clone(p.CarePools)
		if q.Only == nil {
			q.Only = []string{}
		}
	case audiencePatientSide:
		patientID := c.PatientID
		if patientID == "" {
			patientID = p.PatientID
		}
		if patientID == "" {
			return nil, "", usererr.New(usererr.InvalidArgument, "FIELD_REQUIRED", "patient_id is required when listing pools for a patient")
		}
		if len(patientID) > 100 {
			return nil, "", usererr.New(usererr.InvalidArgument, "FIELD_TOO_LONG", "patient_id is too long")
		}
		// Listing where one may write is asked like writing: the patient themself, or a proxy
		// holding a write grant for the patient.
		res := policy.Resource{Type: "Patient", ID: patientID, PatientID: patientID}
		if _, err := s.authorize(ctx, p, actListPools, res, policy.Context{}, nil); err != nil {
			return nil, "", err
		}
		q.WritableBy = patientID
	}
	pools, err := s.Pools.Pools(ctx, q)
	if err != nil {
		return nil, "", storeError("list pools", err)
	}
	next := ""
	if len(pools) > limit {
		pools = pools[:limit]
		last := pools[limit-1].Pool
		next = keysetToken("pools", last.Name, last.ID)
	}
	out := make([]PoolView, len(pools))
	for i, v := range pools {
		out[i] = s.poolViewFor(a, v)
	}
	return out, next, nil
}

// GetPool returns one pool as ListPools would show it to the caller; a pool the caller could
// not list is not found.
func (s *Service) GetPool(ctx context.Context, p *auth.Principal, poolID string) (PoolView, error) {
	if err := domain.CheckPoolID("pool_id", poolID); err != nil {
		return PoolView{}, err
	}
	v, err := s.Pools.Pool(ctx, poolID, "")
	if err != nil {
		return PoolView{}, storeError("load pool", err)
	}
	a := audienceOf(p)
	switch a {
	case audienceCareTeam:
		if !slices.Contains(p.CarePools, poolID) {
			return PoolView{}, domain.ErrPoolNotFound
		}
	case audiencePatientSide:
		if !v.Pool.Active || !slices.ContainsFunc(writablePatients(p, s.Now()), v.Pool.WritableBy) {
			return PoolView{}, domain.ErrPoolNotFound
		}
	}
	return s.poolViewFor(a, v), nil
}

// writablePatients are the patients p may write for: themself, and those of their proxy
// grants that allow writing.
func writablePatients(p *auth.Principal, now time.Time) []string {
	var out []string
	if p.PatientID != "" {
		out = append(out, p.PatientID)
	}
	for _, g := range p.ProxyGrants {
		if slices.Contains(g.Scopes, "write") && g.ActiveAt(now) {
			out = append(out, g.PatientID)
		}
	}
	return out
}

// ListPoolMembers lists a pool's members, by subject.
func (s *Service) ListPoolMembers(ctx context.Context, p *auth.Principal, poolID string, pageSize int, pageToken string) ([]domain.PoolMember, string, error) {
	if err := domain.CheckPoolID("pool_id", poolID); err != nil {
		return nil, "", err
	}
	limit := pageLimit(pageSize, 100, 500)
	after := ""
	if pageToken != "" {
		parts, err := parseKeysetToken("members:"+poolID, pageToken, 1)
		if err != nil {
			return nil, "", err
		}
		after = parts[0]
	}
	if _, err := s.authorize(ctx, p, actListMembers, poolResource(poolID), policy.Context{}, nil); err != nil {
		return nil, "", err
	}
	if _, err := s.Pools.Pool(ctx, poolID, ""); err != nil {
		return nil, "", storeError("load pool", err)
	}
	members, err := s.Pools.PoolMembers(ctx, poolID, after, limit+1)
	if err != nil {
		return nil, "", storeError("list pool members", err)
	}
	next := ""
	if len(members) > limit {
		members = members[:limit]
		next = keysetToken("members:"+poolID, members[limit-1].Subject)
	}
	return members, next, nil
}

// CreatePool creates an active pool with no members.
func (s *Service) CreatePool(ctx context.Context, p *auth.Principal, in domain.Pool) (PoolView, error) {
	in.Active = true
	if err := in.Check(); err != nil {
		return PoolView{}, err
	}
	if p.HasRole(auth.RoleProvisioner) && (in.Organisation != "" || in.ListedOnly || len(in.PatientIDs) > 0 || in.Hours.TimeZone != "" || len(in.Hours.Windows) > 0) {
		return PoolView{}, errPoolSettingsNotForProvisioner
	}
	if _, err := s.authorize(ctx, p, actCreatePool, poolResource(in.ID), policy.Context{}, nil); err != nil {
		return PoolView{}, err
	}
	in.CreatedAt = s.Now()
	b := s.newBatch(ctx)
	b.audit(actorFor(p, "", in.ID), eventsv1.Action_ACTION_CREATE, poolTarget(in.ID), auditlog.Reason("pool_created"))
	rows, err := b.rows()
	if err == nil {
		in, err = s.Pools.CreatePool(ctx, in, rows)
	}
	if err != nil {
		return PoolView{}, storeError("create pool", err)
	}
	s.Logger.InfoContext(ctx, "pool created", slog.String("pool_id", in.ID))
	return s.poolViewFor(audienceOf(p), domain.PoolView{Pool: in}), nil
}

// Pool fields UpdatePool may change, and whether the identity provider's provisioning client
// may change them: a group's name and existence are the identity provider's, who may write to
// a pool and when it is open are the organisation's administrators'.
var poolFields = map[string]bool{"name": true, "organisation": false, "audience": false, "patient_ids": false, "active": true, "active_hours": false}

var errPoolSettingsNotForProvisioner = usererr.New(usererr.PermissionDenied, "POOL_SETTINGS_NOT_FOR_PROVISIONER",
	"the provisioning client may set a pool's name and whether it is active; its other settings are an administrator's")

// UpdatePool changes the named fields of a pool; etag, when set, must match.
func (s *Service) UpdatePool(ctx context.Context, p *auth.Principal, in domain.Pool, etag string, mask []string) (PoolView, error) {
	if err := domain.CheckPoolID("pool.pool_id", in.ID); err != nil {
		return PoolView{}, err
	}
	if len(mask) == 0 {
		return PoolView{}, usererr.New(usererr.InvalidArgument, "FIELD_REQUIRED", "update_mask is required")
	}
	for _, f := range mask {
		provisionable, known := poolFields[f]
		if !known {
			return PoolView{}, usererr.New(usererr.InvalidArgument, "UPDATE_MASK_FIELD_UNKNOWN", "update_mask names an unknown or read-only field")
		}
		if !provisionable && p.HasRole(auth.RoleProvisioner) {
			return PoolView{}, errPoolSettingsNotForProvisioner
		}
	}
	want, err := parseEtag(etag)
	if err != nil {
		return PoolView{}, err
	}
	if _, err := s.authorize(ctx, p, actUpdatePool, poolResource(in.ID), policy.Context{}, nil); err != nil {
		return PoolView{}, err
	}
	var changed []string
	out, err := s.Pools.UpdatePool(ctx, in.ID, func(cur domain.Pool) (domain.Pool, []outbox.Event, error) {
		if want >= 0 && cur.Version != want {
			return cur, nil, usererr.New(usererr.Aborted, "ETAG_MISMATCH", "etag does not match the stored pool; re-read and retry")
		}
		next := cur
		for _, f := range mask {
			switch f {
			case "name":
				next.Name = in.Name
			case "organisation":
				next.Organisation = in.Organisation
			case "audience":
				next.ListedOnly = in.ListedOnly
				if !next.ListedOnly {
					next.PatientIDs = nil
				}
			case "patient_ids":
				next.PatientIDs = in.PatientIDs
			case "active":
				next.Active = in.Active
			case "active_hours":
				next.Hours = in.Hours
			}
		}
		if err := next.Check(); err != nil {
			return cur, nil, err
		}
		changed = slices.Clone(mask)
		slices.Sort(changed)
		next.UpdatedAt = s.Now()
		reason := "pool_updated"
		if next.Active != cur.Active {
			reason = map[bool]string{true: "pool_activated", false: "pool_deactivated"}[next.Active]
		}
		b := s.newBatch(ctx)
		b.audit(actorFor(p, "", in.ID), eventsv1.Action_ACTION_UPDATE, poolTarget(in.ID), auditlog.Reason(reason))
		rows, err := b.rows()
		return next, rows, err
	})
	if err != nil {
		return PoolView{}, storeError("update pool", err)
	}
	s.Logger.InfoContext(ctx, "pool updated", slog.String("pool_id", in.ID), slog.Any("fields", changed), slog.Bool("active", out.Active))
	v, err := s.Pools.Pool(ctx, in.ID, "")
	if err != nil {
		return PoolView{}, storeError("load pool", err)
	}
	return s.poolViewFor(audienceOf(p), v), nil
}

// SetPoolMember adds a person to a pool or changes their role; added reports a new member.
func (s *Service) SetPoolMember(ctx context.Context, p *auth.Principal, m domain.PoolMember) (domain.PoolMember, bool, error) {
	if err := domain.CheckPoolID("pool_id", m.PoolID); err != nil {
		return domain.PoolMember{}, false, err
	}
	if err := checkSubject(m.Subject); err != nil {
		return domain.PoolMember{}, false, err
	}
	if _, ok := directoryv1.PoolRole_name[int32(m.Role)]; !ok || m.Role == directoryv1.PoolRole_POOL_ROLE_UNSPECIFIED {
		return domain.PoolMember{}, false, usererr.New(usererr.InvalidArgument, "FIELD_REQUIRED", "role is required")
	}
	if _, err := s.authorize(ctx, p, actSetMember, poolResource(m.PoolID), policy.Context{}, nil); err != nil {
		return domain.PoolMember{}, false, err
	}
	m.AddedAt = s.Now()
	m, added, err := s.Pools.SetPoolMember(ctx, m, func(added bool) ([]outbox.Event, error) {
		reason := "pool_member_role_changed"
		if added {
			reason = "pool_member_added"
		}
		b := s.newBatch(ctx)
		b.audit(actorFor(p, "", m.PoolID), eventsv1.Action_ACTION_UPDATE, membershipTarget(m.PoolID, m.Subject), auditlog.Reason(reason))
		return b.rows()
	})
	if err != nil {
		return domain.PoolMember{}, false, storeError("set pool member", err)
	}
	s.Logger.InfoContext(ctx, "pool member set", slog.String("pool_id", m.PoolID), slog.String("role", m.Role.String()), slog.Bool("added", added))
	return m, added, nil
}

// RemovePoolMember takes a person out of a pool and returns how many open threads of the pool
// stay assigned to them.
func (s *Service) RemovePoolMember(ctx context.Context, p *auth.Principal, poolID, subject string) (int32, error) {
	if err := domain.CheckPoolID("pool_id", poolID); err != nil {
		return 0, err
	}
	if err := checkSubject(subject); err != nil {
		return 0, err
	}
	if _, err := s.authorize(ctx, p, actRemoveMember, poolResource(poolID), policy.Context{}, nil); err != nil {
		return 0, err
	}
	b := s.newBatch(ctx)
	b.audit(actorFor(p, "", poolID), eventsv1.Action_ACTION_UPDATE, membershipTarget(poolID, subject), auditlog.Reason("pool_member_removed"))
	rows, err := b.rows()
	var assigned int32
	if err == nil {
		assigned, err = s.Pools.RemovePoolMember(ctx, poolID, subject, rows)
	}
	if err != nil {
		return 0, storeError("remove pool member", err)
	}
	s.Logger.InfoContext(ctx, "pool member removed", slog.String("pool_id", poolID), slog.Int("assigned_threads", int(assigned)))
	return assigned, nil
}

func checkSubject(subject string) error {
	if subject == "" {
		return usererr.New(usererr.InvalidArgument, "FIELD_REQUIRED", "subject is required")
	}
	if len(subject) > 200 {
		return usererr.New(usererr.InvalidArgument, "FIELD_TOO_LONG", "subject is too long")
	}
	return nil
}

func poolTarget(poolID string) auditlog.Target {
	return auditlog.Target{Type: eventsv1.RecordType_RECORD_TYPE_POOL, ID: poolID, PoolID: poolID}
}

func membershipTarget(poolID, subject string) auditlog.Target {
	return auditlog.Target{Type: eventsv1.RecordType_RECORD_TYPE_POOL_MEMBERSHIP, ID: subject, PoolID: poolID}
}

// parseEtag reads an optimistic-concurrency etag: -1 when none was given.
func parseEtag(etag string) (int64, error) {
	if etag == "" {
		return -1, nil
	}
	v, err := strconv.ParseInt(etag, 10, 64)
	if err != nil || v < 0 {
		return 0, usererr.New(usererr.Aborted, "ETAG_MISMATCH", "etag does not match the stored version")
	}
	return v, nil
}

// pageLimit is a request's page size: def when unset, at most maxSize.
func pageLimit(size, def, maxSize int) int {
	switch {
	case size <= 0:
		return def
	case size > maxSize:
		return maxSize
	}
	return size
}

// keysetToken is an opaque cursor over a listing of kind, after the given sort key. It holds
// ids and names of pools, never PHI.
func keysetToken(kind string, key ...string) string {
	b, _ := json.Marshal(append([]string{kind}, key...)) //nolint:errchkjson // strings always marshal
	return base64.RawURLEncoding.EncodeToString(b)
}

// parseKeysetToken reads a keysetToken of kind with n key parts.
func parseKeysetToken(kind, tok string, n int) ([]string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	var parts []string
	if err != nil || json.Unmarshal(raw, &parts) != nil || len(parts) != n+1 || parts[0] != kind {
		return nil, errPageToken
	}
	return parts[1:], nil
}
