package directory_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/directory"
)

var now = time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)

// loadedSnapshot holds a registered portal, a care-team app held to pool-a, a provisioning app, a clinician in
// pool-a and pool-b, a deactivated clinician and a proxy with two grants.
func loadedSnapshot() *directory.Snapshot {
	s := directory.NewSnapshot()
	s.Apply(&directoryv1.ClientAppEntry{ClientId: "portal", Kind: directoryv1.ClientAppKind_CLIENT_APP_KIND_PATIENT_PORTAL, Active: true,
		AllowedScopes: []string{"messages.read", "messages.write"}, Version: 1})
	s.Apply(&directoryv1.ClientAppEntry{ClientId: "inbox-app", Kind: directoryv1.ClientAppKind_CLIENT_APP_KIND_CARE_TEAM, Active: true,
		AllowedScopes: []string{"messages.read"}, PoolIds: []string{"pool-a"}, Version: 1})
	s.Apply(&directoryv1.ClientAppEntry{ClientId: "idp-scim", Kind: directoryv1.ClientAppKind_CLIENT_APP_KIND_PROVISIONING, Active: true,
		AllowedScopes: []string{"directory.provision"}, Version: 1})
	s.Apply(&directoryv1.ClientAppEntry{ClientId: "retired", Kind: directoryv1.ClientAppKind_CLIENT_APP_KIND_PATIENT_PORTAL, Active: false,
		AllowedScopes: []string{"messages.read"}, Version: 1})
	s.Apply(&directoryv1.MembershipEntry{Subject: "clin", Version: 3, Pools: []*directoryv1.PoolMembership{{PoolId: "pool-a"}, {PoolId: "pool-b"}}})
	s.Apply(&directoryv1.PersonEntry{Subject: "gone", Status: directoryv1.PersonStatus_PERSON_STATUS_DEACTIVATED, Version: 2})
	s.Apply(&directoryv1.ProxyGrantsEntry{ProxySubject: "proxy", Version: 4, Grants: []*directoryv1.StoredProxyGrant{
		{GrantId: "g1", PatientId: "p-1", Scopes: []string{"read", "write"}, ExpireTime: timestamppb.New(now.Add(time.Hour))},
		{GrantId: "g2", PatientId: "p-2", Scopes: []string{"read"}, ExpireTime: timestamppb.New(now.Add(-time.Minute))},
	}})
	s.MarkLoaded()
	return s
}

func person(subject, client string, scopes ...string) *auth.Principal {
	return &auth.Principal{Kind: auth.KindUser, Subject: subject, ClientID: client, Scopes: scopes}
}

func TestAdmitRefuses(t *testing.T) {
	s := loadedSnapshot()
	for _, tc := range []struct {
		name string
		p    *auth.Principal
		want error
	}{
		{"unregistered app", person("clin", "unknown", "messages.read"), directory.ErrClientNotRegistered},
		{"disabled app", person("clin", "retired", "messages.read"), directory.ErrClientNotRegistered},
		{"scope beyond the app's", person("clin", "portal", "messages.read", "admin"), directory.ErrScopeNotAllowed},
		{"deactivated person", person("gone", "portal", "messages.read"), directory.ErrAccountDeactivated},
		{"provisioner role from a portal", withRoles(person("idp", "portal", "messages.read"), auth.RoleProvisioner), directory.ErrRoleNotForClient},
		{"provisioner role beside another", withRoles(person("idp", "inbox-app", "messages.read"), auth.RoleClinician, auth.RoleProvisioner), directory.ErrRoleNotForClient},
		{"admin role from the provisioning app", withRoles(person("idp", "idp-scim", "directory.provision"), auth.RoleAdmin), directory.ErrRoleNotForClient},
		{"no role from the provisioning app", person("idp", "idp-scim", "directory.provision"), directory.ErrRoleNotForClient},
		{"two roles from the provisioning app", withRoles(person("idp", "idp-scim", "directory.provision"), auth.RoleProvisioner, auth.RoleAdmin), directory.ErrRoleNotForClient},
		{"a patient from the provisioning app", withPatient(withRoles(person("idp", "idp-scim", "directory.provision"), auth.RoleProvisioner), "p-1"), directory.ErrRoleNotForClient},
		{"a proxy grant from the provisioning app", withGrant(withRoles(person("idp", "idp-scim", "directory.provision"), auth.RoleProvisioner), "p-1"), directory.ErrRoleNotForClient},
		{"a scope beyond the provisioning app's", withRoles(person("idp", "idp-scim", "directory.provision", "admin"), auth.RoleProvisioner), directory.ErrScopeNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Admit(tc.p, now); !errors.Is(err, tc.want) {
				t.Fatalf("Admit = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := directory.NewSnapshot().Admit(person("clin", "portal"), now); !errors.Is(err, directory.ErrDirectoryUnavailable) {
		t.Fatalf("Admit before load = %v, want %v", err, directory.ErrDirectoryUnavailable)
	}
}

func withRoles(p *auth.Principal, roles ...auth.Role) *auth.Principal {
	p.Roles = roles
	return p
}

func withPatient(p *auth.Principal, patientID string) *auth.Principal {
	p.PatientID = patientID
	return p
}

func withGrant(p *auth.Principal, patientID string) *auth.Principal {
	p.ProxyGrants = []auth.ProxyGrant{{PatientID: patientID, Scopes: []string{"read"}, ExpiresAt: now.Add(time.Hour)}}
	return p
}

// TestAdmitProvisioner: the provisioning app's machine token, with the provisioner role alone,
// is admitted as it is.
func TestAdmitProvisioner(t *testing.T) {
	p := withRoles(person("idp", "idp-scim", "openid", "directory.provision"), auth.RoleProvisioner)
	got, err := loadedSnapshot().Admit(p, now)
	if err != nil || !slices.Equal(got.Roles, []auth.Role{auth.RoleProvisioner}) || len(got.CarePools) > 0 {
		t.Fatalf("Admit(provisioner) = %+v, %v; want it admitted, provisioner only, no pools", got, err)
	}
}

func TestAdmitPassesServicesAndOIDCScopes(t *testing.T) {
	s := directory.NewSnapshot() // not even loaded: services are not in the directory
	svc := &auth.Principal{Kind: auth.KindService, Subject: "service:attachment"}
	if got, err := s.Admit(svc, now); err != nil || got != svc {
		t.Fatalf("Admit(service) = %v, %v; want it unchanged", got, err)
	}
	if _, err := loadedSnapshot().Admit(person("someone-new", "portal", "openid", "offline_access", "messages.read"), now); err != nil {
		t.Fatalf("Admit(OIDC scopes, first contact) = %v", err)
	}
}

func TestAdmitPoolsAreStoredNarrowedByClaimAndApp(t *testing.T) {
	s := loadedSnapshot()
	for _, tc := range []struct {
		name   string
		client string
		claim  []string
		want   []string
	}{
		{"stored pools when the token names none", "portal", nil, []string{"pool-a", "pool-b"}},
		{"a claim narrows", "portal", []string{"pool-b"}, []string{"pool-b"}},
		{"a claim never widens", "portal", []string{"pool-b", "pool-z"}, []string{"pool-b"}},
		{"a care-team app is held to its pools", "inbox-app", nil, []string{"pool-a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := person("clin", tc.client, "messages.read")
			p.CarePools = tc.claim
			got, err := s.Admit(p, now)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.CarePools, tc.want) {
				t.Fatalf("CarePools = %v, want %v", got.CarePools, tc.want)
			}
			if slices.Equal(p.CarePools, got.CarePools) && tc.claim != nil && !slices.Equal(tc.claim, tc.want) {
				t.Fatal("Admit changed the verified principal in place")
			}
		})
	}
	got, err := s.Admit(person("not-a-member", "portal", "messages.read"), now)
	if err != nil || len(got.CarePools) != 0 {
		t.Fatalf("Admit(no membership) pools = %v, %v; want none", got.CarePools, err)
	}
}

func TestAdmitProxyGrantsAreStoredNarrowedByClaim(t *testing.T) {
	s := loadedSnapshot()
	p := person("proxy", "portal", "messages.read")
	got, err := s.Admit(p, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.ProxyGrants) != 1 || got.ProxyGrants[0].PatientID != "p-1" || !slices.Equal(got.ProxyGrants[0].Scopes, []string{"read", "write"}) {
		t.Fatalf("grants = %+v, want the one unexpired stored grant", got.ProxyGrants)
	}
	p.ProxyGrants = []auth.ProxyGrant{
		{PatientID: "p-1", Scopes: []string{"read", "notifications"}, ExpiresAt: now.Add(time.Minute)},
		{PatientID: "p-9", Scopes: []string{"read"}, ExpiresAt: now.Add(time.Hour)},
	}
	got, err = s.Admit(p, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.ProxyGrants) != 1 || !slices.Equal(got.ProxyGrants[0].Scopes, []string{"read"}) || !got.ProxyGrants[0].ExpiresAt.Equal(now.Add(time.Minute)) {
		t.Fatalf("grants = %+v, want p-1 read until the claim's expiry, and no p-9", got.ProxyGrants)
	}
	if got, _ := s.Admit(person("revoked-proxy", "portal"), now); len(got.ProxyGrants) != 0 {
		t.Fatalf("a proxy without stored grants kept %+v", got.ProxyGrants)
	}
}

func TestApplyKeepsTheNewestVersion(t *testing.T) {
	s := loadedSnapshot()
	s.Apply(&directoryv1.MembershipEntry{Subject: "clin", Version: 2}) // older, arrives late
	if m, _ := s.Membership("clin"); len(m.GetPools()) != 2 {
		t.Fatalf("an older version replaced the newer one: %v", m)
	}
	s.Apply(&directoryv1.MembershipEntry{Subject: "clin", Version: 5, Pools: []*directoryv1.PoolMembership{{PoolId: "pool-b"}}})
	if m, _ := s.Membership("clin"); len(m.GetPools()) != 1 {
		t.Fatalf("the newer version was not kept: %v", m)
	}
}
