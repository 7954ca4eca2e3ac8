package policy_test

import (
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cedar-policy/cedar-go"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"google.golang.org/grpc"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	notificationv1 "github.com/securemsg/securemsg/gen/securemsg/notification/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
)

// generatedRPCs lists every rpc of every service from the generated service descriptors, as full
// method names.
func generatedRPCs() []string {
	var out []string
	for _, sd := range []grpc.ServiceDesc{
		messagingv1.MessagingService_ServiceDesc, attachmentv1.AttachmentService_ServiceDesc,
		notificationv1.NotificationService_ServiceDesc, auditv1.AuditService_ServiceDesc,
	} {
		for _, m := range sd.Methods {
			out = append(out, "/"+sd.ServiceName+"/"+m.MethodName)
		}
		for _, s := range sd.Streams {
			out = append(out, "/"+sd.ServiceName+"/"+s.StreamName)
		}
	}
	sort.Strings(out)
	return out
}

// nonRPCActions are schema actions that are deliberately not rpcs (field-level checks).
var nonRPCActions = []string{"messaging.ReadContent", "messaging.ViewReadReceipt"}

// rpcMatrix is the minimum-necessary matrix: who may call each rpc at all. The test compares it
// with what the shipped policies decide, in both directions, for every rpc in gen/.
var rpcMatrix = map[string][]string{
	"messaging.CreateThread":       {"patient", "proxy", "clinician", "staff"},
	"messaging.SendMessage":        {"patient", "proxy", "clinician", "staff"},
	"messaging.ListThreads":        {"patient", "proxy", "clinician", "staff"},
	"messaging.GetThread":          {"patient", "proxy", "clinician", "staff"},
	"messaging.GetMessage":         {"patient", "proxy", "clinician", "staff"},
	"messaging.GetUnreadCount":     {"patient", "proxy", "clinician", "staff"},
	"messaging.MarkRead":           {"patient", "proxy", "clinician", "staff"},
	"messaging.ArchiveThread":      {"patient", "proxy", "clinician", "staff"},
	"messaging.UnarchiveThread":    {"patient", "proxy", "clinician", "staff"},
	"messaging.ClaimThread":        {"clinician", "staff"},
	"messaging.AssignThread":       {"clinician", "staff"},
	"messaging.TransferThread":     {"clinician", "staff"},
	"messaging.CloseThread":        {"clinician", "staff"},
	"messaging.ReopenThread":       {"clinician", "staff"},
	"messaging.RetractMessage":     {"patient", "proxy", "clinician", "staff"},
	"messaging.SetLegalHold":       {"admin"},
	"messaging.GetPoolSettings":    {"clinician", "staff", "admin"},
	"messaging.UpdatePoolSettings": {"admin"},
	"messaging.CheckMessageAccess": {"svc:attachment"},
	"messaging.RunRetentionPurge":  {"admin"},
	"messaging.GetRetentionPolicy": {"admin"},
	"messaging.ListLegalHolds":     {"admin"},
	"messaging.WatchInbox":         {"patient", "proxy", "clinician", "staff"},
	"messaging.ListPools":          {"patient", "proxy", "clinician", "staff", "admin", "provisioner"},
	"messaging.GetPool":            {"patient", "proxy", "clinician", "staff", "admin", "provisioner"},
	"messaging.ListPoolMembers":    {"clinician", "staff", "admin", "provisioner"},
	"messaging.CreatePool":         {"admin", "provisioner"},
	"messaging.UpdatePool":         {"admin", "provisioner"},
	"messaging.SetPoolMember":      {"admin", "provisioner"},
	"messaging.RemovePoolMember":   {"admin", "provisioner"},
	"messaging.ListClientApps":     {"admin"},
	"messaging.ListPeople":         {"admin", "provisioner"},
	"messaging.GetPerson":          {"admin", "provisioner"},
	"messaging.ProvisionPerson":    {"admin", "provisioner"},
	"messaging.SetPersonStatus":    {"admin", "provisioner"},
	"messaging.ListProxyGrants":    {"patient", "proxy"},
	"messaging.GrantProxyAccess":   {"patient"},
	"messaging.RevokeProxyAccess":  {"patient", "proxy"},
	"messaging.RegisterClientApp":  {"admin"},
	"messaging.UpdateClientApp":    {"admin"},

	"attachment.UploadAttachment":   {"patient", "proxy", "clinician", "staff"},
	"attachment.DownloadAttachment": {"patient", "proxy", "clinician", "staff"},
	"attachment.GetAttachment":      {"patient", "proxy", "clinician", "staff", "svc:messaging"},
	"attachment.DeleteAttachment":   {"patient", "proxy", "clinician", "staff"},
	"attachment.BindAttachment":     {"svc:messaging"},
	"attachment.PurgeAttachments":   {"svc:messaging"},
	// The upload session is an upload's rpcs, the content download a download's.
	"attachment.CreateUploadSession":       {"patient", "proxy", "clinician", "staff"},
	"attachment.AppendUploadChunk":         {"patient", "proxy", "clinician", "staff"},
	"attachment.GetUploadSession":          {"patient", "proxy", "clinician", "staff"},
	"attachment.FinishUploadSession":       {"patient", "proxy", "clinician", "staff"},
	"attachment.CancelUploadSession":       {"patient", "proxy", "clinician", "staff"},
	"attachment.DownloadAttachmentContent": {"patient", "proxy", "clinician", "staff"},

	"notification.GetPreferences":    {"patient", "proxy", "clinician", "staff"},
	"notification.UpdatePreferences": {"patient", "proxy", "clinician", "staff"},
	"notification.ListDeliveries":    {"patient", "proxy", "clinician", "staff"},
	"notification.ListTemplates":     {"admin"},
	"notification.UpdateTemplate":    {"admin"},

	"audit.QueryAuditEvents":    {"auditor"},
	"audit.ExportAuditEvents":   {"auditor"},
	"audit.VerifyRange":         {"auditor"},
	"audit.GetLatestCheckpoint": {"auditor"},
	"audit.GetInclusionProof":   {"auditor"},
	"audit.GetConsistencyProof": {"auditor"},
	"audit.GetAccessReport":     {"patient", "auditor"},
	"audit.ListAlerts":          {"auditor"},
	"audit.AcknowledgeAlert":    {"auditor"},
}

// callers are one principal per role (full OAuth scopes, MFA, fresh login, an active proxy grant
// with both proxy scopes) and the service identities.
func callers() map[string]*auth.Principal {
	return map[string]*auth.Principal{
		"patient":   with(user("m-patient", auth.RolePatient), func(p *auth.Principal) { p.PatientID = "pat-1" }),
		"proxy":     with(user("m-proxy", auth.RoleProxy), func(p *auth.Principal) { p.ProxyGrants = proxy.ProxyGrants[:1] }),
		"clinician": clinician,
		"staff":     staff,
		"admin":     admin,
		"auditor":   auditor,
		"nobody":    noRoles,
		// provisioner has no login, hence no MFA and no freshness, and only its own scope.
		"provisioner": provisioner,

		"svc:attachment":   svcAttach,
		"svc:messaging":    svcMsg,
		"svc:notification": svcNotif,
		"svc:audit":        service("audit"),
	}
}

// TestEveryRPCIsCoveredByPolicy: every rpc in gen/ maps to a declared action, is named explicitly
// by some permit policy, and no permit leaves its action unconstrained — so no rpc is reachable
// by accident — and the schema declares no action that is not an rpc (or a listed field action).
func TestEveryRPCIsCoveredByPolicy(t *testing.T) {
	t.Parallel()
	e := newEngine(t, nil)
	rpcs := generatedRPCs()
	if len(rpcs) != 66 {
		t.Errorf("generated rpcs = %d, want 66 (update rpcMatrix when the API changes)", len(rpcs))
	}
	named := map[string][]string{} // action → permit policies naming it
	for id, p := range e.PolicySet().All() {
		if p.Effect() != cedar.Permit {
			continue
		}
		switch s := p.AST().Action.(type) {
		case xast.ScopeTypeEq:
			named[string(s.Entity.ID)] = append(named[string(s.Entity.ID)], string(id))
		case xast.ScopeTypeInSet:
			for _, a := range s.Entities {
				named[string(a.ID)] = append(named[string(a.ID)], string(id))
			}
		default:
			t.Errorf("permit policy %s constrains its action with %T; permits must list their actions explicitly", id, s)
		}
	}
	declared := e.Actions()
	seen := map[string]bool{}
	for _, m := range rpcs {
		action, _, ok := policy.ActionForMethod(m)
		if !ok {
			t.Errorf("ActionForMethod(%s) = not ok, want an action", m)
			continue
		}
		seen[action] = true
		if !slices.Contains(declared, action) {
			t.Errorf("rpc %s: action %s is not declared in the schema", m, action)
		}
		if len(named[action]) == 0 {
			t.Errorf("rpc %s: no permit policy names %s (unreachable rpc, or missing rule)", m, action)
		}
		if _, ok := rpcMatrix[action]; !ok {
			t.Errorf("rpc %s: missing from rpcMatrix", m)
		}
	}
	for _, a := range declared {
		if !seen[a] && !slices.Contains(nonRPCActions, a) {
			t.Errorf("schema declares action %s, which is no rpc in gen/ (stale policy?)", a)
		}
	}
	for a := range rpcMatrix {
		if !seen[a] {
			t.Errorf("rpcMatrix names %s, which is no rpc in gen/", a)
		}
	}
}

// TestRPCLevelMatrix evaluates every rpc for every role and service identity at the rpc level and
// compares with rpcMatrix: minimum necessary, in both directions.
// TestEveryRPCDeclaresItsTarget: every rpc of gen/ says how its target record is read from its
// request (policy/targets.go), so that a refusal by the rpc-level guard names what was asked
// for; and no declaration names an rpc that does not exist.
func TestEveryRPCDeclaresItsTarget(t *testing.T) {
	t.Parallel()
	declared := map[string]bool{}
	for _, a := range policy.DeclaredTargets() {
		declared[a] = true
	}
	for _, m := range generatedRPCs() {
		action, _, ok := policy.ActionForMethod(m)
		if !ok {
			t.Errorf("rpc %s has no policy action", m)
			continue
		}
		if !declared[action] {
			t.Errorf("rpc %s declares no target record in policy/targets.go", action)
		}
		tgt, _ := policy.TargetOf(action, nil)
		if tgt.Type == "" {
			t.Errorf("rpc %s: target without a record type", action)
		}
		delete(declared, action)
	}
	for a := range declared {
		t.Errorf("policy/targets.go declares %s, which is not an rpc of gen/", a)
	}
}

func TestRPCLevelMatrix(t *testing.T) {
	t.Parallel()
	e := newEngine(t, nil)
	for _, m := range generatedRPCs() {
		action, svc, _ := policy.ActionForMethod(m)
		for name, p := range callers() {
			want := slices.Contains(rpcMatrix[action], name)
			t.Run(action+"/"+name, func(t *testing.T) {
				t.Parallel()
				d := e.Evaluate(p, action, policy.APIResource(svc), policy.Context{})
				if d.Allowed != want {
					t.Errorf("Evaluate(%s, %s, Api) = allowed %v (reasons %v), want %v", name, action, d.Allowed, d.Reasons, want)
				}
			})
		}
	}
}

// TestRPCLevelRules covers the rpc-level conditions beyond the role: OAuth scopes, MFA,
// freshness, and proxies' grant scopes.
func TestRPCLevelRules(t *testing.T) {
	t.Parallel()
	e := newEngine(t, nil)
	proxyReadOnly := with(proxy, func(p *auth.Principal) { p.ProxyGrants = proxy.ProxyGrants[1:2] })
	tests := []struct {
		name   string
		p      *auth.Principal
		action string
		allow  bool
	}{
		{"proxy with read-only grant may read", proxyReadOnly, "messaging.GetThread", true},
		{"proxy with read-only grant may not send", proxyReadOnly, "messaging.SendMessage", false},
		{"proxy with only expired grants may not read", proxyExpired, "messaging.ListThreads", false},
		{"proxy without grants still manages own preferences", proxyExpired, "notification.GetPreferences", true},
		{"clinician without MFA may not list", clinNoMFA, "messaging.ListThreads", false},
		{"stale clinician may list", clinStale, "messaging.ListThreads", true},
		{"stale clinician may not transfer", clinStale, "messaging.TransferThread", false},
		{"stale admin may not purge", admStale, "messaging.RunRetentionPurge", false},
		{"stale admin may read templates", admStale, "notification.ListTemplates", true},
		{"stale auditor may not export", with(auditor, func(p *auth.Principal) { p.AuthTime = now.Add(-time.Hour) }), "audit.ExportAuditEvents", false},
		{"auditor without auth_time may not export", with(auditor, func(p *auth.Principal) { p.AuthTime = time.Time{} }), "audit.ExportAuditEvents", false},
		{"patient without messaging.write scope may not send", with(patient, func(p *auth.Principal) { p.Scopes = []string{"messages.read"} }), "messaging.SendMessage", false},
		{"patient with messages.read gets access report", with(patient, func(p *auth.Principal) { p.Scopes = []string{"messages.read"} }), "audit.GetAccessReport", true},
		{"patient without messages.read may not get access report", with(patient, func(p *auth.Principal) { p.Scopes = []string{"messages.write"} }), "audit.GetAccessReport", false},
		{"auditor with only audit.read gets access report", with(auditor, func(p *auth.Principal) { p.Scopes = []string{"audit.read"} }), "audit.GetAccessReport", true},
		{"admin with only admin scope reads pool settings", with(admin, func(p *auth.Principal) { p.Scopes = []string{"admin"} }), "messaging.GetPoolSettings", true},
		{"clinician without messages.read may not read pool settings", with(clinician, func(p *auth.Principal) { p.Scopes = []string{"messages.write"} }), "messaging.GetPoolSettings", false},
		{"admin with dev scopes updates templates", with(admin, func(p *auth.Principal) { p.Scopes = []string{"admin", "notifications.manage"} }), "notification.UpdateTemplate", true},
		{"admin without admin scope may not set legal hold", with(admin, func(p *auth.Principal) { p.Scopes = []string{"messages.read"} }), "messaging.SetLegalHold", false},
		{"patient may not call an auditor rpc", patient, "audit.QueryAuditEvents", false},
		{"proxy with read-only grant may watch", proxyReadOnly, "messaging.WatchInbox", true},
		{"proxy with only expired grants may not watch", proxyExpired, "messaging.WatchInbox", false},
		{"clinician without MFA may not watch", clinNoMFA, "messaging.WatchInbox", false},
		{"patient without messages.read may not watch", with(patient, func(p *auth.Principal) { p.Scopes = []string{"messages.write"} }), "messaging.WatchInbox", false},
		{"provisioner without directory.provision may not provision", with(provisioner, func(p *auth.Principal) { p.Scopes = []string{"openid"} }), "messaging.ProvisionPerson", false},
		{"provisioner without directory.provision may not list pools", with(provisioner, func(p *auth.Principal) { p.Scopes = []string{"openid"} }), "messaging.ListPools", false},
		{"stale admin may not provision", admStale, "messaging.ProvisionPerson", false},
		{"admin with only admin scope provisions", with(admin, func(p *auth.Principal) { p.Scopes = []string{"admin"} }), "messaging.ProvisionPerson", true},
		{"an admin token with directory.provision passes the policy (the directory admits that scope only from a provisioning app, which confers no admin role)", with(admin, func(p *auth.Principal) { p.Scopes = []string{"directory.provision"} }), "messaging.ProvisionPerson", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			svc, _, _ := strings.Cut(tt.action, ".")
			d := e.Evaluate(tt.p, tt.action, policy.APIResource(svc), policy.Context{})
			if d.Allowed != tt.allow {
				t.Errorf("Evaluate(%s, %s, Api) = allowed %v (reasons %v), want %v", tt.p.Subject, tt.action, d.Allowed, d.Reasons, tt.allow)
			}
		})
	}
}
