package policy

import (
	"slices"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	notificationv1 "github.com/securemsg/securemsg/gen/securemsg/notification/v1"
)

// browserMethods is the browser surface: the rpcs the HTTP edge (package httpedge: Connect,
// gRPC-Web, REST) routes; every other method is not found there. It is every rpc a patient,
// proxy, clinician or staff member may call at all — the people a portal frontend signs in —
// and so includes audit's GetAccessReport (a patient's own access report) — and the auditor's
// console: the three read-only audit rpcs an auditor needs to search the log and see whether it
// verifies (QueryAuditEvents, VerifyRange, GetLatestCheckpoint). The log holds ids and codes
// only, never content, and every query is itself audited; the auditor signs in through the same
// identity provider as everyone else, with MFA, which these rpcs require.
//
// Left off on purpose, reached over native gRPC only: the service-to-service rpcs
// (CheckMessageAccess, BindAttachment, PurgeAttachments: their callers present an mTLS service
// identity, which no browser has) and the admin and auditor rpcs (SetLegalHold,
// UpdatePoolSettings, RunRetentionPurge, GetRetentionPolicy, ListLegalHolds, CreatePool, UpdatePool, SetPoolMember, RemovePoolMember,
// ListClientApps, RegisterClientApp, UpdateClientApp, ListPeople, GetPerson, ProvisionPerson,
// SetPersonStatus, ListTemplates, UpdateTemplate, and the bulk and proof audit rpcs:
// ExportAuditEvents, GetInclusionProof, GetConsistencyProof), which securemsgctl and operator tools call; keeping them off the
// public edge keeps them off the internet-facing ingress too. TestBrowserSurfaceMatchesPolicies
// checks the list against the policies' rpc matrix in both directions, so a new rpc a portal
// user may call must be listed here, and a method listed here must be callable by one.
//
// One entry per line, grouped by service, so each rpc's owner adds it with a one-line edit.
var browserMethods = []string{
	messagingv1.MessagingService_CreateThread_FullMethodName,
	messagingv1.MessagingService_SendMessage_FullMethodName,
	messagingv1.MessagingService_ListThreads_FullMethodName,
	messagingv1.MessagingService_GetThread_FullMethodName,
	messagingv1.MessagingService_MarkRead_FullMethodName,
	messagingv1.MessagingService_GetMessage_FullMethodName,
	messagingv1.MessagingService_GetUnreadCount_FullMethodName,
	messagingv1.MessagingService_ArchiveThread_FullMethodName,
	messagingv1.MessagingService_UnarchiveThread_FullMethodName,
	messagingv1.MessagingService_ClaimThread_FullMethodName,
	messagingv1.MessagingService_AssignThread_FullMethodName,
	messagingv1.MessagingService_TransferThread_FullMethodName,
	messagingv1.MessagingService_CloseThread_FullMethodName,
	messagingv1.MessagingService_ReopenThread_FullMethodName,
	messagingv1.MessagingService_RetractMessage_FullMethodName,
	messagingv1.MessagingService_GetPoolSettings_FullMethodName,
	messagingv1.MessagingService_WatchInbox_FullMethodName,
	messagingv1.MessagingService_ListPools_FullMethodName,
	messagingv1.MessagingService_GetPool_FullMethodName,
	messagingv1.MessagingService_ListPoolMembers_FullMethodName,
	messagingv1.MessagingService_ListProxyGrants_FullMethodName,
	messagingv1.MessagingService_GrantProxyAccess_FullMethodName,
	messagingv1.MessagingService_RevokeProxyAccess_FullMethodName,

	attachmentv1.AttachmentService_UploadAttachment_FullMethodName,
	attachmentv1.AttachmentService_DownloadAttachment_FullMethodName,
	attachmentv1.AttachmentService_GetAttachment_FullMethodName,
	attachmentv1.AttachmentService_DeleteAttachment_FullMethodName,
	attachmentv1.AttachmentService_CreateUploadSession_FullMethodName,
	attachmentv1.AttachmentService_AppendUploadChunk_FullMethodName,
	attachmentv1.AttachmentService_GetUploadSession_FullMethodName,
	attachmentv1.AttachmentService_FinishUploadSession_FullMethodName,
	attachmentv1.AttachmentService_CancelUploadSession_FullMethodName,
	attachmentv1.AttachmentService_DownloadAttachmentContent_FullMethodName,

	notificationv1.NotificationService_GetPreferences_FullMethodName,
	notificationv1.NotificationService_UpdatePreferences_FullMethodName,
	notificationv1.NotificationService_ListDeliveries_FullMethodName,

	auditv1.AuditService_GetAccessReport_FullMethodName,
	auditv1.AuditService_QueryAuditEvents_FullMethodName,
	auditv1.AuditService_VerifyRange_FullMethodName,
	auditv1.AuditService_GetLatestCheckpoint_FullMethodName,
}

// browserSurface indexes browserMethods for the per-request check.
var browserSurface = func() map[string]bool {
	m := make(map[string]bool, len(browserMethods))
	for _, method := range browserMethods {
		m[method] = true
	}
	return m
}()

// OnBrowserSurface reports whether the full method ("/securemsg.messaging.v1.MessagingService/
// GetThread") may be called over the HTTP edge.
func OnBrowserSurface(fullMethod string) bool { return browserSurface[fullMethod] }

// BrowserMethods lists the browser surface's full method names, sorted.
func BrowserMethods() []string {
	out := slices.Clone(browserMethods)
	slices.Sort(out)
	return out
}
