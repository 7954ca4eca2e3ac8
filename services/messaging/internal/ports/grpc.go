// Package ports is the messaging service's gRPC edge: it decodes requests, takes the verified
// principal from the context (the guard chain has authenticated the caller and checked the rpc
// against the policies), calls the use cases with domain values and encodes their answers. It
// also holds the inbox feed (inboxfeed.go), the JetStream consumer that turns the service's own
// thread and message events into the changes WatchInbox streams.
// Errors go back as the use cases return them: a usererr refusal carries its own gRPC status
// (code, PHI-free message, reason), and the server's error interceptor masks anything else.
package ports

import (
	"context"
	"strconv"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/app"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// Handler implements messagingv1.MessagingServiceServer.
type Handler struct {
	messagingv1.UnimplementedMessagingServiceServer
	svc *app.Service
}

// NewHandler returns the gRPC handler over svc.
func NewHandler(svc *app.Service) *Handler { return &Handler{svc: svc} }

// principal returns the caller verified by the guard chain.
func principal(ctx context.Context) (*auth.Principal, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil, auth.ErrUnauthenticated
	}
	return p, nil
}

// principal is the caller, recorded in the directory if this is their first contact.
func (h *Handler) principal(ctx context.Context) (*auth.Principal, error) {
	p, err := principal(ctx)
	if err == nil {
		h.svc.FirstContact(ctx, p)
	}
	return p, err
}

// participant is who acted, with their display name from names when it holds one.
func participant(names map[string]string, subject string, role commonv1.Role, onBehalfOf string) *messagingv1.Participant {
	return &messagingv1.Participant{Subject: subject, Role: role, OnBehalfOfPatientId: onBehalfOf, DisplayName: names[subject]}
}

func threadProto(v app.ThreadView, names map[string]string) *messagingv1.Thread {
	t := v.Thread
	out := &messagingv1.Thread{
		ThreadId: t.ID, PoolId: t.PoolID, PatientId: t.PatientID, Category: t.Category, Sensitivity: t.Sensitivity,
		Status: messagingv1.ThreadStatus(t.Status), Subject: v.Subject,
		CreatedBy:       participant(names, t.CreatedBySubject, t.CreatedByRole, t.CreatedOnBehalfOf),
		AssigneeSubject: t.AssigneeSubject,
		CreateTime:      timestamppb.New(t.CreatedAt), UpdateTime: timestamppb.New(t.UpdatedAt),
		LastMessageTime: timestamppb.New(t.LastMessageAt),
		MessageCount:    t.MessageCount, UnreadCount: v.Viewer.Unread, Archived: !v.Viewer.ArchivedAt.IsZero(),
		LegalHold: t.Held(),
	}
	if !t.ClosedAt.IsZero() {
		out.CloseTime = timestamppb.New(t.ClosedAt)
	}
	return out
}

func summaryProto(v app.ThreadView) *messagingv1.ThreadSummary {
	t := v.Thread
	return &messagingv1.ThreadSummary{
		ThreadId: t.ID, PoolId: t.PoolID, PatientId: t.PatientID, Category: t.Category, Sensitivity: t.Sensitivity,
		Status: messagingv1.ThreadStatus(t.Status), Subject: v.Subject, AssigneeSubject: t.AssigneeSubject,
		LastMessageTime: timestamppb.New(t.LastMessageAt), LastSenderRole: t.LastSenderRole,
		MessageCount: t.MessageCount, UnreadCount: v.Viewer.Unread, HasAttachments: t.HasAttachments,
		Archived: !v.Viewer.ArchivedAt.IsZero(),
	}
}

func messageProto(v *app.MessageView, names map[string]string) *messagingv1.Message {
	if v == nil {
		return nil
	}
	m := v.Message
	out := &messagingv1.Message{
		MessageId: m.ID, ThreadId: m.ThreadID,
		Sender:        participant(names, m.SenderSubject, m.SenderRole, m.OnBehalfOf),
		Body:          v.Body,
		AttachmentIds: m.AttachmentIDs, CreateTime: timestamppb.New(m.CreatedAt),
		CorrectsMessageId: m.CorrectsMessageID, AutoReply: m.AutoReply, Read: v.Read,
	}
	for _, r := range v.Receipts {
		out.Receipts = append(out.Receipts, &messagingv1.ReadReceipt{
			Reader:   participant(names, r.Subject, r.Role, r.OnBehalfOf),
			ReadTime: timestamppb.New(r.At),
		})
	}
	if m.Retracted() {
		out.Body = ""
		out.Retraction = &messagingv1.Retraction{
			RetractTime:         timestamppb.New(m.RetractedAt),
			RetractedBy:         participant(names, m.RetractedBySubject, m.RetractedByRole, ""),
			ReasonCode:          m.RetractReasonCode,
			CorrectionMessageId: m.CorrectionMessageID,
		}
	}
	return out
}

// CreateThread implements messagingv1.MessagingServiceServer.
func (h *Handler) CreateThread(ctx context.Context, req *messagingv1.CreateThreadRequest) (*messagingv1.CreateThreadResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	res, err := h.svc.CreateThread(ctx, p, app.CreateThreadCmd{
		PoolID: req.GetPoolId(), Category: req.GetCategory(), Sensitivity: req.GetSensitivity(),
		Subject: req.GetSubject(), Body: req.GetBody(), AttachmentIDs: req.GetAttachmentIds(),
		PatientID: req.GetPatientId(), ClientRequestID: req.GetClientRequestId(),
	})
	if err != nil {
		return nil, err
	}
	out := &messagingv1.CreateThreadResponse{
		Thread: threadProto(res.Thread, nil), Message: messageProto(&res.Message, nil), AutoReply: messageProto(res.AutoReply, nil),
		EmergencyDisclaimer: res.Settings.EmergencyDisclaimer,
	}
	if res.Settings.Turnaround > 0 {
		out.TurnaroundTime = durationpb.New(res.Settings.Turnaround)
	}
	return out, nil
}

// SendMessage implements messagingv1.MessagingServiceServer.
func (h *Handler) SendMessage(ctx context.Context, req *messagingv1.SendMessageRequest) (*messagingv1.SendMessageResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	m, err := h.svc.SendMessage(ctx, p, app.SendMessageCmd{ThreadID: req.GetThreadId(), Body: req.GetBody(),
		AttachmentIDs: req.GetAttachmentIds(), ClientRequestID: req.GetClientRequestId()})
	if err != nil {
		return nil, err
	}
	return &messagingv1.SendMessageResponse{Message: messageProto(m, nil)}, nil
}

// ListThreads implements messagingv1.MessagingServiceServer.
func (h *Handler) ListThreads(ctx context.Context, req *messagingv1.ListThreadsRequest) (*messagingv1.ListThreadsResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	c := app.ListThreadsCmd{Box: int(req.GetBox()), UnreadOnly: req.GetUnreadOnly(),
		PoolIDs: req.GetPoolIds(), PatientID: req.GetPatientId(), PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken(),
		Categories: req.GetCategories(), Assignee: int(req.GetAssignee()), AssigneeSubject: req.GetAssigneeSubject(),
		IncludeCounts: req.GetIncludeCounts(), Statuses: req.GetStatuses()}
	res, err := h.svc.ListThreads(ctx, p, c)
	if err != nil {
		return nil, err
	}
	out := &messagingv1.ListThreadsResponse{NextPageToken: res.NextPageToken}
	for _, v := range res.Threads {
		out.Threads = append(out.Threads, summaryProto(v))
	}
	if n := res.Counts; n != nil {
		out.Counts = &messagingv1.QueueCounts{Total: n.Total, Unread: n.Unread, Unassigned: n.Unassigned, AssignedToMe: n.AssignedToMe}
	}
	return out, nil
}

// GetMessage implements messagingv1.MessagingServiceServer.
func (h *Handler) GetMessage(ctx context.Context, req *messagingv1.GetMessageRequest) (*messagingv1.GetMessageResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	v, err := h.svc.GetMessage(ctx, p, req.GetThreadId(), req.GetMessageId())
	if err != nil {
		return nil, err
	}
	return &messagingv1.GetMessageResponse{Message: messageProto(v, v.Names)}, nil
}

// GetUnreadCount implements messagingv1.MessagingServiceServer.
func (h *Handler) GetUnreadCount(ctx context.Context, _ *messagingv1.GetUnreadCountRequest) (*messagingv1.GetUnreadCountResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	n, err := h.svc.GetUnreadCount(ctx, p)
	if err != nil {
		return nil, err
	}
	return &messagingv1.GetUnreadCountResponse{UnreadThreads: n.Unread, UnreadMessages: n.UnreadMessages}, nil
}

// GetThread implements messagingv1.MessagingServiceServer.
func (h *Handler) GetThread(ctx context.Context, req *messagingv1.GetThreadRequest) (*messagingv1.GetThreadResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	res, err := h.svc.GetThread(ctx, p, app.GetThreadCmd{ThreadID: req.GetThreadId(), PageSize: int(req.GetPageSize()),
		PageToken: req.GetPageToken(), BreakGlassReason: req.GetBreakGlassReason()})
	if err != nil {
		return nil, err
	}
	out := &messagingv1.GetThreadResponse{Thread: threadProto(res.Thread, res.Names), NextPageToken: res.NextPageToken,
		BreakGlass: res.BreakGlass, EmergencyDisclaimer: res.EmergencyDisclaimer}
	for i := range res.Messages {
		out.Messages = append(out.Messages, messageProto(&res.Messages[i], res.Names))
	}
	return out, nil
}

// MarkRead implements messagingv1.MessagingServiceServer.
func (h *Handler) MarkRead(ctx context.Context, req *messagingv1.MarkReadRequest) (*messagingv1.MarkReadResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	n, err := h.svc.MarkRead(ctx, p, req.GetThreadId(), req.GetUpToMessageId())
	if err != nil {
		return nil, err
	}
	return &messagingv1.MarkReadResponse{UnreadCount: n}, nil
}

// ArchiveThread implements messagingv1.MessagingServiceServer.
func (h *Handler) ArchiveThread(ctx context.Context, req *messagingv1.ArchiveThreadRequest) (*messagingv1.ArchiveThreadResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	at, err := h.svc.SetArchived(ctx, p, req.GetThreadId(), true)
	if err != nil {
		return nil, err
	}
	return &messagingv1.ArchiveThreadResponse{ArchiveTime: timestamppb.New(at)}, nil
}

// UnarchiveThread implements messagingv1.MessagingServiceServer.
func (h *Handler) UnarchiveThread(ctx context.Context, req *messagingv1.UnarchiveThreadRequest) (*messagingv1.UnarchiveThreadResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := h.svc.SetArchived(ctx, p, req.GetThreadId(), false); err != nil {
		return nil, err
	}
	return &messagingv1.UnarchiveThreadResponse{}, nil
}

func (h *Handler) triage(ctx context.Context, c app.TriageCmd) (*messagingv1.Thread, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	t, err := h.svc.Triage(ctx, p, c)
	if err != nil {
		return nil, err
	}
	return threadProto(app.ThreadView{Thread: t}, nil), nil
}

// ClaimThread implements messagingv1.MessagingServiceServer.
func (h *Handler) ClaimThread(ctx context.Context, req *messagingv1.ClaimThreadRequest) (*messagingv1.ClaimThreadResponse, error) {
	t, err := h.triage(ctx, app.TriageCmd{Kind: app.Claim, ThreadID: req.GetThreadId()})
	if err != nil {
		return nil, err
	}
	return &messagingv1.ClaimThreadResponse{Thread: t}, nil
}

// AssignThread implements messagingv1.MessagingServiceServer.
func (h *Handler) AssignThread(ctx context.Context, req *messagingv1.AssignThreadRequest) (*messagingv1.AssignThreadResponse, error) {
	t, err := h.triage(ctx, app.TriageCmd{Kind: app.Assign, ThreadID: req.GetThreadId(), Assignee: req.GetAssigneeSubject()})
	if err != nil {
		return nil, err
	}
	return &messagingv1.AssignThreadResponse{Thread: t}, nil
}

// TransferThread implements messagingv1.MessagingServiceServer.
func (h *Handler) TransferThread(ctx context.Context, req *messagingv1.TransferThreadRequest) (*messagingv1.TransferThreadResponse, error) {
	t, err := h.triage(ctx, app.TriageCmd{Kind: app.Transfer, ThreadID: req.GetThreadId(), ToPoolID: req.GetToPoolId(),
		ReasonCode: req.GetReasonCode(), Note: req.GetReason()})
	if err != nil {
		return nil, err
	}
	return &messagingv1.TransferThreadResponse{Thread: t}, nil
}

// CloseThread implements messagingv1.MessagingServiceServer.
func (h *Handler) CloseThread(ctx context.Context, req *messagingv1.CloseThreadRequest) (*messagingv1.CloseThreadResponse, error) {
	t, err := h.triage(ctx, app.TriageCmd{Kind: app.Close, ThreadID: req.GetThreadId(), ReasonCode: req.GetReasonCode()})
	if err != nil {
		return nil, err
	}
	return &messagingv1.CloseThreadResponse{Thread: t}, nil
}

// ReopenThread implements messagingv1.MessagingServiceServer.
func (h *Handler) ReopenThread(ctx context.Context, req *messagingv1.ReopenThreadRequest) (*messagingv1.ReopenThreadResponse, error) {
	t, err := h.triage(ctx, app.TriageCmd{Kind: app.Reopen, ThreadID: req.GetThreadId()})
	if err != nil {
		return nil, err
	}
	return &messagingv1.ReopenThreadResponse{Thread: t}, nil
}

// RetractMessage implements messagingv1.MessagingServiceServer.
func (h *Handler) RetractMessage(ctx context.Context, req *messagingv1.RetractMessageRequest) (*messagingv1.RetractMessageResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	res, err := h.svc.RetractMessage(ctx, p, app.RetractCmd{ThreadID: req.GetThreadId(), MessageID: req.GetMessageId(),
		ReasonCode: req.GetReasonCode(), CorrectedBody: req.GetCorrectedBody(), ClientRequestID: req.GetClientRequestId()})
	if err != nil {
		return nil, err
	}
	return &messagingv1.RetractMessageResponse{Retracted: messageProto(&res.Retracted, nil), Correction: messageProto(res.Correction, nil)}, nil
}

// SetLegalHold implements messagingv1.MessagingServiceServer.
func (h *Handler) SetLegalHold(ctx context.Context, req *messagingv1.SetLegalHoldRequest) (*messagingv1.SetLegalHoldResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	res, err := h.svc.SetLegalHold(ctx, p, req.GetThreadId(), req.GetPatientId(), req.GetOn(), req.GetCaseReference())
	if err != nil {
		return nil, err
	}
	return &messagingv1.SetLegalHoldResponse{ThreadsAffected: res.ThreadsAffected, On: res.On,
		CaseReference: res.CaseReference, UpdateTime: timestamppb.New(res.UpdateTime)}, nil
}

func settingsProto(s domain.PoolSettings) *messagingv1.PoolSettings {
	out := &messagingv1.PoolSettings{PoolId: s.PoolID, AutoReplyEnabled: s.AutoReplyEnabled, AutoReplyText: s.AutoReplyText,
		EmergencyDisclaimer: s.EmergencyDisclaimer, UpdatedBySubject: s.UpdatedBySubject}
	if s.Turnaround > 0 {
		out.TurnaroundTime = durationpb.New(s.Turnaround)
	}
	if s.Version > 0 {
		out.UpdateTime = timestamppb.New(s.UpdatedAt)
		out.Etag = itoa(s.Version)
	} else {
		out.Etag = "0"
	}
	return out
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// GetPoolSettings implements messagingv1.MessagingServiceServer.
func (h *Handler) GetPoolSettings(ctx context.Context, req *messagingv1.GetPoolSettingsRequest) (*messagingv1.GetPoolSettingsResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	s, err := h.svc.GetPoolSettings(ctx, p, req.GetPoolId())
	if err != nil {
		return nil, err
	}
	return &messagingv1.GetPoolSettingsResponse{Settings: settingsProto(s)}, nil
}

// UpdatePoolSettings implements messagingv1.MessagingServiceServer.
func (h *Handler) UpdatePoolSettings(ctx context.Context, req *messagingv1.UpdatePoolSettingsRequest) (*messagingv1.UpdatePoolSettingsResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	in := req.GetSettings()
	d := domain.PoolSettings{PoolID: in.GetPoolId(), AutoReplyEnabled: in.GetAutoReplyEnabled(), AutoReplyText: in.GetAutoReplyText(),
		EmergencyDisclaimer: in.GetEmergencyDisclaimer()}
	if in.GetTurnaroundTime() != nil {
		if err := in.GetTurnaroundTime().CheckValid(); err != nil {
			return nil, usererr.New(usererr.InvalidArgument, "FIELD_INVALID", "turnaround_time is not a valid duration")
		}
		d.Turnaround = in.GetTurnaroundTime().AsDuration()
	}
	s, err := h.svc.UpdatePoolSettings(ctx, p, d, in.GetEtag(), req.GetUpdateMask().GetPaths())
	if err != nil {
		return nil, err
	}
	return &messagingv1.UpdatePoolSettingsResponse{Settings: settingsProto(s)}, nil
}

// CheckMessageAccess implements messagingv1.MessagingServiceServer.
func (h *Handler) CheckMessageAccess(ctx context.Context, req *messagingv1.CheckMessageAccessRequest) (*messagingv1.CheckMessageAccessResponse, error) {
	caller, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	if caller.Kind != auth.KindService || caller.Service == "" {
		return nil, domain.ErrServiceCallersOnly
	}
	// principal is required by the request rules; the use case still refuses one without a subject.
	user := auth.PrincipalFromProto(req.GetPrincipal(), caller.Service)
	res, err := h.svc.CheckMessageAccess(ctx, caller, app.AccessCheck{User: user, MessageID: req.GetMessageId(),
		ThreadID: req.GetThreadId(), Action: app.AccessAction(req.GetAction()), BreakGlassReason: req.GetBreakGlassReason()})
	if err != nil {
		return nil, err
	}
	return &messagingv1.CheckMessageAccessResponse{Allowed: res.Allowed, ReasonCode: res.ReasonCode, ThreadId: res.ThreadID,
		PoolId: res.PoolID, PatientId: res.PatientID, Sensitivity: res.Sensitivity, BreakGlass: res.BreakGlass}, nil
}

// RunRetentionPurge implements messagingv1.MessagingServiceServer.
func (h *Handler) RunRetentionPurge(ctx context.Context, req *messagingv1.RunRetentionPurgeRequest) (*messagingv1.RunRetentionPurgeResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	c := app.PurgeCmd{DryRun: req.GetDryRun(), Categories: req.GetCategories(), Limit: int(req.GetLimit())}
	if req.GetAsOf() != nil {
		c.AsOf = req.GetAsOf().AsTime()
	}
	res, err := h.svc.RunRetentionPurge(ctx, p, c)
	if err != nil {
		return nil, err
	}
	out := &messagingv1.RunRetentionPurgeResponse{DryRun: res.DryRun, Total: countsProto(res.Total), Truncated: res.Truncated,
		StartTime: timestamppb.New(res.Start), FinishTime: timestamppb.New(res.Finish)}
	out.Total.Category = commonv1.ThreadCategory_THREAD_CATEGORY_UNSPECIFIED
	for _, c := range res.ByCategory {
		out.ByCategory = append(out.ByCategory, countsProto(c))
	}
	return out, nil
}

func countsProto(c app.PurgeCounts) *messagingv1.RetentionCounts {
	return &messagingv1.RetentionCounts{Category: c.Category, ThreadsEligible: c.Eligible, ThreadsPurged: c.Purged,
		MessagesPurged: c.Messages, AttachmentsPurged: c.Attachments, ThreadsSkippedLegalHold: c.SkippedLegalHold}
}
