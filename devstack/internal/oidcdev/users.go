package oidcdev

import (
	"slices"
	"sort"
	"strings"
	"time"
)

// User is a seeded demo identity the dev issuer can mint tokens for.
type User struct {
	// Name is the login, and the token's sub.
	Name string
	// DisplayName is the token's name claim: what the directory records, sealed, at first
	// contact, and what the people a user writes to see beside their messages.
	DisplayName string
	// Age, when set, gives the token a birthdate claim that keeps the user this old (in years)
	// whenever a token is minted: the teen stays an adolescent for the proxy age rules.
	Age       int
	Roles     []string
	PatientID string
	CarePools []string
	AMR       []string
	Scopes    []string
	// ProxyFor lists the grants of a proxy; their expires_at is set at mint time (GrantTTL
	// from now) so a demo token never carries an already expired grant.
	ProxyFor []ProxyGrant
}

// GrantTTL is how long a seeded proxy grant stays valid after a token is minted.
const GrantTTL = 30 * 24 * time.Hour

var portalScopes = []string{
	ScopeMessagesRead, ScopeMessagesWrite, ScopeAttachmentsRead, ScopeAttachmentsWrite,
	ScopeNotificationsManage,
}

// Users are the seeded demo users, by name. `teen` is an adolescent patient: their threads are
// confidential and never visible to a proxy.
var Users = map[string]User{
	"patient": {
		Name: "patient", DisplayName: "Alex Example", Age: 42,
		Roles: []string{RolePatient}, PatientID: "p-1001",
		AMR: []string{AMRPassword}, Scopes: portalScopes,
	},
	"proxy": {
		Name: "proxy", DisplayName: "Sam Example",
		Roles: []string{RoleProxy}, AMR: []string{AMRPassword}, Scopes: portalScopes,
		// The proxy also holds a grant for the adolescent p-2001 (a parent): policy still keeps
		// the teen's confidential threads from them, which is what the demo shows.
		ProxyFor: []ProxyGrant{
			{PatientID: "p-1001", Scope: []string{"read", "write", "notifications"}},
			{PatientID: "p-2001", Scope: []string{"read"}},
		},
	},
	"teen": {
		Name: "teen", DisplayName: "Jordan Example", Age: 15,
		Roles: []string{RolePatient}, PatientID: "p-2001",
		AMR: []string{AMRPassword}, Scopes: portalScopes,
	},
	"clinician": {
		Name: "clinician", DisplayName: "Dr. Casey Carter",
		Roles: []string{RoleClinician}, CarePools: []string{"pool-cardiology"},
		AMR: []string{AMRPassword, AMROTP}, Scopes: portalScopes,
	},
	// triage works in both pools, so the threads they handle can move between them: a transfer
	// needs the caller to work in the destination pool too.
	"triage": {
		Name: "triage", DisplayName: "Taylor Triage, RN",
		Roles: []string{RoleClinician}, CarePools: []string{"pool-cardiology", "pool-dermatology"},
		AMR: []string{AMRPassword, AMROTP}, Scopes: portalScopes,
	},
	// staff-nomfa exists to prove that staff actions without a second factor are refused.
	"staff-nomfa": {
		Name: "staff-nomfa", DisplayName: "Robin Reyes",
		Roles: []string{RoleStaff}, AMR: []string{AMRPassword},
		Scopes: portalScopes,
	},
	"auditor": {
		Name: "auditor", DisplayName: "Avery Auditor",
		Roles: []string{RoleAuditor}, AMR: []string{AMRPassword, AMROTP},
		Scopes: []string{ScopeAuditRead},
	},
	"admin": {
		Name: "admin", DisplayName: "Morgan Admin",
		Roles: []string{RoleAdmin}, AMR: []string{AMRPassword, AMROTP},
		Scopes: []string{ScopeAdmin, ScopeNotificationsManage},
	},
}

// UserNames lists the seeded users in a stable order (for help texts and errors).
func UserNames() []string {
	names := make([]string, 0, len(Users))
	for n := range Users {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// scopeString joins scopes the OAuth way, de-duplicated and sorted for stable tokens.
func scopeString(scopes []string) string {
	s := slices.Clone(scopes)
	slices.Sort(s)
	return strings.Join(slices.Compact(s), " ")
}
