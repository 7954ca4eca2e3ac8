package oidcdev

// The claims every dev token carries. The platform's auth helper parses exactly these names, so
// this file is the contract between the dev issuer and the services; a production identity
// provider must be configured to emit the same claims (or be mapped onto them).
//
//	iss        string            issuer URL (DefaultIssuer in the dev stack)
//	sub        string            the user's stable subject (the demo user name here)
//	aud        string            "securemsg" (Audience)
//	exp        unix seconds      expiry; 15 minutes after issue unless ?ttl= asks otherwise
//	iat, nbf   unix seconds      issue time; not valid before it
//	auth_time  unix seconds      when the user last authenticated interactively (absent from a
//	                             client-credentials token: no one logged in); staff actions
//	                             need it fresh (?auth_age= backdates it for tests)
//	amr        array of strings  authentication methods, e.g. ["pwd","otp"]; MFA means a second
//	                             factor besides "pwd"
//	roles      array of strings  patient, proxy, clinician, staff, auditor, admin; provisioner
//	                             for the machine client securemsg-scim (clients.go)
//	patient_id string            the patient record a patient user is (absent for others)
//	care_pools array of strings  care pools a clinician works in (absent for others)
//	proxy_grants array of objects  {"patient_id": string, "scope": [string], "expires_at": unix
//	                             seconds}: whom a proxy may act for, for what, until when
//	client_id  string            the OAuth client the token was issued to ("portal-web")
//	scope      string            space-separated OAuth scopes, e.g. "messages.read messages.write"
const (
	ClaimIssuer      = "iss"
	ClaimSubject     = "sub"
	ClaimName        = "name"
	ClaimBirthdate   = "birthdate"
	ClaimAudience    = "aud"
	ClaimExpiration  = "exp"
	ClaimIssuedAt    = "iat"
	ClaimNotBefore   = "nbf"
	ClaimAuthTime    = "auth_time"
	ClaimAMR         = "amr"
	ClaimRoles       = "roles"
	ClaimPatientID   = "patient_id"
	ClaimCarePools   = "care_pools"
	ClaimProxyGrants = "proxy_grants"
	ClaimClientID    = "client_id"
	ClaimScope       = "scope"
)

// Field names inside one proxy_grants entry.
const (
	GrantPatientID = "patient_id"
	GrantScope     = "scope"
	GrantExpiresAt = "expires_at"
)

// Values the dev issuer uses.
const (
	// Audience is the aud every securemsg API token carries.
	Audience = "securemsg"
	// ClientID is the OAuth client the dev tokens pretend to come from: the patient portal.
	ClientID = "portal-web"
	// DefaultIssuer is the issuer URL of the dev stack (make up serves it on loopback).
	DefaultIssuer = "http://127.0.0.1:8400"
)

// OAuth scopes the dev issuer hands out. Services check them per rpc.
const (
	ScopeMessagesRead        = "messages.read"
	ScopeMessagesWrite       = "messages.write"
	ScopeAttachmentsRead     = "attachments.read"
	ScopeAttachmentsWrite    = "attachments.write"
	ScopeNotificationsManage = "notifications.manage"
	ScopeAuditRead           = "audit.read"
	ScopeAdmin               = "admin"
)

// Roles a token may carry in the roles claim.
const (
	RolePatient   = "patient"
	RoleProxy     = "proxy"
	RoleClinician = "clinician"
	RoleStaff     = "staff"
	RoleAuditor   = "auditor"
	RoleAdmin     = "admin"
)

// Values of the amr claim the dev users carry (RFC 8176 names).
const (
	AMRPassword = "pwd"
	AMROTP      = "otp"
)

// ProxyGrant is one entry of the proxy_grants claim.
type ProxyGrant struct {
	PatientID string   `json:"patient_id"`
	Scope     []string `json:"scope"`
	ExpiresAt int64    `json:"expires_at"`
}
