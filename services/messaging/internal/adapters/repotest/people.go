package repotest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// PersonRepository is the contract of domain.PersonRepository.
func PersonRepository(t *testing.T, newStore Factory) {
	sub := newStore(t)
	f := newFixture(t, sub)
	ctx := t.Context()
	// in is f for a case: its failures are the case's.
	in := func(t *testing.T) *fixture { c := *f; c.t = t; return &c }
	active, deactivated := directoryv1.PersonStatus_PERSON_STATUS_ACTIVE, directoryv1.PersonStatus_PERSON_STATUS_DEACTIVATED
	// staff returns a provisioned clinician with every field set, created and updated at f.now.
	staff := func(subject string) domain.Person {
		return domain.Person{Subject: subject, ExternalID: id("ext"), UserName: id("user") + "@example.org",
			DisplayNameSealed: []byte("sealed-name-" + subject), WrappedDEK: "vault:v1:" + id("dek"), StaffDisplayName: "Dr " + subject,
			Roles: []commonv1.Role{commonv1.Role_ROLE_CLINICIAN, commonv1.Role_ROLE_STAFF}, Status: active,
			Source: domain.SourceProvisioned, CreatedAt: f.now, UpdatedAt: f.now}
	}
	// create stores p as a new person with rows and fails the test unless it is stored as given.
	create := func(t *testing.T, p domain.Person, rows ...outbox.Event) domain.Person {
		t.Helper()
		calls := 0
		got, err := f.s.PutPerson(ctx, p.Subject, func(cur domain.Person, exists bool) (domain.Person, []outbox.Event, error) {
			calls++
			if exists {
				t.Errorf("PutPerson(new %s): change got exists = true, cur %+v", p.Subject, cur)
			}
			return p, rows, nil
		})
		if err != nil || calls != 1 {
			t.Fatalf("PutPerson(new %s) = %v after %d calls of change, want nil after 1", p.Subject, err, calls)
		}
		if d := personDiff(got, p); d != "" {
			t.Fatalf("PutPerson(new %s) returned %s", p.Subject, d)
		}
		return got
	}
	// stored reads the person back by both Person and PeopleBySubject, failing the test unless
	// both hold want.
	stored := func(t *testing.T, what string, want domain.Person) {
		t.Helper()
		got, err := f.s.Person(ctx, want.Subject)
		if err != nil {
			t.Fatalf("%s: Person(%s) = %v", what, want.Subject, err)
		}
		if d := personDiff(got, want); d != "" {
			t.Errorf("%s: Person(%s): %s", what, want.Subject, d)
		}
		m, err := f.s.PeopleBySubject(ctx, []string{want.Subject})
		if err != nil {
			t.Fatalf("%s: PeopleBySubject(%s) = %v", what, want.Subject, err)
		}
		if got, ok := m[want.Subject]; !ok || len(m) != 1 {
			t.Errorf("%s: PeopleBySubject(%s) = %+v, want just them", what, want.Subject, m)
		} else if d := personDiff(got, want); d != "" {
			t.Errorf("%s: PeopleBySubject(%s): %s", what, want.Subject, d)
		}
	}
	missing := func(t *testing.T, what, subject string) {
		t.Helper()
		if p, err := f.s.Person(ctx, subject); !errors.Is(err, domain.ErrPersonNotFound) {
			t.Errorf("%s: Person(%s) = %+v, %v; want ErrPersonNotFound", what, subject, p, err)
		}
	}

	t.Run("missing", func(t *testing.T) {
		missing(t, "never stored", id("person"))
	})

	t.Run("create and update", func(t *testing.T) {
		f := in(t)
		p := staff(id("person"))
		created := event("person-created")
		create(t, p, created)
		f.wantRows("create", created)
		stored(t, "created", p)

		later := f.now.Add(time.Hour)
		want := domain.Person{Subject: p.Subject, ExternalID: id("ext"), UserName: id("user") + "@example.org",
			DisplayNameSealed: []byte("resealed-name"), WrappedDEK: "vault:v1:" + id("dek"), StaffDisplayName: "",
			Roles: []commonv1.Role{commonv1.Role_ROLE_ADMIN}, Status: deactivated, Source: domain.SourceSeed,
			CreatedAt: p.CreatedAt, UpdatedAt: later}
		updated := event("person-updated")
		got, err := f.s.PutPerson(ctx, p.Subject, func(cur domain.Person, exists bool) (domain.Person, []outbox.Event, error) {
			if !exists {
				t.Errorf("PutPerson(update): change got exists = false")
			}
			if d := personDiff(cur, p); d != "" {
				t.Errorf("PutPerson(update): change got cur with %s", d)
			}
			next := want
			// The creation time is the repository's to keep: a change cannot move it.
			next.CreatedAt = later
			return next, []outbox.Event{updated}, nil
		})
		if err != nil {
			t.Fatalf("PutPerson(update) = %v", err)
		}
		if d := personDiff(got, want); d != "" {
			t.Errorf("PutPerson(update) returned %s", d)
		}
		f.wantRows("update", created, updated)
		stored(t, "updated", want)

		// The person returned does not share its slices with the store.
		kept := want
		kept.DisplayNameSealed, kept.Roles = slices.Clone(want.DisplayNameSealed), slices.Clone(want.Roles)
		got.DisplayNameSealed[0], got.Roles[0] = 'X', commonv1.Role_ROLE_PATIENT
		stored(t, "after the caller changed the returned slices", kept)
		read, _ := f.s.Person(ctx, p.Subject)
		read.DisplayNameSealed[0], read.Roles[0] = 'X', commonv1.Role_ROLE_PATIENT
		stored(t, "after the caller changed the slices Person read", kept)
		bySubject, _ := f.s.PeopleBySubject(ctx, []string{p.Subject})
		read = bySubject[p.Subject]
		read.DisplayNameSealed[0], read.Roles[0] = 'X', commonv1.Role_ROLE_PATIENT
		stored(t, "after the caller changed the slices PeopleBySubject read", kept)
	})

	t.Run("change refuses", func(t *testing.T) {
		f := in(t)
		refused := errors.New("refused")
		p := staff(id("person"))
		row := event("person-refused")
		if _, err := f.s.PutPerson(ctx, p.Subject, func(domain.Person, bool) (domain.Person, []outbox.Event, error) {
			return p, []outbox.Event{row}, refused
		}); !errors.Is(err, refused) {
			t.Fatalf("PutPerson(new, change refuses) = %v, want the refusal", err)
		}
		f.wantNoRows("refused create", row)
		missing(t, "refused create", p.Subject)

		create(t, p)
		row = event("person-refused-update")
		if _, err := f.s.PutPerson(ctx, p.Subject, func(cur domain.Person, _ bool) (domain.Person, []outbox.Event, error) {
			cur.Status, cur.Roles, cur.UpdatedAt = deactivated, []commonv1.Role{commonv1.Role_ROLE_ADMIN}, f.now.Add(time.Hour)
			return cur, []outbox.Event{row}, refused
		}); !errors.Is(err, refused) {
			t.Fatalf("PutPerson(update, change refuses) = %v, want the refusal", err)
		}
		f.wantNoRows("refused update", row)
		stored(t, "refused update", p)
	})

	t.Run("ids taken", func(t *testing.T) {
		f := in(t)
		ada := staff(id("person"))
		ada.UserName, ada.ExternalID = "Dr.Ada@"+id("x"), id("ext")
		create(t, ada)
		refusedPut := func(what string, p domain.Person) {
			t.Helper()
			row := event("person-id-taken")
			if _, err := f.s.PutPerson(ctx, p.Subject, func(domain.Person, bool) (domain.Person, []outbox.Event, error) {
				return p, []outbox.Event{row}, nil
			}); !errors.Is(err, domain.ErrPersonIDTaken) {
				t.Errorf("PutPerson(%s) = %v, want ErrPersonIDTaken", what, err)
			}
			f.wantNoRows(what, row)
		}

		sameName := staff(id("person"))
		sameName.UserName = strings.ToLower(ada.UserName) // "dr.ada@…"
		refusedPut("user name in another case", sameName)
		missing(t, "user name taken", sameName.Subject)

		sameExt := staff(id("person"))
		sameExt.ExternalID = ada.ExternalID
		refusedPut("same external id", sameExt)
		missing(t, "external id taken", sameExt.Subject)

		// An update that would take them is refused too, and leaves the person as they were.
		other := create(t, staff(id("person")))
		taking := other
		taking.UserName, taking.UpdatedAt = strings.ToUpper(ada.UserName), f.now.Add(time.Minute)
		refusedPut("update to a taken user name", taking)
		taking = other
		taking.ExternalID, taking.UpdatedAt = ada.ExternalID, f.now.Add(time.Minute)
		refusedPut("update to a taken external id", taking)
		stored(t, "refused updates", other)

		// External ids compare exactly; a person keeps their own ids when they change case.
		upperExt := staff(id("person"))
		upperExt.ExternalID = strings.ToUpper(ada.ExternalID)
		create(t, upperExt)
		recased := ada
		recased.UserName, recased.UpdatedAt = strings.ToUpper(ada.UserName), f.now.Add(time.Minute)
		if _, err := f.s.PutPerson(ctx, ada.Subject, func(domain.Person, bool) (domain.Person, []outbox.Event, error) {
			return recased, nil, nil
		}); err != nil {
			t.Fatalf("PutPerson(own user name in another case) = %v", err)
		}
		stored(t, "own user name recased", recased)

		// Many people may have neither.
		for range 2 {
			p := staff(id("person"))
			p.UserName, p.ExternalID = "", ""
			create(t, p)
			stored(t, "no ids", p)
		}
	})

	t.Run("query", func(t *testing.T) {
		prefix := id("q")
		var people []domain.Person
		for i, src := range []domain.PersonSource{domain.SourceFirstContact, domain.SourceProvisioned, domain.SourceSeed, domain.SourceProvisioned} {
			p := staff(fmt.Sprintf("%s-%c", prefix, 'a'+i))
			p.Source = src
			p.UserName = fmt.Sprintf("Name.%c.%s@Example.org", 'A'+i, prefix)
			people = append(people, create(t, p))
		}
		a, b, c, d := people[0], people[1], people[2], people[3]
		query := func(q domain.PersonQuery) []string {
			t.Helper()
			got, err := f.s.People(ctx, q)
			if err != nil {
				t.Fatalf("People(%+v) = %v", q, err)
			}
			if !slices.IsSortedFunc(got, func(x, y domain.Person) int { return strings.Compare(x.Subject, y.Subject) }) {
				t.Errorf("People(%+v) not by subject", q)
			}
			var out []string
			for _, p := range got {
				if len(q.Sources) > 0 && !slices.Contains(q.Sources, p.Source) {
					t.Errorf("People(%+v) returned %s of source %d", q, p.Subject, p.Source)
				}
				if q.ExternalID != "" && p.ExternalID != q.ExternalID {
					t.Errorf("People(%+v) returned %s with external id %q", q, p.Subject, p.ExternalID)
				}
				if !strings.HasPrefix(p.Subject, prefix) {
					continue
				}
				i := slices.IndexFunc(people, func(x domain.Person) bool { return x.Subject == p.Subject })
				if d := personDiff(p, people[i]); d != "" {
					t.Errorf("People(%+v) returned %s", q, d)
				}
				out = append(out, p.Subject)
			}
			return out
		}
		want := func(what string, got []string, want ...domain.Person) {
			t.Helper()
			var subjects []string
			for _, p := range want {
				subjects = append(subjects, p.Subject)
			}
			if !slices.Equal(got, subjects) {
				t.Errorf("%s = %v, want %v", what, got, subjects)
			}
		}
		want("first page", query(domain.PersonQuery{AfterSubject: prefix, Limit: 2}), a, b)
		want("second page", query(domain.PersonQuery{AfterSubject: b.Subject, Limit: 2}), c, d)
		want("limit 1", query(domain.PersonQuery{AfterSubject: a.Subject, Limit: 1}), b)
		want("after the last", query(domain.PersonQuery{AfterSubject: d.Subject, Limit: 10}))
		if got, _ := f.s.People(ctx, domain.PersonQuery{AfterSubject: prefix, Limit: 3}); len(got) != 3 {
			t.Errorf("People(limit 3) = %d people", len(got))
		}

		want("user name, upper case", query(domain.PersonQuery{UserName: strings.ToUpper(b.UserName), Limit: 10}), b)
		want("user name, lower case", query(domain.PersonQuery{UserName: strings.ToLower(b.UserName), Limit: 10}), b)
		want("external id", query(domain.PersonQuery{ExternalID: c.ExternalID, Limit: 10}), c)
		want("external id in another case", query(domain.PersonQuery{ExternalID: strings.ToUpper(c.ExternalID), Limit: 10}))
		want("user name and another's external id", query(domain.PersonQuery{UserName: b.UserName, ExternalID: c.ExternalID, Limit: 10}))
		want("user name after them", query(domain.PersonQuery{UserName: b.UserName, AfterSubject: b.Subject, Limit: 10}))

		want("provisioned", query(domain.PersonQuery{Sources: []domain.PersonSource{domain.SourceProvisioned}, AfterSubject: prefix, Limit: 100}), b, d)
		want("first contact or seed", query(domain.PersonQuery{Sources: []domain.PersonSource{domain.SourceFirstContact, domain.SourceSeed}, AfterSubject: prefix, Limit: 100}), a, c)
		want("provisioned after b", query(domain.PersonQuery{Sources: []domain.PersonSource{domain.SourceProvisioned}, AfterSubject: b.Subject, Limit: 1}), d)
		want("user name of another source", query(domain.PersonQuery{UserName: b.UserName, Sources: []domain.PersonSource{domain.SourceSeed}, Limit: 10}))
	})

	t.Run("first contact", func(t *testing.T) {
		f := in(t)
		p := domain.Person{Subject: id("patient"), DisplayNameSealed: []byte("sealed-patient-name"), WrappedDEK: "vault:v1:" + id("dek"),
			Roles: []commonv1.Role{commonv1.Role_ROLE_PATIENT}, Status: active, PatientID: id("record"),
			Source: domain.SourceFirstContact, CreatedAt: f.now, UpdatedAt: f.now}
		row := event("first-contact")
		recorded, err := f.s.RecordFirstContact(ctx, p, []outbox.Event{row})
		if err != nil || !recorded {
			t.Fatalf("RecordFirstContact = %t, %v; want recorded", recorded, err)
		}
		f.wantRows("first contact", row)
		stored(t, "first contact", p)

		again := p
		again.PatientID, again.Roles, again.DisplayNameSealed = id("record"), []commonv1.Role{commonv1.Role_ROLE_PROXY}, []byte("other-name")
		again.CreatedAt, again.UpdatedAt = f.now.Add(time.Hour), f.now.Add(time.Hour)
		row2 := event("first-contact-again")
		if recorded, err := f.s.RecordFirstContact(ctx, again, []outbox.Event{row2}); err != nil || recorded {
			t.Fatalf("RecordFirstContact(again) = %t, %v; want not recorded", recorded, err)
		}
		f.wantNoRows("first contact again", row2)
		stored(t, "first contact again", p)

		// First contact records who a token names; the user name and external id are
		// provisioning's, and Postgres stores neither (NULL, outside the unique indexes).
		withIDs := p
		withIDs.Subject, withIDs.UserName, withIDs.ExternalID = id("patient"), id("user"), id("ext")
		if recorded, err := f.s.RecordFirstContact(ctx, withIDs, nil); err != nil || !recorded {
			t.Fatalf("RecordFirstContact(with ids) = %t, %v; want recorded", recorded, err)
		}
		withIDs.UserName, withIDs.ExternalID = "", ""
		stored(t, "first contact with ids", withIDs)

		// Provisioning later keeps the patient record and the creation time.
		later := f.now.Add(2 * time.Hour)
		want := p
		want.Status, want.UpdatedAt, want.Source = deactivated, later, domain.SourceProvisioned
		got, err := f.s.PutPerson(ctx, p.Subject, func(cur domain.Person, exists bool) (domain.Person, []outbox.Event, error) {
			if !exists {
				t.Errorf("PutPerson(after first contact): change got exists = false")
			}
			if d := personDiff(cur, p); d != "" {
				t.Errorf("PutPerson(after first contact): change got cur with %s", d)
			}
			next := want
			next.PatientID, next.CreatedAt = "", later
			return next, nil, nil
		})
		if err != nil {
			t.Fatalf("PutPerson(after first contact) = %v", err)
		}
		if d := personDiff(got, want); d != "" {
			t.Errorf("PutPerson(after first contact) returned %s", d)
		}
		stored(t, "provisioned after first contact", want)

		// A provisioned person is held already, too.
		staffer := create(t, staff(id("person")))
		row3 := event("first-contact-provisioned")
		fc := domain.Person{Subject: staffer.Subject, Roles: []commonv1.Role{commonv1.Role_ROLE_PATIENT}, Status: active,
			PatientID: id("record"), Source: domain.SourceFirstContact, CreatedAt: later, UpdatedAt: later}
		if recorded, err := f.s.RecordFirstContact(ctx, fc, []outbox.Event{row3}); err != nil || recorded {
			t.Fatalf("RecordFirstContact(provisioned) = %t, %v; want not recorded", recorded, err)
		}
		f.wantNoRows("first contact of a provisioned person", row3)
		stored(t, "first contact of a provisioned person", staffer)
	})

	t.Run("name a person held without one", func(t *testing.T) {
		f := in(t)
		seeded := domain.Person{Subject: id("person"), Roles: []commonv1.Role{commonv1.Role_ROLE_CLINICIAN}, Status: active,
			Source: domain.SourceSeed, CreatedAt: f.now, UpdatedAt: f.now}
		if recorded, err := f.s.RecordFirstContact(ctx, seeded, nil); err != nil || !recorded {
			t.Fatalf("RecordFirstContact(seeded) = %t, %v", recorded, err)
		}
		later := f.now.Add(time.Minute)
		row := event("person-named")
		named, err := f.s.NamePerson(ctx, seeded.Subject, []byte("sealed-name"), "vault:v1:"+id("dek"), "Dr Named", later, []outbox.Event{row})
		if err != nil || !named {
			t.Fatalf("NamePerson = %t, %v; want named", named, err)
		}
		f.wantRows("person named", row)
		want := seeded
		got, _ := f.s.Person(ctx, seeded.Subject)
		want.DisplayNameSealed, want.WrappedDEK, want.StaffDisplayName, want.UpdatedAt = []byte("sealed-name"), got.WrappedDEK, "Dr Named", later
		stored(t, "person named", want)

		// Named already, or absent: nothing is written.
		row2 := event("person-named-again")
		if named, err := f.s.NamePerson(ctx, seeded.Subject, []byte("other-name"), "vault:v1:"+id("dek"), "Dr Other", later.Add(time.Minute), []outbox.Event{row2}); err != nil || named {
			t.Errorf("NamePerson(named already) = %t, %v; want not named", named, err)
		}
		row3 := event("person-named-absent")
		if named, err := f.s.NamePerson(ctx, id("person"), []byte("x"), "vault:v1:x", "", later, []outbox.Event{row3}); err != nil || named {
			t.Errorf("NamePerson(absent) = %t, %v; want not named", named, err)
		}
		f.wantNoRows("person named again", row2)
		f.wantNoRows("absent person named", row3)
		stored(t, "person named again", want)
	})

	t.Run("by subject", func(t *testing.T) {
		a, b := create(t, staff(id("person"))), create(t, staff(id("person")))
		absent := id("person")
		got, err := f.s.PeopleBySubject(ctx, []string{a.Subject, absent, b.Subject, a.Subject})
		if err != nil {
			t.Fatalf("PeopleBySubject = %v", err)
		}
		if len(got) != 2 {
			t.Errorf("PeopleBySubject = %d people, want 2: %+v", len(got), got)
		}
		if _, ok := got[absent]; ok {
			t.Errorf("PeopleBySubject holds absent %s", absent)
		}
		for _, want := range []domain.Person{a, b} {
			if d := personDiff(got[want.Subject], want); d != "" {
				t.Errorf("PeopleBySubject[%s]: %s", want.Subject, d)
			}
		}
		for _, in := range [][]string{nil, {}, {absent}} {
			if got, err := f.s.PeopleBySubject(ctx, in); err != nil || len(got) != 0 {
				t.Errorf("PeopleBySubject(%q) = %+v, %v; want an empty map", in, got, err)
			}
		}
	})
}

// personDiff describes how got differs from want ("" when it does not).
func personDiff(got, want domain.Person) string {
	var d []string
	field := func(name string, same bool, g, w any) {
		if !same {
			d = append(d, fmt.Sprintf("%s %v, want %v", name, g, w))
		}
	}
	field("Subject", got.Subject == want.Subject, got.Subject, want.Subject)
	field("ExternalID", got.ExternalID == want.ExternalID, got.ExternalID, want.ExternalID)
	field("UserName", got.UserName == want.UserName, got.UserName, want.UserName)
	field("DisplayNameSealed", bytes.Equal(got.DisplayNameSealed, want.DisplayNameSealed), got.DisplayNameSealed, want.DisplayNameSealed)
	field("WrappedDEK", got.WrappedDEK == want.WrappedDEK, got.WrappedDEK, want.WrappedDEK)
	field("StaffDisplayName", got.StaffDisplayName == want.StaffDisplayName, got.StaffDisplayName, want.StaffDisplayName)
	field("Roles", slices.Equal(got.Roles, want.Roles), got.Roles, want.Roles)
	field("Status", got.Status == want.Status, got.Status, want.Status)
	field("PatientID", got.PatientID == want.PatientID, got.PatientID, want.PatientID)
	field("Source", got.Source == want.Source, got.Source, want.Source)
	field("CreatedAt", got.CreatedAt.Equal(want.CreatedAt), got.CreatedAt, want.CreatedAt)
	field("UpdatedAt", got.UpdatedAt.Equal(want.UpdatedAt), got.UpdatedAt, want.UpdatedAt)
	return strings.Join(d, "; ")
}
