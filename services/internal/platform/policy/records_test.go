package policy_test

import (
	"slices"
	"testing"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
)

// TestRecordLevelPolicies is the allow/deny table of the record-level rules, run against the
// shipped policy files. Each case names the rule it exercises.
func TestRecordLevelPolicies(t *testing.T) {
	t.Parallel()
	e := newEngine(t, nil)
	bg := policy.Context{BreakGlassReason: "patient in ED, unconscious"}
	type tc struct {
		name       string
		p          *auth.Principal
		action     string
		res        policy.Resource
		rc         policy.Context
		allow      bool
		breakGlass bool
		reason     string // a policy id expected among the reasons, when set
	}
	tests := []tc{
		// Patients: only their own threads, messages, attachments, access report.
		{name: "patient reads own thread", p: patient, action: "messaging.GetThread", res: threadA, allow: true, reason: "patient-own-records"},
		{name: "patient reads own message content", p: patient, action: "messaging.ReadContent", res: threadA, allow: true},
		{name: "patient reads own adolescent-confidential thread", p: patient, action: "messaging.GetThread", res: threadAC, allow: true},
		{name: "patient cannot read another patient's thread", p: patient, action: "messaging.GetThread", res: threadB, reason: ""},
		{name: "patient cannot read another patient's thread in own pool", p: patient, action: "messaging.GetThread", res: thread2A},
		{name: "patient cannot read other content", p: patient, action: "messaging.ReadContent", res: threadB},
		{name: "patient sends on own thread", p: patient, action: "messaging.SendMessage", res: threadA, allow: true},
		{name: "patient cannot send on other thread", p: patient, action: "messaging.SendMessage", res: threadB},
		{name: "patient creates own thread", p: patient, action: "messaging.CreateThread", res: threadA, allow: true},
		{name: "patient marks own thread read", p: patient, action: "messaging.MarkRead", res: threadA, allow: true},
		{name: "patient archives own thread", p: patient, action: "messaging.ArchiveThread", res: threadA, allow: true},
		{name: "patient cannot claim thread", p: patient, action: "messaging.ClaimThread", res: threadA},
		{name: "patient cannot close thread", p: patient, action: "messaging.CloseThread", res: threadA},
		{name: "patient cannot transfer thread", p: patient, action: "messaging.TransferThread", res: threadA, rc: policy.Context{TargetPoolID: "pool-a"}},
		{name: "patient retracts own message", p: patient, action: "messaging.RetractMessage", res: msgByPat, allow: true},
		{name: "patient cannot retract clinician message", p: patient, action: "messaging.RetractMessage", res: msgByCl, reason: "retract-delete-only-own"},
		{name: "patient downloads own attachment", p: patient, action: "attachment.DownloadAttachment", res: attA, allow: true},
		{name: "patient cannot download other attachment", p: patient, action: "attachment.DownloadAttachment", res: attB},
		{name: "patient deletes own upload", p: patient, action: "attachment.DeleteAttachment", res: attA, allow: true},
		{name: "patient2 cannot delete patient1 upload", p: patient2, action: "attachment.DeleteAttachment", res: attA},
		{name: "patient gets own access report", p: patient, action: "audit.GetAccessReport", res: pat1, allow: true},
		{name: "patient cannot get another access report", p: patient, action: "audit.GetAccessReport", res: pat2},
		{name: "patient cannot query audit log", p: patient, action: "audit.QueryAuditEvents", res: auditLog},
		{name: "patient reads own preferences", p: patient, action: "notification.GetPreferences", res: prefsOf("u-pat-1"), allow: true},
		{name: "patient cannot read other preferences", p: patient, action: "notification.GetPreferences", res: prefsOf("u-pat-2")},
		{name: "patient lists own deliveries", p: patient, action: "notification.ListDeliveries", res: delivOf("u-pat-1"), allow: true},
		{name: "patient cannot read pool settings", p: patient, action: "messaging.GetPoolSettings", res: poolA},
		{name: "patient without MFA is fine (MFA is for the workforce)", p: patient, action: "messaging.ListThreads", res: threadA, allow: true},
		{name: "patient break-glass grants nothing", p: patient, action: "messaging.GetThread", res: threadB, rc: bg},

		// Proxies: active, unexpired grant whose scope covers the action; never adolescent-confidential.
		{name: "proxy reads granted patient thread", p: proxy, action: "messaging.GetThread", res: threadA, allow: true, reason: "proxy-grant-read"},
		{name: "proxy reads granted content", p: proxy, action: "messaging.ReadContent", res: threadA, allow: true},
		{name: "proxy sends under send scope", p: proxy, action: "messaging.SendMessage", res: threadA, allow: true, reason: "proxy-grant-send"},
		{name: "proxy reads read-only grant", p: proxy, action: "messaging.GetThread", res: threadB, allow: true},
		{name: "proxy cannot send under read-only grant", p: proxy, action: "messaging.SendMessage", res: threadB},
		{name: "proxy cannot read under expired grant", p: proxy, action: "messaging.GetThread", res: thread3},
		{name: "proxy with only expired grant denied", p: proxyExpired, action: "messaging.GetThread", res: threadA},
		{name: "proxy never reads adolescent-confidential thread", p: proxy, action: "messaging.GetThread", res: threadAC, reason: "proxy-never-adolescent-confidential"},
		{name: "proxy never reads adolescent-confidential content", p: proxy, action: "messaging.ReadContent", res: threadAC},
		{name: "proxy never downloads adolescent-confidential attachment", p: proxy, action: "attachment.DownloadAttachment", res: attAC},
		{name: "proxy never sends on adolescent-confidential thread", p: proxy, action: "messaging.SendMessage", res: threadAC},
		{name: "proxy downloads granted attachment", p: proxy, action: "attachment.DownloadAttachment", res: attA, allow: true},
		{name: "proxy retracts own message", p: proxy, action: "messaging.RetractMessage", res: msgByPx, allow: true},
		{name: "proxy cannot retract patient message", p: proxy, action: "messaging.RetractMessage", res: msgByPat},
		{name: "proxy cannot claim", p: proxy, action: "messaging.ClaimThread", res: threadA},
		{name: "proxy reads own preferences", p: proxy, action: "notification.GetPreferences", res: prefsOf("u-proxy-1"), allow: true},
		{name: "proxy cannot get patient access report", p: proxy, action: "audit.GetAccessReport", res: pat1},
		{name: "proxy without grant for patient denied", p: proxy, action: "messaging.GetThread", res: policy.Resource{Type: "Thread", ID: "t-9", PatientID: "pat-9", PoolID: "pool-a"}},

		// Clinicians and staff: their pools; MFA; assignment/transfer need pool membership.
		{name: "clinician reads pool thread", p: clinician, action: "messaging.GetThread", res: threadA, allow: true, reason: "care-team-pool-records"},
		{name: "clinician reads pool content", p: clinician, action: "messaging.ReadContent", res: thread2A, allow: true},
		{name: "clinician reads adolescent-confidential in pool", p: clinician, action: "messaging.GetThread", res: threadAC, allow: true},
		{name: "clinician cannot read other pool", p: clinician, action: "messaging.GetThread", res: threadB},
		{name: "clinician claims pool thread", p: clinician, action: "messaging.ClaimThread", res: threadA, allow: true},
		{name: "clinician assigns in pool", p: clinician, action: "messaging.AssignThread", res: threadA, allow: true},
		{name: "clinician cannot assign outside pool", p: clinician, action: "messaging.AssignThread", res: threadB},
		{name: "clinician transfers to own other pool", p: clinician, action: "messaging.TransferThread", res: threadA, rc: policy.Context{TargetPoolID: "pool-c"}, allow: true},
		{name: "clinician cannot transfer to foreign pool", p: clinician, action: "messaging.TransferThread", res: threadA, rc: policy.Context{TargetPoolID: "pool-b"}, reason: "transfer-needs-target-pool"},
		{name: "clinician cannot transfer from foreign pool", p: clinician, action: "messaging.TransferThread", res: threadB, rc: policy.Context{TargetPoolID: "pool-a"}},
		{name: "clinician transfer needs fresh login", p: clinStale, action: "messaging.TransferThread", res: threadA, rc: policy.Context{TargetPoolID: "pool-c"}, reason: "fresh-auth-for-sensitive-actions"},
		{name: "stale clinician still reads (not sensitive)", p: clinStale, action: "messaging.GetThread", res: threadA, allow: true},
		{name: "clinician without MFA denied", p: clinNoMFA, action: "messaging.GetThread", res: threadA, reason: "mfa-required-for-workforce"},
		{name: "clinician with no amr denied", p: clinNoAMR, action: "messaging.GetThread", res: threadA},
		{name: "clinician closes pool thread", p: clinician, action: "messaging.CloseThread", res: threadA, allow: true},
		{name: "clinician retracts own message", p: clinician, action: "messaging.RetractMessage", res: msgByCl, allow: true},
		{name: "clinician cannot retract patient message", p: clinician, action: "messaging.RetractMessage", res: msgByPat},
		{name: "clinician reads pool settings", p: clinician, action: "messaging.GetPoolSettings", res: poolA, allow: true},
		{name: "clinician cannot update pool settings", p: clinician, action: "messaging.UpdatePoolSettings", res: poolA},
		{name: "clinician cannot set legal hold", p: clinician, action: "messaging.SetLegalHold", res: threadA},
		{name: "clinician cannot query audit", p: clinician, action: "audit.QueryAuditEvents", res: auditLog},
		{name: "staff reads pool thread", p: staff, action: "messaging.GetThread", res: threadA, allow: true},
		{name: "staff claims pool thread", p: staff, action: "messaging.ClaimThread", res: thread2A, allow: true},
		{name: "staff cannot read other pool", p: staff, action: "messaging.GetThread", res: threadB},
		{name: "staff without MFA denied", p: staffNoMF, action: "messaging.GetThread", res: threadA, reason: "mfa-required-for-workforce"},
		{name: "staff has no break-glass", p: staff, action: "messaging.GetThread", res: threadB, rc: bg},

		// Break-the-glass.
		{name: "clinician break-glass reads other pool", p: clinician, action: "messaging.GetThread", res: threadB, rc: bg, allow: true, breakGlass: true, reason: "clinician-break-glass-read"},
		{name: "clinician break-glass reads content", p: clinician, action: "messaging.ReadContent", res: threadB, rc: bg, allow: true, breakGlass: true},
		{name: "clinician break-glass downloads attachment", p: clinician, action: "attachment.DownloadAttachment", res: attB, rc: bg, allow: true, breakGlass: true},
		{name: "break-glass needs a reason", p: clinician, action: "messaging.GetThread", res: threadB, rc: policy.Context{BreakGlassReason: "   "}},
		{name: "break-glass is read-only", p: clinician, action: "messaging.SendMessage", res: threadB, rc: bg},
		{name: "break-glass cannot transfer", p: clinician, action: "messaging.TransferThread", res: threadB, rc: policy.Context{BreakGlassReason: "x", TargetPoolID: "pool-a"}},
		{name: "break-glass needs fresh login", p: clinStale, action: "messaging.GetThread", res: threadB, rc: bg, reason: "fresh-auth-for-break-glass"},
		{name: "break-glass needs MFA", p: clinNoMFA, action: "messaging.GetThread", res: threadB, rc: bg},
		{name: "in-pool read with reason is not break-glass", p: clinician, action: "messaging.GetThread", res: threadA, rc: bg, allow: true, breakGlass: false},

		// Admins configure and read no PHI.
		{name: "admin sets legal hold", p: admin, action: "messaging.SetLegalHold", res: threadA, allow: true, reason: "admin-configuration"},
		{name: "admin legal hold needs fresh login", p: admStale, action: "messaging.SetLegalHold", res: threadA, reason: "fresh-auth-for-sensitive-actions"},
		{name: "admin updates pool settings", p: admin, action: "messaging.UpdatePoolSettings", res: poolB, allow: true},
		{name: "admin reads pool settings", p: admin, action: "messaging.GetPoolSettings", res: poolB, allow: true},
		{name: "admin updates template", p: admin, action: "notification.UpdateTemplate", res: template, allow: true},
		{name: "admin without MFA denied", p: admNoMFA, action: "notification.ListTemplates", res: template, reason: "mfa-required-for-workforce"},
		{name: "admin cannot read thread", p: admin, action: "messaging.GetThread", res: threadA},
		{name: "admin cannot read content", p: admin, action: "messaging.ReadContent", res: threadA},
		{name: "admin cannot download attachment", p: admin, action: "attachment.DownloadAttachment", res: attA},
		{name: "admin cannot read audit log", p: admin, action: "audit.QueryAuditEvents", res: auditLog},
		{name: "admin who is also clinician reads no PHI", p: adminClin, action: "messaging.GetThread", res: threadA, reason: "admin-auditor-read-no-phi"},
		{name: "admin who is also clinician may still claim", p: adminClin, action: "messaging.ClaimThread", res: threadA, allow: true},

		// The identity provider's provisioning client manages people and pools with no login,
		// and reads nothing else.
		{name: "provisioner adds a pool member without a login", p: provisioner, action: "messaging.SetPoolMember", res: poolB, allow: true, reason: "provisioner-directory"},
		{name: "provisioner lists pool members", p: provisioner, action: "messaging.ListPoolMembers", res: poolA, allow: true},
		{name: "provisioner cannot change pool settings", p: provisioner, action: "messaging.UpdatePoolSettings", res: poolB},
		{name: "provisioner cannot read thread", p: provisioner, action: "messaging.GetThread", res: threadA},
		{name: "provisioner cannot read content", p: provisioner, action: "messaging.ReadContent", res: threadA},
		{name: "provisioner cannot download attachment", p: provisioner, action: "attachment.DownloadAttachment", res: attA},
		{name: "provisioner cannot read audit log", p: provisioner, action: "audit.QueryAuditEvents", res: auditLog},
		{name: "provisioner who is also clinician reads no PHI", p: with(provisioner, func(p *auth.Principal) {
			p.Roles = []auth.Role{auth.RoleProvisioner, auth.RoleClinician}
			p.CarePools, p.AMR, p.AuthTime, p.Scopes = []string{"pool-a"}, []string{"pwd", "otp"}, now, allScopes
		}), action: "messaging.GetThread", res: threadA, reason: "admin-auditor-read-no-phi"},

		// Auditors read the audit log and never message content.
		{name: "auditor queries audit log", p: auditor, action: "audit.QueryAuditEvents", res: auditLog, allow: true, reason: "auditor-audit-log"},
		{name: "auditor exports audit log", p: auditor, action: "audit.ExportAuditEvents", res: auditLog, allow: true},
		{name: "auditor verifies range", p: auditor, action: "audit.VerifyRange", res: auditLog, allow: true},
		{name: "auditor gets any access report", p: auditor, action: "audit.GetAccessReport", res: pat2, allow: true},
		{name: "auditor without MFA denied", p: audNoMFA, action: "audit.QueryAuditEvents", res: auditLog},
		{name: "auditor never reads thread", p: auditor, action: "messaging.GetThread", res: threadA},
		{name: "auditor never reads content", p: auditor, action: "messaging.ReadContent", res: threadA},
		{name: "auditor never downloads attachments", p: auditor, action: "attachment.DownloadAttachment", res: attA},
		{name: "auditor break-glass grants nothing", p: auditor, action: "messaging.ReadContent", res: threadA, rc: bg},

		// Service identities.
		{name: "attachment service checks message access", p: svcAttach, action: "messaging.CheckMessageAccess", res: threadA, allow: true},
		{name: "attachment service cannot read threads", p: svcAttach, action: "messaging.GetThread", res: threadA},
		{name: "messaging service binds attachments", p: svcMsg, action: "attachment.BindAttachment", res: attA, allow: true},
		{name: "messaging service purges attachments", p: svcMsg, action: "attachment.PurgeAttachments", res: attA, allow: true},
		{name: "messaging service gets attachment", p: svcMsg, action: "attachment.GetAttachment", res: attA, allow: true},
		{name: "messaging service cannot download attachment", p: svcMsg, action: "attachment.DownloadAttachment", res: attA},
		{name: "messaging service cannot check its own access", p: svcMsg, action: "messaging.CheckMessageAccess", res: threadA},
		{name: "notification service reaches nothing", p: svcNotif, action: "messaging.GetThread", res: threadA},
		{name: "people never call CheckMessageAccess", p: clinician, action: "messaging.CheckMessageAccess", res: threadA},
		{name: "people never bind attachments", p: patient, action: "attachment.BindAttachment", res: attA},

		// Deny by default.
		{name: "no roles, nothing", p: noRoles, action: "messaging.GetThread", res: threadA},
		{name: "unknown action denied", p: clinician, action: "messaging.DropTables", res: threadA},
		{name: "unknown resource type denied", p: clinician, action: "messaging.GetThread", res: policy.Resource{Type: "Table", ID: "x", PoolID: "pool-a"}},
		{name: "empty resource id denied", p: clinician, action: "messaging.GetThread", res: policy.Resource{Type: "Thread", PoolID: "pool-a"}},
		{name: "nil principal denied", p: nil, action: "messaging.GetThread", res: threadA},
		{name: "OAuth scope missing denied", p: with(patient, func(p *auth.Principal) { p.Scopes = []string{"messages.write"} }), action: "messaging.GetThread", res: threadA, reason: "oauth-scope-messages-read"},
		{name: "OAuth scope present allows", p: with(patient, func(p *auth.Principal) { p.Scopes = []string{"messages.read"} }), action: "messaging.GetThread", res: threadA, allow: true},
		{name: "pool thread with empty pool not reachable", p: clinician, action: "messaging.GetThread", res: policy.Resource{Type: "Thread", ID: "t-x", PatientID: "pat-1"}},
	}
	if len(tests) < 80 {
		t.Fatalf("record table has %d cases, want at least 80", len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := e.Evaluate(tt.p, tt.action, tt.res, tt.rc)
			if d.Allowed != tt.allow {
				t.Fatalf("Evaluate(%s, %s, %s) = allowed %v (reasons %v), want %v", subject(tt.p), tt.action, tt.res.ID, d.Allowed, d.Reasons, tt.allow)
			}
			if d.BreakGlass != tt.breakGlass {
				t.Errorf("Evaluate(%s, %s, %s).BreakGlass = %v, want %v", subject(tt.p), tt.action, tt.res.ID, d.BreakGlass, tt.breakGlass)
			}
			if tt.reason != "" && !slices.Contains(d.Reasons, tt.reason) {
				t.Errorf("Evaluate(%s, %s, %s).Reasons = %v, want to contain %s", subject(tt.p), tt.action, tt.res.ID, d.Reasons, tt.reason)
			}
		})
	}
}

func subject(p *auth.Principal) string {
	if p == nil {
		return "<nil>"
	}
	return p.Subject
}
