package app_test

import (
	"bytes"
	"slices"
	"testing"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/app"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// knownPeople is a directory snapshot the test writes.
type knownPeople map[string]*directoryv1.PersonEntry

func (k knownPeople) Person(subject string) (*directoryv1.PersonEntry, bool) {
	e, ok := k[subject]
	return e, ok
}

func reasonsOf(t *testing.T, h *harness, subject string) []string {
	t.Helper()
	var out []string
	for _, r := range h.auditRecords(t) {
		if r.GetRecordId() == subject {
			out = append(out, r.GetReasonCode())
		}
	}
	return out
}

// TestFirstContact: who is recorded at their first call, who is named later, and who never is.
func TestFirstContact(t *testing.T) {
	known := knownPeople{}
	h := newHarness(t, func(_ *app.Config, d *app.Deps) { d.Known = known })
	ctx := t.Context()

	met := patientOf("user-met", "p-3001")
	met.Name = "  Riley Example  "
	h.svc.FirstContact(ctx, met)
	p, err := h.store.Person(ctx, met.Subject)
	if err != nil {
		t.Fatalf("the patient met was not recorded: %v", err)
	}
	if p.Source != domain.SourceFirstContact || p.PatientID != "p-3001" || p.StaffDisplayName != "" ||
		len(p.Roles) != 1 || p.Roles[0] != commonv1.Role_ROLE_PATIENT {
		t.Errorf("recorded %+v, want first contact, the patient record, role patient, no name in clear", p)
	}
	if len(p.DisplayNameSealed) == 0 || bytes.Contains(p.DisplayNameSealed, []byte("Riley")) || p.WrappedDEK == "" {
		t.Errorf("the name is not sealed under a DEK of the person's: %q", p.DisplayNameSealed)
	}
	if got := reasonsOf(t, h, met.Subject); len(got) != 1 || got[0] != "person_first_contact" {
		t.Errorf("audit reasons = %v, want one person_first_contact", got)
	}
	v, err := h.svc.GetPerson(ctx, admin, met.Subject)
	if err != nil || v.DisplayName != "Riley Example" {
		t.Errorf("GetPerson = %q, %v; want the name, trimmed", v.DisplayName, err)
	}

	// Known and named: nothing more is written.
	known[met.Subject] = &directoryv1.PersonEntry{Subject: met.Subject, Named: true}
	h.svc.FirstContact(ctx, met)
	if got := reasonsOf(t, h, met.Subject); len(got) != 1 {
		t.Errorf("a second call wrote %v", got)
	}

	// A seeded clinician without a name gets their token's, and it is kept in clear for the
	// access report.
	seeded := clinicianIn("user-clinician-seeded", "pool-cardiology")
	if _, err := h.store.RecordFirstContact(ctx, domain.Person{Subject: seeded.Subject, Roles: []commonv1.Role{commonv1.Role_ROLE_CLINICIAN},
		Status: directoryv1.PersonStatus_PERSON_STATUS_ACTIVE, Source: domain.SourceSeed, CreatedAt: h.clock.Now()}, nil); err != nil {
		t.Fatal(err)
	}
	known[seeded.Subject] = &directoryv1.PersonEntry{Subject: seeded.Subject}
	h.svc.FirstContact(ctx, seeded) // no name claim: nothing to learn
	seeded.Name = "Dr. Seeded"
	h.svc.FirstContact(ctx, seeded)
	s, _ := h.store.Person(ctx, seeded.Subject)
	if s.Source != domain.SourceSeed || s.StaffDisplayName != "Dr. Seeded" || len(s.DisplayNameSealed) == 0 {
		t.Errorf("the seeded clinician = %+v, want still seeded, named, the name in clear for staff", s)
	}
	if got := reasonsOf(t, h, seeded.Subject); len(got) != 1 || got[0] != "person_named" {
		t.Errorf("audit reasons = %v, want one person_named", got)
	}

	// Relayed principals and services are never recorded.
	relayed := patientOf("user-relayed", "p-3002")
	relayed.Name, relayed.Via = "Via Someone", "service:attachment"
	h.svc.FirstContact(ctx, relayed)
	h.svc.FirstContact(ctx, attachments)
	for _, subject := range []string{relayed.Subject, attachments.Subject} {
		if _, err := h.store.Person(ctx, subject); err == nil {
			t.Errorf("%s was recorded", subject)
		}
	}
}

// TestProvisionPerson: the refusals of provisioning, and what it stores.
func TestProvisionPerson(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	nurse := app.PersonInput{Subject: "user-nurse", UserName: "nurse@example.org", DisplayName: "Nurse Example",
		Roles: []commonv1.Role{commonv1.Role_ROLE_STAFF}}

	cases := []struct {
		name string
		as   *auth.Principal
		in   app.PersonInput
		want usererr.Kind
	}{
		{"not an admin", clinician, nurse, usererr.PermissionDenied},
		{"no roles", admin, app.PersonInput{Subject: "user-x"}, usererr.InvalidArgument},
		{"a patient's role", admin, app.PersonInput{Subject: "user-x", Roles: []commonv1.Role{commonv1.Role_ROLE_PATIENT}}, usererr.InvalidArgument},
		{"a service subject", admin, app.PersonInput{Subject: "service:audit", Roles: []commonv1.Role{commonv1.Role_ROLE_STAFF}}, usererr.InvalidArgument},
		{"deactivating yourself", admin, app.PersonInput{Subject: admin.Subject, Roles: []commonv1.Role{commonv1.Role_ROLE_ADMIN},
			Status: directoryv1.PersonStatus_PERSON_STATUS_DEACTIVATED}, usererr.PermissionDenied},
	}
	for _, c := range cases {
		if _, _, err := h.svc.ProvisionPerson(ctx, c.as, c.in); !isKind(err, c.want) {
			t.Errorf("%s: ProvisionPerson = %v, want %v", c.name, err, c.want)
		}
	}

	v, created, err := h.svc.ProvisionPerson(ctx, admin, nurse)
	if err != nil || !created || v.Person.Status != directoryv1.PersonStatus_PERSON_STATUS_ACTIVE || v.DisplayName != "Nurse Example" {
		t.Fatalf("ProvisionPerson = %+v, %v, %v", v, created, err)
	}
	again := nurse
	again.DisplayName = "Nurse Renamed"
	if v, created, err := h.svc.ProvisionPerson(ctx, admin, again); err != nil || created || v.Person.StaffDisplayName != "Nurse Renamed" {
		t.Errorf("ProvisionPerson(again) = %+v, %v, %v; want replaced", v, created, err)
	}
	taken := app.PersonInput{Subject: "user-nurse-2", UserName: "NURSE@example.org", Roles: []commonv1.Role{commonv1.Role_ROLE_STAFF}}
	if _, _, err := h.svc.ProvisionPerson(ctx, admin, taken); !isKind(err, usererr.AlreadyExists) {
		t.Errorf("ProvisionPerson(user name taken) = %v, want AlreadyExists", err)
	}

	// A patient met at first contact is not the organisation's to provision; a clinician is.
	met := patientOf("user-met-2", "p-3003")
	h.svc.FirstContact(ctx, met)
	if _, _, err := h.svc.ProvisionPerson(ctx, admin, app.PersonInput{Subject: met.Subject, Roles: []commonv1.Role{commonv1.Role_ROLE_CLINICIAN}}); !isKind(err, usererr.FailedPrecondition) {
		t.Errorf("ProvisionPerson(a patient met) = %v, want FailedPrecondition", err)
	}
	early := clinicianIn("user-clinician-early", "pool-cardiology")
	h.svc.FirstContact(ctx, early)
	if v, created, err := h.svc.ProvisionPerson(ctx, admin, app.PersonInput{Subject: early.Subject, Roles: []commonv1.Role{commonv1.Role_ROLE_CLINICIAN}}); err != nil || created ||
		v.Person.Source != domain.SourceProvisioned {
		t.Errorf("ProvisionPerson(a clinician met early) = %+v, %v, %v; want taken over", v.Person, created, err)
	}

	if _, err := h.svc.SetPersonStatus(ctx, admin, "user-nobody", directoryv1.PersonStatus_PERSON_STATUS_DEACTIVATED); !isKind(err, usererr.NotFound) {
		t.Errorf("SetPersonStatus(nobody) = %v, want NotFound", err)
	}
	if _, err := h.svc.SetPersonStatus(ctx, admin, nurse.Subject, directoryv1.PersonStatus_PERSON_STATUS_UNSPECIFIED); !isKind(err, usererr.InvalidArgument) {
		t.Errorf("SetPersonStatus(unspecified) = %v, want InvalidArgument", err)
	}
	if v, err := h.svc.SetPersonStatus(ctx, admin, nurse.Subject, directoryv1.PersonStatus_PERSON_STATUS_DEACTIVATED); err != nil || v.Person.Active() {
		t.Errorf("SetPersonStatus(deactivate) = %+v, %v", v.Person, err)
	}
	if got := reasonsOf(t, h, nurse.Subject); !slices.Equal(got, []string{"no_permit", "person_provisioned", "person_provisioned", "person_deactivated"}) {
		t.Errorf("audit reasons = %v, want the clinician's refusal, provisioned twice, then deactivated", got)
	}

	page, next, err := h.svc.ListPeople(ctx, admin, domain.PersonQuery{Sources: []domain.PersonSource{domain.SourceProvisioned}}, 1, "")
	if err != nil || len(page) != 1 || next == "" {
		t.Fatalf("ListPeople(provisioned, page 1) = %d, %q, %v", len(page), next, err)
	}
	rest, next, err := h.svc.ListPeople(ctx, admin, domain.PersonQuery{Sources: []domain.PersonSource{domain.SourceProvisioned}}, 10, next)
	if err != nil || len(rest) != 1 || next != "" || rest[0].Person.Subject == page[0].Person.Subject {
		t.Errorf("ListPeople(provisioned, page 2) = %d, %q, %v; want the other of the two", len(rest), next, err)
	}
}

// isKind reports whether err is a usererr of kind.
func isKind(err error, kind usererr.Kind) bool {
	k, _ := usererr.KindOf(err)
	return err != nil && k == kind
}

// TestDisplayNamesFollowTheDirectory: names are looked up only for people the directory says
// are named, served from memory while their entry stays at the same version, and read again
// once it changes.
func TestDisplayNamesFollowTheDirectory(t *testing.T) {
	known := knownPeople{}
	h := newHarness(t, func(_ *app.Config, d *app.Deps) { d.Known = known })
	ctx := t.Context()
	named := patientOf("user-patient", "p-1001")
	named.Name = "Casey Before"
	h.svc.FirstContact(ctx, named)
	th := h.createThread(t, patient, "a subject", "a body").Thread.Thread
	creator := func() string {
		t.Helper()
		got, err := h.svc.GetThread(ctxAs(t, clinician), clinician, app.GetThreadCmd{ThreadID: th.ID})
		if err != nil {
			t.Fatalf("GetThread = %v", err)
		}
		return got.Names[patient.Subject]
	}

	// The directory does not say the patient is named yet: no lookup, no name.
	known[patient.Subject] = &directoryv1.PersonEntry{Subject: patient.Subject, Version: 1}
	if got := creator(); got != "" {
		t.Errorf("name while the directory says unnamed = %q, want none", got)
	}
	known[patient.Subject] = &directoryv1.PersonEntry{Subject: patient.Subject, Version: 2, Named: true}
	if got := creator(); got != "Casey Before" {
		t.Fatalf("name = %q, want the recorded one", got)
	}
	// The row changes but the entry does not (a replica the relay has not reached yet): the
	// cached name stands; once the entry moves on, the new row is read.
	if _, err := h.store.PutPerson(ctx, patient.Subject, func(cur domain.Person, _ bool) (domain.Person, []outbox.Event, error) {
		cur.DisplayNameSealed, cur.WrappedDEK = nil, ""
		return cur, nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := creator(); got != "Casey Before" {
		t.Errorf("name at the same entry version = %q, want the cached one", got)
	}
	known[patient.Subject] = &directoryv1.PersonEntry{Subject: patient.Subject, Version: 3, Named: true}
	if got := creator(); got != "" {
		t.Errorf("name after the entry changed = %q, want the row's (none)", got)
	}
}
