package servicetest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"

	"github.com/securemsg/securemsg/services/internal/platform/directory"
	"github.com/securemsg/securemsg/services/internal/platform/natsx"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// ClientID is the client application every persona's token is issued to; the harness
// registers it, as a patient portal allowed every scope the tokens carry.
const ClientID = "portal-web"

// ProvisionerClientID is the provisioning client application the harness registers: the
// identity provider's SCIM client, whose tokens carry the provisioner role (Provisioner).
const ProvisionerClientID = "securemsg-scim"

// Predefined are the package's personas, enrolled in the directory before the service starts.
var Predefined = []Persona{Patient, OtherPatient, Teen, Proxy, Clinician, OtherClinician, StaffNoMFA, Auditor, Admin}

// enrolment records the personas already put into a harness's directory bucket.
type enrolment struct {
	mu   sync.Mutex
	done map[string]bool
	kv   jetstream.KeyValue
}

// SeedDirectory creates the topology's directory bucket on nc's server and puts the portal's
// registration and the predefined personas into it, for a test that runs a service binary of
// its own against that server (Start does it for the services it runs).
func SeedDirectory(t testing.TB, nc *nats.Conn, topology natsx.Topology) {
	t.Helper()
	openDirectory(t, nc, topology)
}

// openDirectory creates the topology's directory bucket on nc's server and puts the portal's
// registration and the predefined personas into it, before the service starts watching.
func openDirectory(t testing.TB, nc *nats.Conn, topology natsx.Topology) *enrolment {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.CreateOrUpdateKeyValue(ctx, topology.DirectoryConfig())
	if err != nil {
		t.Fatalf("create directory bucket %s: %v", topology.DirectoryBucket, err)
	}
	e := &enrolment{kv: kv, done: map[string]bool{}}
	e.put(t, directory.AppKey(ClientID), &directoryv1.ClientAppEntry{
		ClientId: ClientID, Kind: directoryv1.ClientAppKind_CLIENT_APP_KIND_PATIENT_PORTAL,
		AllowedScopes: strings.Fields(scopes), Active: true, DisplayName: "Patient portal (test)",
	})
	e.put(t, directory.AppKey(ProvisionerClientID), &directoryv1.ClientAppEntry{
		ClientId: ProvisionerClientID, Kind: directoryv1.ClientAppKind_CLIENT_APP_KIND_PROVISIONING,
		AllowedScopes: []string{"directory.provision"}, Active: true, DisplayName: "Identity provider provisioning (test)",
	})
	for _, p := range Predefined {
		e.enroll(t, p)
	}
	return e
}

// Entries are the directory entries that make the persona's token mean what it says: an active
// person, the persona's pools as memberships and its proxy grants as stored grants. They carry
// version 0, so that any change the service under test makes (version 1 and up) replaces them.
func (p Persona) Entries() map[string]proto.Message {
	var roles []commonv1.Role
	for _, r := range p.Roles {
		roles = append(roles, commonv1.Role(commonv1.Role_value["ROLE_"+strings.ToUpper(r)]))
	}
	out := map[string]proto.Message{
		directory.PersonKey(p.Subject): &directoryv1.PersonEntry{Subject: p.Subject, Status: directoryv1.PersonStatus_PERSON_STATUS_ACTIVE, Roles: roles},
	}
	if len(p.Pools) > 0 {
		role := directoryv1.PoolRole_POOL_ROLE_CLINICIAN
		if slices.Contains(p.Roles, "staff") {
			role = directoryv1.PoolRole_POOL_ROLE_STAFF
		}
		m := &directoryv1.MembershipEntry{Subject: p.Subject}
		for _, pool := range p.Pools {
			m.Pools = append(m.Pools, &directoryv1.PoolMembership{PoolId: pool, Role: role})
		}
		out[directory.MembershipKey(p.Subject)] = m
	}
	if len(p.Grants) > 0 {
		g := &directoryv1.ProxyGrantsEntry{ProxySubject: p.Subject}
		for patient, s := range p.Grants {
			g.Grants = append(g.Grants, &directoryv1.StoredProxyGrant{
				GrantId: "seed-" + patient, PatientId: patient, Scopes: s, ExpireTime: timestamppb.New(time.Now().Add(24 * time.Hour)),
			})
		}
		out[directory.GrantsKey(p.Subject)] = g
	}
	return out
}

// enroll puts the persona's entries into the bucket once per harness; it reports whether it
// wrote them now.
func (e *enrolment) enroll(t testing.TB, p Persona) bool {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done[p.Subject] || p.Machine {
		return false
	}
	// The person's entry goes last: the service applies puts in order, so once it has the
	// person it has the rest too (Enroll waits for that).
	entries := p.Entries()
	personKey := directory.PersonKey(p.Subject)
	for key, entry := range entries {
		if key != personKey {
			e.put(t, key, entry)
		}
	}
	e.put(t, personKey, entries[personKey])
	e.done[p.Subject] = true
	return true
}

func (e *enrolment) put(t testing.TB, key string, entry proto.Message) {
	t.Helper()
	b, err := proto.Marshal(entry)
	if err != nil {
		t.Fatalf("encode %s: %v", key, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.kv.Put(ctx, key, b); err != nil {
		t.Fatalf("put %s into the directory: %v", key, err)
	}
}

// Enroll makes sure the service knows persona: its entries are put into the directory bucket
// (once) and the service's snapshot holds them. As and Token call it, so a test's own persona
// is admitted like the predefined ones.
func (h *Harness) Enroll(t testing.TB, persona Persona) {
	t.Helper()
	if !h.enrolment.enroll(t, persona) {
		return
	}
	testkit.WaitFor(t, 10*time.Second, "directory entry of "+persona.Subject, func() bool {
		_, ok := h.Proc.Directory.Person(persona.Subject)
		return ok
	})
}

// DirectorySeedFile writes a directory bootstrap file (the SECUREMSG_DIRECTORY_BOOTSTRAP format)
// holding every pool the personas work in, open to all patients, with the personas as their
// members, and the personas' proxy grants, and returns its path: the messaging service stores pools and memberships, so its
// tests start from the same organisation the personas' directory entries describe.
func DirectorySeedFile(t testing.TB, personas ...Persona) string {
	t.Helper()
	type pool struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	type member struct {
		PoolID  string `json:"pool_id"`
		Subject string `json:"subject"`
		Role    string `json:"role"`
	}
	type grant struct {
		ID           string   `json:"id"`
		ProxySubject string   `json:"proxy_subject"`
		PatientID    string   `json:"patient_id"`
		Scopes       []string `json:"scopes"`
		ValidFor     string   `json:"valid_for"`
	}
	var seed struct {
		Pools   []pool   `json:"pools"`
		Members []member `json:"members"`
		Grants  []grant  `json:"grants"`
	}
	seen := map[string]bool{}
	for _, p := range personas {
		role := "CLINICIAN"
		if slices.Contains(p.Roles, "staff") {
			role = "STAFF"
		}
		for _, id := range p.Pools {
			if !seen[id] {
				seen[id] = true
				seed.Pools = append(seed.Pools, pool{ID: id, Name: id})
			}
			seed.Members = append(seed.Members, member{PoolID: id, Subject: p.Subject, Role: role})
		}
		for patient, scopes := range p.Grants {
			id := uuid.NewSHA1(uuid.NameSpaceURL, []byte("securemsg-test-grant:"+p.Subject+":"+patient)).String()
			seed.Grants = append(seed.Grants, grant{ID: id, ProxySubject: p.Subject, PatientID: patient, Scopes: scopes, ValidFor: "24h"})
		}
	}
	b, err := json.Marshal(seed)
	if err != nil {
		t.Fatalf("encode directory seed: %v", err)
	}
	path := filepath.Join(t.TempDir(), "directory-seed.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatalf("write directory seed: %v", err)
	}
	return path
}
