package app

import (
	"context"
	"log/slog"
	"slices"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/crypto"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// fieldDisplayName names a person's sealed display name in its AAD.
const fieldDisplayName = "display_name"

// firstContactTimeout bounds recording a person at their call: one Transit call and one commit.
const firstContactTimeout = 2 * time.Second

// PersonView is a person with their display name opened, for admins.
type PersonView struct {
	Person      domain.Person
	DisplayName string
}

// PersonInput is what provisioning sets of a person.
type PersonInput struct {
	Subject, ExternalID, UserName, DisplayName string
	Roles                                      []commonv1.Role
	Status                                     directoryv1.PersonStatus
}

func personResource(subject string) policy.Resource {
	return policy.Resource{Type: "Person", ID: subject}
}

func personTarget(subject string) auditlog.Target {
	return auditlog.Target{Type: eventsv1.RecordType_RECORD_TYPE_PERSON, ID: subject}
}

// workforce reports whether roles make a care-team member, whose name is shown in clear in
// access reports.
func workforce(roles []commonv1.Role) bool {
	return slices.Contains(roles, commonv1.Role_ROLE_CLINICIAN) || slices.Contains(roles, commonv1.Role_ROLE_STAFF)
}

// sealName seals a display name under a new DEK of the person's own; nil and "" for no name.
func (s *Service) sealName(ctx context.Context, subject, name string) (sealed []byte, wrapped string, err error) {
	if name == "" {
		return nil, "", nil
	}
	dek, err := s.Keys.NewDEK(ctx, s.cfg.KeyName)
	if err != nil {
		return nil, "", keyError(err)
	}
	sl, err := crypto.NewRecordSealer(dek.Plaintext, "person:"+subject)
	clear(dek.Plaintext)
	if err != nil {
		return nil, "", err
	}
	sealed, err = sl.SealRecord([]byte(name), crypto.PersonFieldAAD(subject, fieldDisplayName))
	return sealed, dek.Wrapped, err
}

// openName opens a person's display name ("" when they have none).
func (s *Service) openName(ctx context.Context, p domain.Person) (string, error) {
	if p.WrappedDEK == "" || len(p.DisplayNameSealed) == 0 {
		return "", nil
	}
	dek, err := s.Keys.OpenDEK(ctx, s.cfg.KeyName, p.WrappedDEK)
	if err != nil {
		return "", keyError(err)
	}
	defer clear(dek)
	sl, err := crypto.NewRecordSealer(dek, "person:"+p.Subject)
	if err != nil {
		return "", err
	}
	return open(sl, p.DisplayNameSealed, crypto.PersonFieldAAD(p.Subject, fieldDisplayName))
}

// displayNames opens the display names of subjects: what Participant.display_name shows to a
// caller allowed to read the thread they appear in. Subjects the directory does not hold, or
// who have no name, are left out. With the directory at hand (Known), only people it says are
// named are looked up, and a name opened once is served from memory until the person's entry
// changes: reading a thread costs no query for its names in the steady state.
func (s *Service) displayNames(ctx context.Context, subjects []string) (map[string]string, error) {
	slices.Sort(subjects)
	subjects = slices.Compact(subjects)
	out := make(map[string]string, len(subjects))
	// The versions are read before the rows, so a name is never cached under a newer version
	// than the row it came from.
	versions := make(map[string]int64, len(subjects))
	var missing []string
	for _, subject := range subjects {
		if s.Known != nil {
			e, ok := s.Known.Person(subject)
			if !ok || !e.GetNamed() {
				continue
			}
			if name, ok := s.names.get(subject, e.GetVersion()); ok {
				out[subject] = name
				continue
			}
			versions[subject] = e.GetVersion()
		}
		missing = append(missing, subject)
	}
	if len(missing) == 0 {
		return out, nil
	}
	people, err := s.People.PeopleBySubject(ctx, missing)
	if err != nil {
		return nil, storeError("read people", err)
	}
	for subject, p := range people {
		name, err := s.openName(ctx, p)
		if err != nil {
			return nil, err
		}
		if v, ok := versions[subject]; ok {
			s.names.put(subject, v, name)
		}
		if name != "" {
			out[subject] = name
		}
	}
	return out, nil
}

// nameCache holds opened display names by subject, each with the version of the person's
// directory entry it was read at; a bounded LRU, so the plaintext names it keeps in memory are
// as few as the DEK cache's keys.
type nameCache struct {
	lru *lru.Cache[string, cachedName]
}

type cachedName struct {
	version int64
	name    string
}

// nameCacheSize bounds the names held in memory.
const nameCacheSize = 10_000

func newNameCache() *nameCache {
	c, _ := lru.New[string, cachedName](nameCacheSize) // fails only for a size below 1
	return &nameCache{lru: c}
}

// get returns the name of subject if it was cached at version.
func (c *nameCache) get(subject string, version int64) (string, bool) {
	n, ok := c.lru.Get(subject)
	if !ok || n.version != version {
		return "", false
	}
	return n.name, true
}

func (c *nameCache) put(subject string, version int64, name string) {
	c.lru.Add(subject, cachedName{version: version, name: name})
}

// FirstContact records a person the directory does not hold yet, from their verified token:
// their roles, patient record and display name (the token's name claim, sealed). A person the
// directory holds without a name (a seeded one, or one whose earlier tokens had no name claim)
// gets the name of their token. It runs before each call of a person; once the directory holds
// them with a name it costs a map lookup. A failure is logged and the call goes on: the record
// is a convenience, the token already decided access. The identity provider's provisioning
// client is a machine, not a person: it is never recorded.
func (s *Service) FirstContact(ctx context.Context, p *auth.Principal) {
	if p == nil || p.Kind != auth.KindUser || p.Via != "" || p.HasRole(auth.RoleProvisioner) {
		return
	}
	name := domain.CleanDisplayName(p.Name)
	known := false
	if s.Known != nil {
		var entry *directoryv1.PersonEntry
		if entry, known = s.Known.Person(p.Subject); known && (entry.GetNamed() || name == "") {
			return
		}
	}
	// The record runs on the caller's request path: a slow Vault or Postgres may not hold the
	// call up for longer than this.
	rctx, cancel := context.WithTimeout(ctx, firstContactTimeout)
	defer cancel()
	err := s.recordFirstContact(rctx, p, name, known)
	if err != nil {
		s.Logger.WarnContext(ctx, "first contact not recorded", slog.String("error", err.Error()))
	}
}

func (s *Service) recordFirstContact(ctx context.Context, p *auth.Principal, name string, known bool) error {
	now := s.Now()
	person := domain.Person{Subject: p.Subject, Status: directoryv1.PersonStatus_PERSON_STATUS_ACTIVE, PatientID: p.PatientID,
		Source: domain.SourceFirstContact, CreatedAt: now, UpdatedAt: now, Roles: auditRoles(p)}
	var err error
	if person.DisplayNameSealed, person.WrappedDEK, err = s.sealName(ctx, p.Subject, name); err != nil {
		return err
	}
	if workforce(person.Roles) {
		person.StaffDisplayName = name
	}
	if known {
		rows, err := s.personRows(ctx, p, eventsv1.Action_ACTION_UPDATE, "person_named")
		if err != nil {
			return err
		}
		named, err := s.People.NamePerson(ctx, p.Subject, person.DisplayNameSealed, person.WrappedDEK, person.StaffDisplayName, now, rows)
		if err != nil || named {
			return err
		}
		// The directory's entry came from elsewhere than messaging's store (a deployment's own
		// writer, a test harness): record the person as met now.
	}
	rows, err := s.personRows(ctx, p, eventsv1.Action_ACTION_CREATE, "person_first_contact")
	if err != nil {
		return err
	}
	_, err = s.People.RecordFirstContact(ctx, person, rows)
	return err
}

// personRows is the audit record of what a person's own call recorded of them.
func (s *Service) personRows(ctx context.Context, p *auth.Principal, action eventsv1.Action, reason string) ([]outbox.Event, error) {
	b := s.newBatch(ctx)
	b.audit(actorFor(p, p.PatientID, ""), action, personTarget(p.Subject), auditlog.Reason(reason), auditlog.WithSeverity(eventsv1.Severity_SEVERITY_LOW))
	return b.rows()
}

// auditRoles are the principal's roles as the directory records them.
func auditRoles(p *auth.Principal) []commonv1.Role {
	var out []commonv1.Role
	for _, r := range p.RoleNames() {
		if v := auditlog.RoleOf([]string{r}); v != commonv1.Role_ROLE_UNSPECIFIED && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// ListPeople lists the directory's people by subject, for admins.
func (s *Service) ListPeople(ctx context.Context, p *auth.Principal, q domain.PersonQuery, pageSize int, pageToken string) ([]PersonView, string, error) {
	limit := pageLimit(pageSize, 50, 100)
	q.Limit, q.AfterSubject = limit+1, ""
	if pageToken != "" {
		parts, err := parseKeysetToken("people", pageToken, 1)
		if err != nil {
			return nil, "", err
		}
		q.AfterSubject = parts[0]
	}
	// The listing is about the directory as a whole, which policy sees as one record.
	if _, err := s.authorize(ctx, p, actListPeople, personResource("directory"), policy.Context{}, nil); err != nil {
		return nil, "", err
	}
	people, err := s.People.People(ctx, q)
	if err != nil {
		return nil, "", storeError("list people", err)
	}
	next := ""
	if len(people) > limit {
		people = people[:limit]
		next = keysetToken("people", people[limit-1].Subject)
	}
	out := make([]PersonView, 0, len(people))
	for _, person := range people {
		v, err := s.personView(ctx, person)
		if err != nil {
			return nil, "", err
		}
		out = append(out, v)
	}
	return out, next, nil
}

func (s *Service) personView(ctx context.Context, p domain.Person) (PersonView, error) {
	name, err := s.openName(ctx, p)
	return PersonView{Person: p, DisplayName: name}, err
}

// GetPerson returns one person, for admins.
func (s *Service) GetPerson(ctx context.Context, p *auth.Principal, subject string) (PersonView, error) {
	if err := domain.CheckSubjectID("subject", subject); err != nil {
		return PersonView{}, err
	}
	if _, err := s.authorize(ctx, p, actGetPerson, personResource(subject), policy.Context{}, nil); err != nil {
		return PersonView{}, err
	}
	person, err := s.People.Person(ctx, subject)
	if err != nil {
		return PersonView{}, storeError("read person", err)
	}
	return s.personView(ctx, person)
}

// ProvisionPerson creates or replaces a care-team member, as the organisation's identity
// provider provisions them.
func (s *Service) ProvisionPerson(ctx context.Context, p *auth.Principal, in PersonInput) (PersonView, bool, error) {
	person := domain.Person{Subject: in.Subject, ExternalID: in.ExternalID, UserName: in.UserName, Roles: slices.Clone(in.Roles), Status: in.Status}
	if err := person.CheckProvisioned(); err != nil {
		return PersonView{}, false, err
	}
	if err := domain.CheckText("person.display_name", in.DisplayName, domain.MaxDisplayNameChars, false); err != nil {
		return PersonView{}, false, err
	}
	switch in.Status {
	case directoryv1.PersonStatus_PERSON_STATUS_UNSPECIFIED:
		person.Status = directoryv1.PersonStatus_PERSON_STATUS_ACTIVE
	case directoryv1.PersonStatus_PERSON_STATUS_ACTIVE, directoryv1.PersonStatus_PERSON_STATUS_DEACTIVATED:
	default:
		return PersonView{}, false, usererr.New(usererr.InvalidArgument, "PERSON_STATUS_UNKNOWN", "person.status is unknown")
	}
	if in.Subject == p.Subject && person.Status == directoryv1.PersonStatus_PERSON_STATUS_DEACTIVATED {
		return PersonView{}, false, domain.ErrPersonIsYourself
	}
	if _, err := s.authorize(ctx, p, actProvision, personResource(in.Subject), policy.Context{}, nil); err != nil {
		return PersonView{}, false, err
	}
	name := domain.CleanDisplayName(in.DisplayName)
	var err error
	if person.DisplayNameSealed, person.WrappedDEK, err = s.sealName(ctx, in.Subject, name); err != nil {
		return PersonView{}, false, err
	}
	if workforce(person.Roles) {
		person.StaffDisplayName = name
	}
	created := false
	stored, err := s.People.PutPerson(ctx, in.Subject, func(cur domain.Person, exists bool) (domain.Person, []outbox.Event, error) {
		// A patient or proxy (met at first contact or seeded) is not the organisation's to
		// provision; a clinician met before provisioning is taken over.
		if exists && cur.Source != domain.SourceProvisioned &&
			(slices.Contains(cur.Roles, commonv1.Role_ROLE_PATIENT) || slices.Contains(cur.Roles, commonv1.Role_ROLE_PROXY)) {
			return cur, nil, domain.ErrPersonNotStaff
		}
		created = !exists
		// The repository keeps an existing person's creation time and patient record.
		next := person
		next.Source, next.UpdatedAt, next.CreatedAt = domain.SourceProvisioned, s.Now(), s.Now()
		action, reason := eventsv1.Action_ACTION_UPDATE, "person_provisioned"
		if created {
			action = eventsv1.Action_ACTION_CREATE
		}
		if exists && cur.Active() != next.Active() {
			reason = map[bool]string{true: "person_reactivated", false: "person_deactivated"}[next.Active()]
		}
		b := s.newBatch(ctx)
		b.audit(actorFor(p, "", ""), action, personTarget(in.Subject), auditlog.Reason(reason))
		rows, err := b.rows()
		return next, rows, err
	})
	if err != nil {
		return PersonView{}, false, storeError("provision person", err)
	}
	s.Logger.InfoContext(ctx, "person provisioned", slog.Bool("created", created), slog.String("status", stored.Status.String()))
	return PersonView{Person: stored, DisplayName: name}, created, nil
}

// SetPersonStatus activates or deactivates a person; a deactivated person is refused on every
// service from their next call on.
func (s *Service) SetPersonStatus(ctx context.Context, p *auth.Principal, subject string, status directoryv1.PersonStatus) (PersonView, error) {
	if err := domain.CheckSubjectID("subject", subject); err != nil {
		return PersonView{}, err
	}
	if status != directoryv1.PersonStatus_PERSON_STATUS_ACTIVE && status != directoryv1.PersonStatus_PERSON_STATUS_DEACTIVATED {
		return PersonView{}, usererr.New(usererr.InvalidArgument, "PERSON_STATUS_UNKNOWN", "status must be PERSON_STATUS_ACTIVE or PERSON_STATUS_DEACTIVATED")
	}
	if subject == p.Subject {
		return PersonView{}, domain.ErrPersonIsYourself
	}
	if _, err := s.authorize(ctx, p, actSetStatus, personResource(subject), policy.Context{}, nil); err != nil {
		return PersonView{}, err
	}
	stored, err := s.People.PutPerson(ctx, subject, func(cur domain.Person, exists bool) (domain.Person, []outbox.Event, error) {
		if !exists {
			return cur, nil, domain.ErrPersonNotFound
		}
		next := cur
		next.Status, next.UpdatedAt = status, s.Now()
		reason := map[bool]string{true: "person_reactivated", false: "person_deactivated"}[next.Active()]
		b := s.newBatch(ctx)
		b.audit(actorFor(p, cur.PatientID, ""), eventsv1.Action_ACTION_UPDATE, personTarget(subject), auditlog.Reason(reason))
		rows, err := b.rows()
		return next, rows, err
	})
	if err != nil {
		return PersonView{}, storeError("set person status", err)
	}
	s.Logger.InfoContext(ctx, "person status set", slog.String("status", stored.Status.String()))
	return s.personView(ctx, stored)
}
