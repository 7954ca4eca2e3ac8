package domain

import (
	"context"
	"regexp"
	"slices"
	"time"

	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// Pool is a care pool: a team patients write to and whose members work its threads. Nothing
// in it is PHI.
type Pool struct {
	ID           string
	Name         string
	Organisation string
	// ListedOnly: only PatientIDs may write to the pool; otherwise every patient may.
	ListedOnly bool
	PatientIDs []string
	Active     bool
	Hours      ActiveHours
	// MemberCount is filled on reads.
	MemberCount int32
	CreatedAt   time.Time
	UpdatedAt   time.Time
	Version     int64
}

// ActiveHours are the weekly windows a pool is staffed, in its time zone; none means always.
type ActiveHours struct {
	TimeZone string
	Windows  []HoursWindow
}

// HoursWindow is one staffed window: Day is ISO 8601 (1 Monday … 7 Sunday), Open and Close
// are minutes after local midnight.
type HoursWindow struct {
	Day, Open, Close int
}

// OpenAt reports whether the pool is staffed at t. A time zone that no longer loads (the
// stored value was checked when it was written) counts as open: the answer only guides what a
// portal shows, and "closed" would wrongly discourage writing.
func (h ActiveHours) OpenAt(t time.Time) bool {
	if len(h.Windows) == 0 {
		return true
	}
	loc, err := time.LoadLocation(h.TimeZone)
	if err != nil {
		return true
	}
	local := t.In(loc)
	day := int(local.Weekday())
	if day == 0 {
		day = 7
	}
	minute := local.Hour()*60 + local.Minute()
	for _, w := range h.Windows {
		if w.Day == day && minute >= w.Open && minute < w.Close {
			return true
		}
	}
	return false
}

// Check validates the hours: a loadable time zone whenever there are windows, and windows that
// close after they open.
func (h ActiveHours) Check() error {
	if len(h.Windows) == 0 {
		return nil
	}
	if h.TimeZone == "" {
		return invalid("FIELD_REQUIRED", "active_hours.time_zone is required when windows are given")
	}
	if _, err := time.LoadLocation(h.TimeZone); err != nil || len(h.TimeZone) > 64 {
		return invalid("TIME_ZONE_UNKNOWN", "active_hours.time_zone is not a known IANA time zone")
	}
	if len(h.Windows) > 28 {
		return invalid("FIELD_TOO_LONG", "active_hours.windows holds more than 28 windows")
	}
	for _, w := range h.Windows {
		if w.Day < 1 || w.Day > 7 || w.Open < 0 || w.Close > 24*60 || w.Close <= w.Open {
			return invalid("HOURS_WINDOW_INVALID", "an active_hours window needs a weekday 1-7 and closes after it opens, within the day")
		}
	}
	return nil
}

// newPoolID is what a created pool's id must look like: it is a NATS subject token and appears
// in URLs, so lower-case letters, digits, '-' and '_' only.
var newPoolID = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// MaxPoolPatients bounds a pool's listed patients.
const MaxPoolPatients = 1000

// Check validates a pool an administrator wrote.
func (p Pool) Check() error {
	if p.ID == "" {
		return invalid("FIELD_REQUIRED", "pool.pool_id is required")
	}
	if len(p.ID) > 100 || !newPoolID.MatchString(p.ID) {
		return invalid("POOL_ID_MALFORMED", "pool.pool_id must be lower-case letters, digits, '-' and '_'")
	}
	if err := CheckText("pool.name", p.Name, 200, true); err != nil {
		return err
	}
	if err := CheckText("pool.organisation", p.Organisation, 200, false); err != nil {
		return err
	}
	if !p.ListedOnly && len(p.PatientIDs) > 0 {
		return invalid("POOL_PATIENTS_WITHOUT_LISTED_AUDIENCE", "pool.patient_ids is only for audience LISTED_PATIENTS")
	}
	if len(p.PatientIDs) > MaxPoolPatients {
		return invalid("FIELD_TOO_LONG", "pool.patient_ids holds more than %d patients", MaxPoolPatients)
	}
	for _, id := range p.PatientIDs {
		if id == "" || len(id) > 100 {
			return invalid("PATIENT_ID_MALFORMED", "pool.patient_ids holds an empty or too long id")
		}
	}
	return p.Hours.Check()
}

// PoolMember is one person working in a pool.
type PoolMember struct {
	PoolID  string
	Subject string
	Role    directoryv1.PoolRole
	AddedAt time.Time
}

// PoolView is a pool with its settings and, when the read named a patient, whether that
// patient may write to it.
type PoolView struct {
	Pool     Pool
	Settings PoolSettings
	MayWrite bool
}

// PoolQuery selects pools to list, by (name, id).
type PoolQuery struct {
	// WritableBy: only pools this patient may write to (active ones). Empty: no such filter.
	WritableBy string
	// Only: only these pools (a care-team member's). Nil: every pool.
	Only []string
	// IncludeInactive lists deactivated pools too.
	IncludeInactive bool
	// Keyset: only pools strictly after (AfterName, AfterID).
	AfterName, AfterID string
	Limit              int
}

// PoolRepository stores care pools and their members. Changes of membership, and of whether
// a pool is active, also change who may work which threads on every service (the directory).
type PoolRepository interface {
	// Pool loads a pool with its settings and, when patientID is not "", whether that patient
	// may write to it, in one round trip. ErrPoolNotFound when no pool has the id.
	Pool(ctx context.Context, id, patientID string) (PoolView, error)
	// Pools lists the pools q selects, ordered by name and then id.
	Pools(ctx context.Context, q PoolQuery) ([]PoolView, error)
	// CreatePool stores p, a new pool, with rows, in one commit; ErrPoolExists when the id is
	// taken.
	CreatePool(ctx context.Context, p Pool, rows []outbox.Event) (Pool, error)
	// UpdatePool loads the pool under its row lock, lets change return the next pool and its
	// rows, stores it with a new Version and commits. ErrPoolNotFound when there is none.
	UpdatePool(ctx context.Context, id string, change func(cur Pool) (Pool, []outbox.Event, error)) (Pool, error)
	// SetPoolMember adds m (or changes the member's role) and writes the rows rows returns, in
	// one commit, and returns the stored member (a changed role keeps its AddedAt); added
	// reports whether the person was not a member before. ErrPoolNotFound when the pool does
	// not exist.
	SetPoolMember(ctx context.Context, m PoolMember, rows func(added bool) ([]outbox.Event, error)) (stored PoolMember, added bool, err error)
	// RemovePoolMember removes subject from the pool and writes rows, in one commit, and
	// returns how many open threads of the pool stay assigned to them. ErrPoolNotFound when
	// the pool does not exist, ErrNotPoolMember when the person is not a member.
	RemovePoolMember(ctx context.Context, poolID, subject string, rows []outbox.Event) (assigned int32, err error)
	// PoolMembers lists up to limit members of a pool with subjects after afterSubject, by
	// subject.
	PoolMembers(ctx context.Context, poolID, afterSubject string, limit int) ([]PoolMember, error)
}

// Members tells who works in which pool, as the directory every service watches says now;
// the process's directory snapshot implements it.
type Members interface {
	// PoolRole is subject's role in the pool; POOL_ROLE_UNSPECIFIED when not a member.
	PoolRole(subject, poolID string) directoryv1.PoolRole
}

// Pool refusals.
var (
	// ErrPoolNotFound: no pool has the id, it is deactivated where that matters, or the caller
	// may not see it.
	ErrPoolNotFound = usererr.New(usererr.NotFound, "POOL_NOT_FOUND", "pool not found")
	// ErrPoolExists: CreatePool with an id already taken.
	ErrPoolExists = usererr.New(usererr.AlreadyExists, "POOL_EXISTS", "a pool with this id already exists")
	// ErrNotPoolMember: the person named is not a member of the pool.
	ErrNotPoolMember = usererr.New(usererr.NotFound, "POOL_MEMBER_NOT_FOUND", "the person is not a member of the pool")
	// ErrAssigneeNotMember: a thread may only be assigned to a member of its pool.
	ErrAssigneeNotMember = usererr.New(usererr.FailedPrecondition, "ASSIGNEE_NOT_POOL_MEMBER", "the assignee is not a member of the thread's pool")
	// ErrPoolClosedToPatient: the pool takes threads only from its listed patients.
	ErrPoolClosedToPatient = usererr.New(usererr.PermissionDenied, "POOL_NOT_OPEN_TO_PATIENT", "this pool does not take messages for this patient")
)

// WritableBy reports whether patientID may write to the pool (ignoring whether it is active).
func (p Pool) WritableBy(patientID string) bool {
	return !p.ListedOnly || slices.Contains(p.PatientIDs, patientID)
}
