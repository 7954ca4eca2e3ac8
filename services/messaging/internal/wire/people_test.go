package wire_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

// personAudit is the audit record of the person subject with reason, or nil.
func personAudit(recs []*eventsv1.AuditRecord, subject, reason string) *eventsv1.AuditRecord {
	for _, r := range recs {
		if r.GetRecordType() == eventsv1.RecordType_RECORD_TYPE_PERSON && r.GetRecordId() == subject && r.GetReasonCode() == reason {
			return r
		}
	}
	return nil
}

// TestPeopleFirstContactAndNames: a patient met for the first time is recorded from their token
// with their name sealed (no table holds it in clear, no event or log carries it); a seeded
// clinician without a name gets the one their token carries; each then sees the other's name
// beside what they wrote, while the names stay out of everything that is not a read.
func TestPeopleFirstContactAndNames(t *testing.T) {
	e := newEnv(t)
	patientName := "Quinn " + marker(t, "patient-name")
	clinicianName := "Dr. " + marker(t, "clinician-name")
	patient := servicetest.Persona{Subject: "user-patient-met", Roles: []string{"patient"}, PatientID: "p-7001", Name: patientName}
	clinician := servicetest.Clinician
	clinician.Name = clinicianName

	created := e.createThread(t, patient, threadTo("pool-cardiology", "A first question", "a first question"))
	threadID := created.GetThread().GetThreadId()
	if got := created.GetThread().GetCreatedBy().GetDisplayName(); got != "" {
		t.Errorf("CreateThread's own answer names its writer %q; names are for readers", got)
	}
	cctx := e.as(t, clinician)
	if _, err := e.api.SendMessage(cctx, &messagingv1.SendMessageRequest{ThreadId: threadID, Body: "an answer", ClientRequestId: uuid.NewString()}); err != nil {
		t.Fatalf("SendMessage(clinician) = %v", err)
	}

	// The clinician sees the patient's name; the patient the clinician's.
	got, err := e.api.GetThread(cctx, &messagingv1.GetThreadRequest{ThreadId: threadID})
	if err != nil {
		t.Fatalf("GetThread(clinician) = %v", err)
	}
	if n := got.GetThread().GetCreatedBy().GetDisplayName(); n != patientName {
		t.Errorf("created_by.display_name to the clinician = %q, want the patient's name", n)
	}
	names := map[string]string{}
	for _, m := range got.GetMessages() {
		names[m.GetSender().GetSubject()] = m.GetSender().GetDisplayName()
	}
	if names[patient.Subject] != patientName || names[clinician.Subject] != clinicianName {
		t.Errorf("sender names = %v, want both names", names)
	}
	pctx := e.as(t, patient)
	mine, err := e.api.GetThread(pctx, &messagingv1.GetThreadRequest{ThreadId: threadID})
	if err != nil {
		t.Fatalf("GetThread(patient) = %v", err)
	}
	last := mine.GetMessages()[len(mine.GetMessages())-1]
	if last.GetSender().GetDisplayName() != clinicianName {
		t.Errorf("the clinician's message shows the patient %q, want the clinician's name", last.GetSender().GetDisplayName())
	}
	one, err := e.api.GetMessage(pctx, &messagingv1.GetMessageRequest{ThreadId: threadID, MessageId: last.GetMessageId()})
	if err != nil || one.GetMessage().GetSender().GetDisplayName() != clinicianName {
		t.Errorf("GetMessage(patient) sender = %q, %v; want the clinician's name", one.GetMessage().GetSender().GetDisplayName(), err)
	}

	// The directory holds both, as admins see them.
	admin := e.as(t, servicetest.Admin)
	met, err := e.api.GetPerson(admin, &messagingv1.GetPersonRequest{Subject: patient.Subject})
	if err != nil {
		t.Fatalf("GetPerson(patient) = %v", err)
	}
	if p := met.GetPerson(); p.GetSource() != messagingv1.PersonSource_PERSON_SOURCE_FIRST_CONTACT || p.GetDisplayName() != patientName ||
		p.GetPatientId() != "p-7001" || !slices.Equal(p.GetRoles(), []commonv1.Role{commonv1.Role_ROLE_PATIENT}) {
		t.Errorf("the patient met = %v, want first contact, their name, record and role", p)
	}
	_, err = e.api.GetPerson(e.as(t, clinician), &messagingv1.GetPersonRequest{Subject: patient.Subject})
	wantCode(t, "GetPerson(as clinician)", err, codes.PermissionDenied)
	recs := e.auditRecords(t)
	// The harness's directory entries do not come from messaging's store, so the seeded
	// clinician is recorded as met too (over a store that holds them, as the dev stack's seed
	// does, the record is "person_named": the repository contract tests NamePerson).
	if personAudit(recs, patient.Subject, "person_first_contact") == nil ||
		(personAudit(recs, clinician.Subject, "person_named") == nil && personAudit(recs, clinician.Subject, "person_first_contact") == nil) {
		t.Errorf("no audit record of the first contact and of the clinician's name")
	}
	// The patient's name is sealed everywhere; the clinician's is kept in clear for the access
	// report only, in people.staff_display_name.
	if hits := e.rawRowsContain(t, patientName); len(hits) > 0 {
		t.Errorf("the patient's name is in clear in %v", hits)
	}
	var staffName string
	if err := e.h.Proc.Pool.QueryRow(t.Context(), `SELECT staff_display_name FROM people WHERE subject = $1`, clinician.Subject).Scan(&staffName); err != nil || staffName != clinicianName {
		t.Errorf("staff_display_name = %q, %v; want the clinician's name", staffName, err)
	}
	if entry, ok := e.h.Proc.Directory.Person(patient.Subject); !ok || !entry.GetNamed() || entry.GetStaffDisplayName() != "" {
		t.Errorf("the patient's directory entry = %v, want named, with no name in it", entry)
	}
	for _, name := range []string{patientName, clinicianName} {
		if e.publishedContain(t, name) {
			t.Errorf("a published event or audit record holds a name")
		}
	}
}

// TestProvisioningAndDeactivation: admins provision care-team members; a deactivated member is
// refused on their next call with a token still valid, and admitted again once reactivated;
// patients are not provisioned, and nobody deactivates themselves.
func TestProvisioningAndDeactivation(t *testing.T) {
	e := newEnv(t)
	admin := e.as(t, servicetest.Admin)
	nurse := servicetest.Persona{Subject: "user-nurse-prov", Roles: []string{"staff"}, Pools: []string{"pool-cardiology"}}
	person := &messagingv1.Person{Subject: nurse.Subject, UserName: "Nurse.Prov@example.org", ExternalId: "idp-4711",
		DisplayName: "Nurse " + marker(t, "nurse"), Roles: []commonv1.Role{commonv1.Role_ROLE_STAFF}}

	_, err := e.api.ProvisionPerson(e.as(t, servicetest.Clinician), &messagingv1.ProvisionPersonRequest{Person: person})
	wantCode(t, "ProvisionPerson(as clinician)", err, codes.PermissionDenied)
	res, err := e.api.ProvisionPerson(admin, &messagingv1.ProvisionPersonRequest{Person: person})
	if err != nil || !res.GetCreated() || res.GetPerson().GetStatus() != directoryv1.PersonStatus_PERSON_STATUS_ACTIVE ||
		res.GetPerson().GetSource() != messagingv1.PersonSource_PERSON_SOURCE_PROVISIONED {
		t.Fatalf("ProvisionPerson = %v, %v; want created, active, provisioned", res, err)
	}
	other := &messagingv1.Person{Subject: "user-nurse-other", UserName: "NURSE.PROV@example.org", Roles: []commonv1.Role{commonv1.Role_ROLE_STAFF}}
	_, err = e.api.ProvisionPerson(admin, &messagingv1.ProvisionPersonRequest{Person: other})
	wantReason(t, "ProvisionPerson(a user name taken, in other case)", err, codes.AlreadyExists, "PERSON_ID_TAKEN")
	met := servicetest.Persona{Subject: "user-patient-prov", Roles: []string{"patient"}, PatientID: "p-7002", Name: "Pat " + marker(t, "patient")}
	if _, err := e.api.ListThreads(e.as(t, met), &messagingv1.ListThreadsRequest{}); err != nil {
		t.Fatalf("ListThreads(patient) = %v", err)
	}
	_, err = e.api.ProvisionPerson(admin, &messagingv1.ProvisionPersonRequest{Person: &messagingv1.Person{Subject: met.Subject,
		Roles: []commonv1.Role{commonv1.Role_ROLE_CLINICIAN}}})
	wantReason(t, "ProvisionPerson(a patient met at first contact)", err, codes.FailedPrecondition, "PERSON_NOT_PROVISIONED")
	_, err = e.api.ProvisionPerson(admin, &messagingv1.ProvisionPersonRequest{Person: &messagingv1.Person{Subject: "user-x",
		Roles: []commonv1.Role{commonv1.Role_ROLE_PATIENT}}})
	wantCode(t, "ProvisionPerson(role patient)", err, codes.InvalidArgument)
	found, err := e.api.ListPeople(admin, &messagingv1.ListPeopleRequest{UserName: "nurse.prov@EXAMPLE.org",
		Sources: []messagingv1.PersonSource{messagingv1.PersonSource_PERSON_SOURCE_PROVISIONED}})
	if err != nil || len(found.GetPeople()) != 1 || found.GetPeople()[0].GetSubject() != nurse.Subject || found.GetPeople()[0].GetDisplayName() != person.GetDisplayName() {
		t.Fatalf("ListPeople(user name) = %v, %v; want the nurse, named", found, err)
	}

	// The nurse's token stays valid through all of this; only the directory changes.
	nctx := e.as(t, nurse)
	if _, err := e.api.ListThreads(nctx, &messagingv1.ListThreadsRequest{PoolIds: []string{"pool-cardiology"}}); err != nil {
		t.Fatalf("ListThreads(nurse) = %v", err)
	}
	_, err = e.api.SetPersonStatus(admin, &messagingv1.SetPersonStatusRequest{Subject: servicetest.Admin.Subject, Status: directoryv1.PersonStatus_PERSON_STATUS_DEACTIVATED})
	wantReason(t, "SetPersonStatus(yourself)", err, codes.PermissionDenied, "PERSON_IS_CALLER")
	if _, err := e.api.SetPersonStatus(admin, &messagingv1.SetPersonStatusRequest{Subject: nurse.Subject, Status: directoryv1.PersonStatus_PERSON_STATUS_DEACTIVATED}); err != nil {
		t.Fatalf("SetPersonStatus(deactivate) = %v", err)
	}
	_, err = e.api.ListThreads(nctx, &messagingv1.ListThreadsRequest{PoolIds: []string{"pool-cardiology"}})
	wantReason(t, "ListThreads(deactivated nurse)", err, codes.PermissionDenied, "ACCOUNT_DEACTIVATED")
	if _, err := e.api.SetPersonStatus(admin, &messagingv1.SetPersonStatusRequest{Subject: nurse.Subject, Status: directoryv1.PersonStatus_PERSON_STATUS_ACTIVE}); err != nil {
		t.Fatalf("SetPersonStatus(reactivate) = %v", err)
	}
	if _, err := e.api.ListThreads(nctx, &messagingv1.ListThreadsRequest{PoolIds: []string{"pool-cardiology"}}); err != nil {
		t.Fatalf("ListThreads(reactivated nurse) = %v", err)
	}
	recs := e.auditRecords(t)
	for _, reason := range []string{"person_provisioned", "person_deactivated", "person_reactivated"} {
		if r := personAudit(recs, nurse.Subject, reason); r == nil || r.GetActor().GetSubject() != servicetest.Admin.Subject {
			t.Errorf("no audit record %s by the admin", reason)
		}
	}
	if hits := e.rawRowsContain(t, "Nurse.Prov@example.org"); !slices.Equal(hits, []string{"people"}) {
		t.Errorf("the user name is in %v, want the people table only", hits)
	}
}

// scimClient calls e's SCIM endpoint over the HTTP edge with a bearer token.
type scimClient struct {
	t     *testing.T
	http  *http.Client
	base  string
	token string
}

func (c scimClient) do(method, path, body string) (int, map[string]any) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/scim+json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer func() { _ = res.Body.Close() }()
	raw, _ := io.ReadAll(res.Body)
	out := map[string]any{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			c.t.Fatalf("%s %s: %d, body not JSON: %q", method, path, res.StatusCode, raw)
		}
	}
	return res.StatusCode, out
}

func (c scimClient) must(want int, method, path, body string) map[string]any {
	c.t.Helper()
	code, out := c.do(method, path, body)
	if code != want {
		c.t.Fatalf("%s %s = %d %v, want %d", method, path, code, out, want)
	}
	return out
}

// TestSCIMProvisioning: an identity provider provisions a clinician and a care pool over
// /scim/v2 on the HTTP edge with its provisioning client's client-credentials token (no
// interactive login); the clinician works the pool at once and is refused on their next call
// once the provider deactivates them. Without a token, or with a token that is neither an
// admin's nor the provisioning client's, SCIM is refused as the admin rpcs are.
func TestSCIMProvisioning(t *testing.T) {
	e := newEnv(t, withEdge)
	idp := scimClient{t: t, http: edgeClient(e, false), base: e.edgeURL + "/scim/v2", token: e.h.Token(t, servicetest.Provisioner)}

	anon := idp
	anon.token = ""
	if code, _ := anon.do(http.MethodGet, "/Users", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /Users without a token = %d, want 401", code)
	}
	clin := idp
	clin.token = e.h.Token(t, servicetest.Clinician)
	if code, _ := clin.do(http.MethodGet, "/Users", ""); code != http.StatusForbidden {
		t.Errorf("GET /Users as a clinician = %d, want 403", code)
	}
	if cfg := anon.must(http.StatusOK, http.MethodGet, "/ServiceProviderConfig", ""); cfg["patch"] == nil {
		t.Errorf("ServiceProviderConfig = %v, want its features", cfg)
	}

	user := idp.must(http.StatusCreated, http.MethodPost, "/Users", `{
	  "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
	  "externalId": "user-clin-scim", "userName": "dr.scim@example.org", "active": true,
	  "displayName": "Dr. SCIM Example",
	  "roles": [{"primary": "True", "value": "clinician"}]
	}`)
	if user["id"] != "user-clin-scim" || user["active"] != true {
		t.Fatalf("created user = %v, want id user-clin-scim, active", user)
	}
	list := idp.must(http.StatusOK, http.MethodGet, "/Users?filter="+url.QueryEscape(`userName eq "DR.SCIM@example.org"`), "")
	if list["totalResults"] != float64(1) {
		t.Errorf("filter by userName = %v, want the one user", list)
	}
	// Patients met at first contact and seeded people are not the provider's users.
	if all := idp.must(http.StatusOK, http.MethodGet, "/Users", ""); all["totalResults"] != float64(1) {
		t.Errorf("GET /Users = %v, want the provisioned user only", all)
	}
	if code, _ := idp.do(http.MethodGet, "/Users/"+servicetest.Patient.Subject, ""); code != http.StatusNotFound {
		t.Errorf("GET /Users/<a patient> = %d, want 404", code)
	}

	group := idp.must(http.StatusCreated, http.MethodPost, "/Groups", `{
	  "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
	  "displayName": "SCIM Oncology", "members": [{"value": "user-clin-scim"}]
	}`)
	if group["id"] != "pool-scim-oncology" {
		t.Fatalf("created group = %v, want pool-scim-oncology", group)
	}
	got := idp.must(http.StatusOK, http.MethodGet, "/Groups/pool-scim-oncology", "")
	if members, _ := got["members"].([]any); len(members) != 1 {
		t.Errorf("group members = %v, want the clinician", got["members"])
	}

	// The clinician, whose token names no pool, works the pool the provider put them in.
	clinician := servicetest.Persona{Subject: "user-clin-scim", Roles: []string{"clinician"}}
	thread := e.createThread(t, servicetest.Patient, threadTo("pool-scim-oncology", "Oncology", "a question for oncology"))
	cctx := e.as(t, clinician)
	testkit.WaitFor(t, 10*time.Second, "the clinician's membership", func() bool {
		_, err := e.api.GetThread(cctx, &messagingv1.GetThreadRequest{ThreadId: thread.GetThread().GetThreadId()})
		return err == nil
	})
	members, err := e.api.ListPoolMembers(e.as(t, servicetest.Admin), &messagingv1.ListPoolMembersRequest{PoolId: "pool-scim-oncology"})
	if err != nil || len(members.GetMembers()) != 1 || members.GetMembers()[0].GetRole() != directoryv1.PoolRole_POOL_ROLE_CLINICIAN {
		t.Errorf("pool members = %v, %v; want the clinician, as a clinician", members, err)
	}

	// Entra ID deactivates with PATCH and a string boolean.
	idp.must(http.StatusOK, http.MethodPatch, "/Users/user-clin-scim", `{
	  "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
	  "Operations": [{"op": "Replace", "path": "active", "value": "False"}]
	}`)
	_, err = e.api.GetThread(cctx, &messagingv1.GetThreadRequest{ThreadId: thread.GetThread().GetThreadId()})
	wantReason(t, "GetThread(deactivated by SCIM)", err, codes.PermissionDenied, "ACCOUNT_DEACTIVATED")
	if u := idp.must(http.StatusOK, http.MethodGet, "/Users/user-clin-scim", ""); u["active"] != false {
		t.Errorf("user after PATCH = %v, want inactive", u)
	}

	// DELETE of a group keeps the pool, deactivated.
	idp.must(http.StatusNoContent, http.MethodDelete, "/Groups/pool-scim-oncology", "")
	if code, _ := idp.do(http.MethodGet, "/Groups/pool-scim-oncology", ""); code != http.StatusNotFound {
		t.Errorf("GET of a deleted group = %d, want 404", code)
	}
	pool, err := e.api.GetPool(e.as(t, servicetest.Admin), &messagingv1.GetPoolRequest{PoolId: "pool-scim-oncology"})
	if err != nil || pool.GetPool().GetActive() {
		t.Errorf("the pool after DELETE = %v, %v; want kept, inactive", pool, err)
	}

	// An administrator with a fresh login may use SCIM too.
	admin := idp
	admin.token = e.h.Token(t, servicetest.Admin)
	admin.must(http.StatusOK, http.MethodGet, "/Users/user-clin-scim", "")

	recs := e.auditRecords(t)
	r := personAudit(recs, "user-clin-scim", "person_deactivated")
	if r == nil || r.GetActor().GetSubject() != servicetest.Provisioner.Subject || r.GetActor().GetRole() != commonv1.Role_ROLE_PROVISIONER {
		t.Errorf("audit record of the deactivation = %v, want the provisioning client as actor, in its role", r.GetActor())
	}
	// The provisioning client is a machine: it is not recorded as a person.
	_, err = e.api.GetPerson(e.as(t, servicetest.Admin), &messagingv1.GetPersonRequest{Subject: servicetest.Provisioner.Subject})
	wantReason(t, "GetPerson(the provisioning client)", err, codes.NotFound, "PERSON_NOT_FOUND")
}

// TestProvisionerIsHeldToTheDirectory: the provisioning client's token has no login, so the
// role it carries reaches people and pool memberships and nothing else. It never reads content,
// never changes who may write to a pool, registers no apps; the role comes only from a
// provisioning app, and a provisioning app confers no other role; without its scope it is refused.
func TestProvisionerIsHeldToTheDirectory(t *testing.T) {
	e := newEnv(t)
	thread := e.createThread(t, servicetest.Patient, threadTo("pool-cardiology", "Cardiology", "a question"))
	prov := e.as(t, servicetest.Provisioner)

	if _, err := e.api.ListPoolMembers(prov, &messagingv1.ListPoolMembersRequest{PoolId: "pool-cardiology"}); err != nil {
		t.Fatalf("ListPoolMembers as the provisioner: %v", err)
	}
	pools, err := e.api.ListPools(prov, &messagingv1.ListPoolsRequest{})
	if err != nil || len(pools.GetPools()) == 0 {
		t.Fatalf("ListPools as the provisioner = %v, %v; want every pool", pools, err)
	}
	for _, p := range pools.GetPools() {
		if len(p.GetPatientIds()) > 0 {
			t.Errorf("pool %s shows the provisioner its patients", p.GetPoolId())
		}
	}

	_, err = e.api.GetThread(prov, &messagingv1.GetThreadRequest{ThreadId: thread.GetThread().GetThreadId()})
	wantReason(t, "GetThread as the provisioner", err, codes.PermissionDenied, "POLICY_DENIED")
	_, err = e.api.ListThreads(prov, &messagingv1.ListThreadsRequest{PoolIds: []string{"pool-cardiology"}})
	wantReason(t, "ListThreads as the provisioner", err, codes.PermissionDenied, "POLICY_DENIED")
	_, err = e.api.RegisterClientApp(prov, &messagingv1.RegisterClientAppRequest{App: &messagingv1.ClientApp{
		ClientId: "rogue-app", Kind: directoryv1.ClientAppKind_CLIENT_APP_KIND_THIRD_PARTY, DisplayName: "Rogue", AllowedScopes: []string{"messages.read"}}})
	wantReason(t, "RegisterClientApp as the provisioner", err, codes.PermissionDenied, "POLICY_DENIED")
	_, err = e.api.UpdatePool(prov, &messagingv1.UpdatePoolRequest{
		Pool:       &messagingv1.Pool{PoolId: "pool-cardiology", PatientIds: []string{"p-1001"}, Audience: messagingv1.PoolAudience_POOL_AUDIENCE_LISTED_PATIENTS},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"audience", "patient_ids"}},
	})
	wantReason(t, "UpdatePool(patient_ids) as the provisioner", err, codes.PermissionDenied, "POOL_SETTINGS_NOT_FOR_PROVISIONER")
	if _, err := e.api.UpdatePool(prov, &messagingv1.UpdatePoolRequest{
		Pool: &messagingv1.Pool{PoolId: "pool-cardiology", Name: "Cardiology (renamed by the provider)"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}},
	}); err != nil {
		t.Errorf("UpdatePool(name) as the provisioner: %v", err)
	}

	// The role and the app go together.
	asPortal := servicetest.Provisioner
	asPortal.Subject, asPortal.ClientID, asPortal.Scopes = "portal-pretending", servicetest.ClientID, ""
	_, err = e.api.ListPeople(e.as(t, asPortal), &messagingv1.ListPeopleRequest{})
	wantReason(t, "ListPeople as a provisioner from the portal", err, codes.PermissionDenied, "ROLE_NOT_ALLOWED_FOR_CLIENT")
	adminFromSCIM := servicetest.Provisioner
	adminFromSCIM.Roles = []string{"admin"}
	_, err = e.api.ListPeople(e.as(t, adminFromSCIM), &messagingv1.ListPeopleRequest{})
	wantReason(t, "ListPeople as an admin from the provisioning app", err, codes.PermissionDenied, "ROLE_NOT_ALLOWED_FOR_CLIENT")
	withPatient := servicetest.Provisioner
	withPatient.PatientID = "p-1001"
	_, err = e.api.ListPeople(e.as(t, withPatient), &messagingv1.ListPeopleRequest{})
	wantReason(t, "ListPeople as a provisioner naming a patient", err, codes.PermissionDenied, "ROLE_NOT_ALLOWED_FOR_CLIENT")

	noScope := servicetest.Provisioner
	noScope.Scopes = "openid"
	_, err = e.api.ListPeople(e.as(t, noScope), &messagingv1.ListPeopleRequest{})
	wantReason(t, "ListPeople as the provisioner without directory.provision", err, codes.PermissionDenied, "POLICY_DENIED")

	// A provisioning app is approved for directory.provision only, and only it may be.
	admin := e.as(t, servicetest.Admin)
	_, err = e.api.RegisterClientApp(admin, &messagingv1.RegisterClientAppRequest{App: &messagingv1.ClientApp{
		ClientId: "idp-wide", Kind: directoryv1.ClientAppKind_CLIENT_APP_KIND_PROVISIONING, DisplayName: "IdP", AllowedScopes: []string{"directory.provision", "admin"}}})
	wantReason(t, "RegisterClientApp(provisioning, admin scope)", err, codes.InvalidArgument, "SCOPE_NOT_FOR_KIND")
	_, err = e.api.RegisterClientApp(admin, &messagingv1.RegisterClientAppRequest{App: &messagingv1.ClientApp{
		ClientId: "portal-provisioning", Kind: directoryv1.ClientAppKind_CLIENT_APP_KIND_PATIENT_PORTAL, DisplayName: "Portal", AllowedScopes: []string{"directory.provision"}}})
	wantReason(t, "RegisterClientApp(portal, directory.provision)", err, codes.InvalidArgument, "SCOPE_NOT_FOR_KIND")
}
