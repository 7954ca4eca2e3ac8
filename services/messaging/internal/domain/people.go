package domain

import (
	"context"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// PersonSource is how the directory learned of a person (it matches messagingv1.PersonSource).
type PersonSource int16

// PersonSource values.
const (
	SourceFirstContact PersonSource = 1
	SourceProvisioned  PersonSource = 2
	SourceSeed         PersonSource = 3
)

// Person is someone the directory knows. DisplayNameSealed is the display name sealed under
// the person's own DEK (WrappedDEK), bound to their subject: deleting the row shreds the name.
type Person struct {
	Subject           string
	ExternalID        string
	UserName          string
	DisplayNameSealed []byte
	WrappedDEK        string
	// StaffDisplayName is a clinician's or staff member's name in clear, for the access report
	// (workforce names are not PHI); "" for anyone else.
	StaffDisplayName string
	Roles            []commonv1.Role
	Status           directoryv1.PersonStatus
	PatientID        string
	Source           PersonSource
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// Active reports whether the person may call.
func (p Person) Active() bool { return p.Status != directoryv1.PersonStatus_PERSON_STATUS_DEACTIVATED }

// ProvisionedRoles are the roles provisioning may give: the workforce's. Patients and proxies
// come from the portal's identity provider at first contact, never from provisioning.
var ProvisionedRoles = []commonv1.Role{commonv1.Role_ROLE_CLINICIAN, commonv1.Role_ROLE_STAFF, commonv1.Role_ROLE_ADMIN, commonv1.Role_ROLE_AUDITOR}

// MaxDisplayNameChars bounds a display name.
const MaxDisplayNameChars = 200

// CheckProvisioned validates a person an identity provider or admin provisions.
func (p Person) CheckProvisioned() error {
	if err := CheckSubjectID("person.subject", p.Subject); err != nil {
		return err
	}
	if len(p.ExternalID) > 255 || !utf8.ValidString(p.ExternalID) {
		return invalid("FIELD_TOO_LONG", "person.external_id is longer than 255 bytes")
	}
	if err := CheckText("person.user_name", p.UserName, 255, false); err != nil {
		return err
	}
	if len(p.Roles) == 0 {
		return invalid("FIELD_REQUIRED", "person.roles is required")
	}
	for _, r := range p.Roles {
		if !slices.Contains(ProvisionedRoles, r) {
			return invalid("ROLE_NOT_PROVISIONED", "person.roles may hold only clinician, staff, admin and auditor")
		}
	}
	return nil
}

// CheckSubjectID validates a person's subject: what their tokens carry as sub.
func CheckSubjectID(field, subject string) error {
	switch {
	case subject == "":
		return invalid("FIELD_REQUIRED", "%s is required", field)
	case len(subject) > 255 || !utf8.ValidString(subject) || strings.ContainsAny(subject, " \t\r\n") || strings.HasPrefix(subject, "service:"):
		return invalid("SUBJECT_MALFORMED", "%s is malformed", field)
	}
	return nil
}

// CleanDisplayName is a display name from a token claim or a provisioning request, trimmed,
// or "" when it is not valid UTF-8 or too long (a claim is not refused for it).
func CleanDisplayName(name string) string {
	name = strings.TrimSpace(name)
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > MaxDisplayNameChars {
		return ""
	}
	return name
}

// PersonQuery selects people, by subject.
type PersonQuery struct {
	// UserName matches case-insensitively, as SCIM's userName does; ExternalID exactly.
	UserName, ExternalID string
	// Sources, when not empty, keeps the people the directory learned of in these ways.
	Sources      []PersonSource
	AfterSubject string
	Limit        int
}

// Refusals of the people use cases.
var (
	ErrPersonNotFound   = usererr.New(usererr.NotFound, "PERSON_NOT_FOUND", "person not found")
	ErrPersonIDTaken    = usererr.New(usererr.AlreadyExists, "PERSON_ID_TAKEN", "another person holds the user_name or external_id")
	ErrPersonNotStaff   = usererr.New(usererr.FailedPrecondition, "PERSON_NOT_PROVISIONED", "the person is a patient or proxy; provisioning manages only the organisation's staff")
	ErrPersonIsYourself = usererr.New(usererr.PermissionDenied, "PERSON_IS_CALLER", "permission denied: you may not change your own status")
)

// PersonRepository stores the directory's people. Every change also puts the person's entry
// into the directory every service admits callers by, in the same commit.
type PersonRepository interface {
	// People runs q.
	People(ctx context.Context, q PersonQuery) ([]Person, error)
	// Person returns the person with subject; ErrPersonNotFound when there is none.
	Person(ctx context.Context, subject string) (Person, error)
	// PeopleBySubject returns the stored people among subjects (absent ones left out).
	PeopleBySubject(ctx context.Context, subjects []string) (map[string]Person, error)
	// PutPerson loads the person with subject under its row lock (exists false when there is
	// none), lets change return the person to store and its rows, and stores both in one
	// commit, keeping an existing person's CreatedAt and PatientID whatever change returns (and
	// returning the person as stored). ErrPersonIDTaken when another person holds the user name
	// or external id.
	PutPerson(ctx context.Context, subject string, change func(cur Person, exists bool) (Person, []outbox.Event, error)) (Person, error)
	// RecordFirstContact stores p unless the directory holds its subject already, with rows,
	// in one commit; recorded is false when it did hold it (nothing is written then).
	RecordFirstContact(ctx context.Context, p Person, rows []outbox.Event) (recorded bool, err error)
	// NamePerson gives a stored person without a display name the sealed one (and wrappedDEK,
	// and staffName when they are care team), with rows, in one commit; named is false when
	// the person is absent or has a name already (nothing is written then).
	NamePerson(ctx context.Context, subject string, sealed []byte, wrappedDEK, staffName string, at time.Time, rows []outbox.Event) (named bool, err error)
}

// KnownPeople is who the directory every service watches holds, as it holds them now.
type KnownPeople interface {
	Person(subject string) (*directoryv1.PersonEntry, bool)
}
