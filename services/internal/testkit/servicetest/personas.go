package servicetest

import (
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"

	"github.com/securemsg/securemsg/services/internal/platform/auth/authtest"
)

// Persona is a test user. The predefined personas mirror the dev stack's seeded users
// (devstack/cmd/oidcdev), plus a second patient and an outside clinician for cross-access tests.
type Persona struct {
	Subject   string
	Roles     []string
	PatientID string
	Pools     []string
	// Grants are proxy grants: patient id → proxy scopes.
	Grants map[string][]string
	// NoMFA leaves multi-factor authentication out of amr.
	NoMFA bool
	// AuthAge is how long ago the persona logged in (0: just now).
	AuthAge time.Duration
	// ClientID is the client application the token is issued to ("": ClientID, the portal).
	ClientID string
	// Scopes are the token's OAuth scopes, space-separated ("": every scope the suite has).
	Scopes string
	// Name is the token's name claim ("": none), which messaging records, sealed, as the
	// person's display name.
	Name string
	// BirthDate is the token's birthdate claim ("YYYY-MM-DD"; "": none), which proxy-grant
	// age rules read.
	BirthDate string
	// Machine makes a client-credentials token: no person logged in, so it has neither
	// auth_time nor amr, and the directory holds no person for it.
	Machine bool
}

// The personas. Patient p-1001 has a proxy; p-2001 is an adolescent whose confidential threads
// proxies must never see.
var (
	Patient        = Persona{Subject: "user-patient", Roles: []string{"patient"}, PatientID: "p-1001"}
	OtherPatient   = Persona{Subject: "user-patient-2", Roles: []string{"patient"}, PatientID: "p-1002"}
	Teen           = Persona{Subject: "user-teen", Roles: []string{"patient"}, PatientID: "p-2001"}
	Proxy          = Persona{Subject: "user-proxy", Roles: []string{"proxy"}, Grants: map[string][]string{"p-1001": {"read", "write", "notifications"}, "p-2001": {"read", "write"}}}
	Clinician      = Persona{Subject: "user-clinician", Roles: []string{"clinician"}, Pools: []string{"pool-cardiology"}}
	OtherClinician = Persona{Subject: "user-clinician-2", Roles: []string{"clinician"}, Pools: []string{"pool-dermatology"}}
	StaffNoMFA     = Persona{Subject: "user-staff", Roles: []string{"staff"}, Pools: []string{"pool-cardiology"}, NoMFA: true}
	Auditor        = Persona{Subject: "user-auditor", Roles: []string{"auditor"}}
	Admin          = Persona{Subject: "user-admin", Roles: []string{"admin"}}
	// Provisioner is the identity provider's SCIM client, with a client-credentials token of
	// the provisioning app the harness registers (ProvisionerClientID).
	Provisioner = Persona{Subject: ProvisionerClientID, Roles: []string{"provisioner"}, ClientID: ProvisionerClientID,
		Scopes: "directory.provision", Machine: true}
)

// scopes are the OAuth scopes every persona's token carries (authtest.Issuer.Claims).
const scopes = "openid messages.read messages.write attachments.read attachments.write notifications.manage audit.read admin"

// Claims renders the persona as token claims from issuer.
func (p Persona) Claims(issuer *authtest.Issuer) map[string]any {
	claims := issuer.Claims(p.Subject, p.Roles...)
	if p.PatientID != "" {
		claims["patient_id"] = p.PatientID
	}
	if len(p.Pools) > 0 {
		claims["care_pools"] = p.Pools
	}
	if len(p.Grants) > 0 {
		var grants []map[string]any
		for patient, scopes := range p.Grants {
			grants = append(grants, map[string]any{"patient_id": patient, "scope": scopes, "expires_at": time.Now().Add(24 * time.Hour).Unix()})
		}
		claims["proxy_grants"] = grants
	}
	if p.NoMFA {
		claims["amr"] = []string{"pwd"}
	}
	if p.AuthAge > 0 {
		claims["auth_time"] = time.Now().Add(-p.AuthAge).Unix()
	}
	if p.ClientID != "" {
		claims["client_id"] = p.ClientID
	}
	if p.Scopes != "" {
		claims["scope"] = p.Scopes
	}
	if p.Name != "" {
		claims["name"] = p.Name
	}
	if p.BirthDate != "" {
		claims["birthdate"] = p.BirthDate
	}
	if p.Machine {
		delete(claims, "auth_time")
		delete(claims, "amr")
	}
	return claims
}

// Principal is the persona as a calling service relays it in a service-to-service request
// (auth.Principal.ToProto of the persona's verified token).
func (p Persona) Principal() *commonv1.Principal {
	amr := []string{"pwd", "otp"}
	if p.NoMFA {
		amr = []string{"pwd"}
	}
	out := &commonv1.Principal{
		Subject: p.Subject, PatientId: p.PatientID, CarePoolIds: p.Pools, Amr: amr,
		AuthTime: timestamppb.New(time.Now().Add(-p.AuthAge)), IssuedAt: timestamppb.Now(),
		ClientId: "portal-web", Scopes: strings.Fields(scopes),
	}
	for _, r := range p.Roles {
		out.Roles = append(out.Roles, commonv1.Role(commonv1.Role_value["ROLE_"+strings.ToUpper(r)]))
	}
	for patient, s := range p.Grants {
		out.ProxyGrants = append(out.ProxyGrants, &commonv1.ProxyGrant{PatientId: patient, Scopes: s, ExpiresAt: timestamppb.New(time.Now().Add(24 * time.Hour))})
	}
	return out
}
