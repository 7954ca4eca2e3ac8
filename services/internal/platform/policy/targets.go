package policy

import (
	"google.golang.org/protobuf/proto"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	notificationv1 "github.com/securemsg/securemsg/gen/securemsg/notification/v1"
)

// Target is the record an rpc asks for, as its request names it: what a refusal by the rpc-level
// guard records, so that "who tried to open this thread" also finds the callers the guard
// turned away before any use case ran (missing MFA, admin/auditor segregation, an expired proxy
// grant). Type is a policy resource type ("Thread"); ID and PatientID may be empty when the
// request names none (a listing, an upload that creates its record).
type Target struct {
	Type      string
	ID        string
	PatientID string
}

// TargetFunc reads an rpc's target from its request message.
type TargetFunc func(req any) Target

// rpcTargets declares, for every rpc, how its target record is read from the request. The
// coverage test (TestEveryRPCDeclaresItsTarget) fails when an rpc of gen/ has no entry, so a new
// rpc cannot be added without saying what its refusals are about.
var rpcTargets = map[string]TargetFunc{
	"messaging.CreateThread": read(func(r *messagingv1.CreateThreadRequest) Target {
		return Target{Type: "Thread", PatientID: r.GetPatientId()}
	}),
	"messaging.SendMessage": threadOf[*messagingv1.SendMessageRequest],
	"messaging.ListThreads": read(func(r *messagingv1.ListThreadsRequest) Target {
		return Target{Type: "Thread", PatientID: r.GetPatientId()}
	}),
	"messaging.GetThread": threadOf[*messagingv1.GetThreadRequest],
	"messaging.GetMessage": read(func(r *messagingv1.GetMessageRequest) Target {
		return Target{Type: "Message", ID: r.GetMessageId()}
	}),
	"messaging.GetUnreadCount":  fixed("Thread"),
	"messaging.MarkRead":        threadOf[*messagingv1.MarkReadRequest],
	"messaging.ArchiveThread":   threadOf[*messagingv1.ArchiveThreadRequest],
	"messaging.UnarchiveThread": threadOf[*messagingv1.UnarchiveThreadRequest],
	"messaging.ClaimThread":     threadOf[*messagingv1.ClaimThreadRequest],
	"messaging.AssignThread":    threadOf[*messagingv1.AssignThreadRequest],
	"messaging.TransferThread":  threadOf[*messagingv1.TransferThreadRequest],
	"messaging.CloseThread":     threadOf[*messagingv1.CloseThreadRequest],
	"messaging.ReopenThread":    threadOf[*messagingv1.ReopenThreadRequest],
	"messaging.RetractMessage": read(func(r *messagingv1.RetractMessageRequest) Target {
		return Target{Type: "Message", ID: r.GetMessageId()}
	}),
	"messaging.SetLegalHold": read(func(r *messagingv1.SetLegalHoldRequest) Target {
		if id := r.GetThreadId(); id != "" {
			return Target{Type: "LegalHold", ID: id}
		}
		return Target{Type: "LegalHold", PatientID: r.GetPatientId()}
	}),
	"messaging.GetPoolSettings": read(func(r *messagingv1.GetPoolSettingsRequest) Target {
		return Target{Type: "PoolSettings", ID: r.GetPoolId()}
	}),
	"messaging.UpdatePoolSettings": read(func(r *messagingv1.UpdatePoolSettingsRequest) Target {
		return Target{Type: "PoolSettings", ID: r.GetSettings().GetPoolId()}
	}),
	"messaging.CheckMessageAccess": read(func(r *messagingv1.CheckMessageAccessRequest) Target {
		if id := r.GetMessageId(); id != "" {
			return Target{Type: "Message", ID: id}
		}
		return Target{Type: "Thread", ID: r.GetThreadId()}
	}),
	"messaging.RunRetentionPurge":  fixed("Thread"),
	"messaging.GetRetentionPolicy": fixed("Pool"),
	"messaging.ListLegalHolds":     fixed("LegalHold"),
	"messaging.ListProxyGrants": read(func(r *messagingv1.ListProxyGrantsRequest) Target {
		return Target{Type: "ProxyGrant", PatientID: r.GetPatientId()}
	}),
	"messaging.GrantProxyAccess": fixed("ProxyGrant"),
	"messaging.RevokeProxyAccess": read(func(r *messagingv1.RevokeProxyAccessRequest) Target {
		return Target{Type: "ProxyGrant", ID: r.GetGrantId()}
	}),
	"messaging.ListClientApps": fixed("ClientApp"),
	"messaging.ListPeople":     fixed("Person"),
	"messaging.GetPerson": read(func(r *messagingv1.GetPersonRequest) Target {
		return Target{Type: "Person", ID: r.GetSubject()}
	}),
	"messaging.ProvisionPerson": read(func(r *messagingv1.ProvisionPersonRequest) Target {
		return Target{Type: "Person", ID: r.GetPerson().GetSubject()}
	}),
	"messaging.SetPersonStatus": read(func(r *messagingv1.SetPersonStatusRequest) Target {
		return Target{Type: "Person", ID: r.GetSubject()}
	}),
	"messaging.RegisterClientApp": read(func(r *messagingv1.RegisterClientAppRequest) Target {
		return Target{Type: "ClientApp", ID: r.GetApp().GetClientId()}
	}),
	"messaging.UpdateClientApp": read(func(r *messagingv1.UpdateClientAppRequest) Target {
		return Target{Type: "ClientApp", ID: r.GetApp().GetClientId()}
	}),
	"messaging.ListPools": read(func(r *messagingv1.ListPoolsRequest) Target {
		return Target{Type: "Pool", PatientID: r.GetPatientId()}
	}),
	"messaging.GetPool": read(func(r *messagingv1.GetPoolRequest) Target {
		return Target{Type: "Pool", ID: r.GetPoolId()}
	}),
	"messaging.ListPoolMembers": read(func(r *messagingv1.ListPoolMembersRequest) Target {
		return Target{Type: "Pool", ID: r.GetPoolId()}
	}),
	"messaging.CreatePool": read(func(r *messagingv1.CreatePoolRequest) Target {
		return Target{Type: "Pool", ID: r.GetPool().GetPoolId()}
	}),
	"messaging.UpdatePool": read(func(r *messagingv1.UpdatePoolRequest) Target {
		return Target{Type: "Pool", ID: r.GetPool().GetPoolId()}
	}),
	"messaging.SetPoolMember": read(func(r *messagingv1.SetPoolMemberRequest) Target {
		return Target{Type: "PoolMembership", ID: r.GetSubject()}
	}),
	"messaging.RemovePoolMember": read(func(r *messagingv1.RemovePoolMemberRequest) Target {
		return Target{Type: "PoolMembership", ID: r.GetSubject()}
	}),
	// A watch names no record: each notice is checked against its thread when it is sent.
	"messaging.WatchInbox": fixed("Thread"),

	// An upload creates its record: the client stream's first message only arrives later, so a
	// refusal at the opening names the record type.
	"attachment.UploadAttachment":   fixed("Attachment"),
	"attachment.DownloadAttachment": attachmentOf[*attachmentv1.DownloadAttachmentRequest],
	"attachment.GetAttachment":      attachmentOf[*attachmentv1.GetAttachmentRequest],
	"attachment.DeleteAttachment":   attachmentOf[*attachmentv1.DeleteAttachmentRequest],
	"attachment.BindAttachment":     attachmentOf[*attachmentv1.BindAttachmentRequest],
	"attachment.PurgeAttachments":   fixed("Attachment"),
	// An upload session's id is the id of the attachment it becomes.
	"attachment.CreateUploadSession": fixed("Attachment"),
	"attachment.AppendUploadChunk": read(func(r *attachmentv1.AppendUploadChunkRequest) Target {
		return Target{Type: "Attachment", ID: r.GetUploadId()}
	}),
	"attachment.GetUploadSession": read(func(r *attachmentv1.GetUploadSessionRequest) Target {
		return Target{Type: "Attachment", ID: r.GetUploadId()}
	}),
	"attachment.FinishUploadSession": read(func(r *attachmentv1.FinishUploadSessionRequest) Target {
		return Target{Type: "Attachment", ID: r.GetUploadId()}
	}),
	"attachment.CancelUploadSession": read(func(r *attachmentv1.CancelUploadSessionRequest) Target {
		return Target{Type: "Attachment", ID: r.GetUploadId()}
	}),
	"attachment.DownloadAttachmentContent": attachmentOf[*attachmentv1.DownloadAttachmentContentRequest],

	// Preferences are the caller's own: the record is the caller, filled in by the guard.
	"notification.GetPreferences":    fixed("Preferences"),
	"notification.UpdatePreferences": fixed("Preferences"),
	"notification.ListDeliveries":    fixed("Preferences"),
	"notification.ListTemplates":     fixed("Template"),
	"notification.UpdateTemplate": read(func(r *notificationv1.UpdateTemplateRequest) Target {
		t := r.GetTemplate()
		return Target{Type: "Template", ID: t.GetKind().String() + "/" + t.GetChannel().String() + "/" + t.GetLocale()}
	}),

	"audit.QueryAuditEvents": read(func(r *auditv1.QueryAuditEventsRequest) Target {
		return Target{Type: "AuditLog", ID: r.GetFilter().GetRecordId(), PatientID: r.GetFilter().GetPatientId()}
	}),
	"audit.ExportAuditEvents": read(func(r *auditv1.ExportAuditEventsRequest) Target {
		return Target{Type: "AuditLog", ID: r.GetFilter().GetRecordId(), PatientID: r.GetFilter().GetPatientId()}
	}),
	"audit.VerifyRange":         fixed("AuditLog"),
	"audit.GetLatestCheckpoint": fixed("AuditLog"),
	"audit.GetInclusionProof":   fixed("AuditLog"),
	"audit.GetConsistencyProof": fixed("AuditLog"),
	"audit.GetAccessReport": read(func(r *auditv1.GetAccessReportRequest) Target {
		return Target{Type: "AuditLog", PatientID: r.GetPatientId()}
	}),
	"audit.ListAlerts": fixed("AuditLog"),
	"audit.AcknowledgeAlert": read(func(r *auditv1.AcknowledgeAlertRequest) Target {
		return Target{Type: "AuditLog", ID: r.GetAlertId()}
	}),
}

// TargetOf reads the target of action's request req (nil when the request is not known yet);
// ok is false for an action without a declared target.
func TargetOf(action string, req any) (Target, bool) {
	f, ok := rpcTargets[action]
	if !ok {
		return Target{}, false
	}
	return f(req), true
}

// DeclaredTargets lists the actions with a declared target, for the coverage test.
func DeclaredTargets() []string {
	out := make([]string, 0, len(rpcTargets))
	for a := range rpcTargets {
		out = append(out, a)
	}
	return out
}

// read adapts a typed reader; a request of another type (or none yet) yields only the type the
// reader gives for an empty request.
func read[R proto.Message](f func(R) Target) TargetFunc {
	return func(req any) Target {
		r, ok := req.(R)
		if !ok {
			var zero R
			t := f(zero)
			return Target{Type: t.Type}
		}
		return f(r)
	}
}

func fixed(recordType string) TargetFunc { return func(any) Target { return Target{Type: recordType} } }

type threadRequest interface{ GetThreadId() string }

func threadOf[R threadRequest](req any) Target {
	if r, ok := req.(R); ok {
		return Target{Type: "Thread", ID: r.GetThreadId()}
	}
	return Target{Type: "Thread"}
}

type attachmentRequest interface{ GetAttachmentId() string }

func attachmentOf[R attachmentRequest](req any) Target {
	if r, ok := req.(R); ok {
		return Target{Type: "Attachment", ID: r.GetAttachmentId()}
	}
	return Target{Type: "Attachment"}
}
