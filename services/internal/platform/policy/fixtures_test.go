package policy_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
)

// now is the fixed clock of the policy tables.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// shippedPolicies is the folder the services load in production: the tables test exactly it.
// Tests run in the package folder, services/internal/platform/policy.
func shippedPolicies() string { return filepath.Join("..", "..", "..", "..", "deploy", "policies") }

// memRecorder keeps decision records (and can be told to fail).
type memRecorder struct {
	mu   sync.Mutex
	recs []auth.DecisionRecord
	fail error
}

func (m *memRecorder) RecordDecision(_ context.Context, rec auth.DecisionRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.recs = append(m.recs, rec)
	return nil
}

func (m *memRecorder) records() []auth.DecisionRecord {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]auth.DecisionRecord(nil), m.recs...)
}

func newEngine(tb testing.TB, rec auth.DecisionRecorder) *policy.Engine {
	tb.Helper()
	if rec == nil {
		rec = &memRecorder{}
	}
	e, err := policy.New(shippedPolicies(), policy.Options{Recorder: rec, Now: func() time.Time { return now }})
	if err != nil {
		tb.Fatalf("policy.New(deploy/policies) error = %v", err)
	}
	return e
}

var allScopes = []string{"openid", "messages.read", "messages.write", "attachments.read", "attachments.write",
	"notifications.manage", "audit.read", "admin"}

// user builds a person principal with full OAuth scopes, MFA and a fresh login; tests edit it.
func user(sub string, roles ...auth.Role) *auth.Principal {
	return &auth.Principal{
		Kind: auth.KindUser, Subject: sub, Roles: roles, AMR: []string{"pwd", "otp"},
		AuthTime: now.Add(-2 * time.Minute), IssuedAt: now.Add(-time.Minute), ClientID: "portal-web",
		Scopes: allScopes,
	}
}

func service(name string) *auth.Principal {
	return &auth.Principal{Kind: auth.KindService, Subject: "service:" + name, Service: name}
}

func with(p *auth.Principal, edit func(*auth.Principal)) *auth.Principal {
	c := *p
	edit(&c)
	return &c
}

// The cast of the tables.
var (
	patient = with(user("u-pat-1", auth.RolePatient), func(p *auth.Principal) {
		p.PatientID, p.AMR, p.AuthTime = "pat-1", []string{"pwd"}, now.Add(-3*time.Hour)
	})
	patient2 = with(user("u-pat-2", auth.RolePatient), func(p *auth.Principal) { p.PatientID = "pat-2" })
	proxy    = with(user("u-proxy-1", auth.RoleProxy), func(p *auth.Principal) {
		p.AMR = []string{"pwd"}
		p.ProxyGrants = []auth.ProxyGrant{
			{PatientID: "pat-1", Scopes: []string{"read", "write"}, ExpiresAt: now.Add(time.Hour)},
			{PatientID: "pat-2", Scopes: []string{"read"}, ExpiresAt: now.Add(time.Hour)},
			{PatientID: "pat-3", Scopes: []string{"read", "write"}, ExpiresAt: now.Add(-time.Hour)},
		}
	})
	proxyExpired = with(proxy, func(p *auth.Principal) {
		p.ProxyGrants = []auth.ProxyGrant{{PatientID: "pat-1", Scopes: []string{"read", "write"}, ExpiresAt: now.Add(-time.Minute)}}
	})
	clinician = with(user("u-clin-1", auth.RoleClinician), func(p *auth.Principal) { p.CarePools = []string{"pool-a", "pool-c"} })
	clinStale = with(clinician, func(p *auth.Principal) { p.AuthTime = now.Add(-2 * time.Hour) })
	clinNoMFA = with(clinician, func(p *auth.Principal) { p.AMR = []string{"pwd"} })
	clinNoAMR = with(clinician, func(p *auth.Principal) { p.AMR = nil })
	staff     = with(user("u-staff-1", auth.RoleStaff), func(p *auth.Principal) { p.CarePools = []string{"pool-a"}; p.AMR = []string{"hwk"} })
	staffNoMF = with(staff, func(p *auth.Principal) { p.AMR = []string{"pwd", "kba"} })
	admin     = user("u-admin-1", auth.RoleAdmin)
	admStale  = with(admin, func(p *auth.Principal) { p.AuthTime = now.Add(-time.Hour) })
	admNoMFA  = with(admin, func(p *auth.Principal) { p.AMR = []string{"pwd"} })
	// An admin who is also a clinician in pool-a: segregation of duties still forbids PHI reads.
	adminClin = with(user("u-adminclin", auth.RoleAdmin, auth.RoleClinician), func(p *auth.Principal) { p.CarePools = []string{"pool-a"} })
	auditor   = user("u-aud-1", auth.RoleAuditor)
	audNoMFA  = with(auditor, func(p *auth.Principal) { p.AMR = []string{"pwd"} })
	noRoles   = user("u-nobody")
	// The identity provider's provisioning client: a client-credentials token, so no login (no
	// auth_time, no amr), and only its own scope.
	provisioner = &auth.Principal{Kind: auth.KindUser, Subject: "idp-scim", Roles: []auth.Role{auth.RoleProvisioner},
		IssuedAt: now.Add(-time.Minute), ClientID: "idp-scim", Scopes: []string{"directory.provision"}}
	svcAttach = service("attachment")
	svcMsg    = service("messaging")
	svcNotif  = service("notification")
)

// Records of the tables.
var (
	threadA  = policy.Resource{Type: "Thread", ID: "t-a", PatientID: "pat-1", PoolID: "pool-a", Sensitivity: policy.SensitivityNormal}
	threadB  = policy.Resource{Type: "Thread", ID: "t-b", PatientID: "pat-2", PoolID: "pool-b", Sensitivity: policy.SensitivityNormal}
	thread2A = policy.Resource{Type: "Thread", ID: "t-2a", PatientID: "pat-2", PoolID: "pool-a", Sensitivity: policy.SensitivityNormal}
	threadAC = policy.Resource{Type: "Thread", ID: "t-ac", PatientID: "pat-1", PoolID: "pool-a", Sensitivity: policy.SensitivityAdolescentConfidential}
	thread3  = policy.Resource{Type: "Thread", ID: "t-3", PatientID: "pat-3", PoolID: "pool-a", Sensitivity: policy.SensitivityNormal}
	msgByPat = policy.Resource{Type: "Message", ID: "m-1", PatientID: "pat-1", PoolID: "pool-a", Owner: "u-pat-1"}
	msgByCl  = policy.Resource{Type: "Message", ID: "m-2", PatientID: "pat-1", PoolID: "pool-a", Owner: "u-clin-1"}
	msgByPx  = policy.Resource{Type: "Message", ID: "m-3", PatientID: "pat-1", PoolID: "pool-a", Owner: "u-proxy-1"}
	attA     = policy.Resource{Type: "Attachment", ID: "a-1", PatientID: "pat-1", PoolID: "pool-a", Owner: "u-pat-1"}
	attB     = policy.Resource{Type: "Attachment", ID: "a-2", PatientID: "pat-2", PoolID: "pool-b", Owner: "u-pat-2"}
	attAC    = policy.Resource{Type: "Attachment", ID: "a-3", PatientID: "pat-1", PoolID: "pool-a", Sensitivity: policy.SensitivityAdolescentConfidential, Owner: "u-pat-1"}
	poolA    = policy.Resource{Type: "Pool", ID: "pool-a", PoolID: "pool-a"}
	poolB    = policy.Resource{Type: "Pool", ID: "pool-b", PoolID: "pool-b"}
	pat1     = policy.Resource{Type: "Patient", ID: "pat-1", PatientID: "pat-1"}
	pat2     = policy.Resource{Type: "Patient", ID: "pat-2", PatientID: "pat-2"}
	auditLog = policy.Resource{Type: "AuditLog", ID: "log"}
	template = policy.Resource{Type: "Template", ID: "new-message"}
	prefsOf  = func(sub string) policy.Resource { return policy.Resource{Type: "Preferences", ID: sub, Owner: sub} }
	delivOf  = func(sub string) policy.Resource { return policy.Resource{Type: "Deliveries", ID: sub, Owner: sub} }
)
