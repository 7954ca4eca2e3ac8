package app

import (
	"context"
	"errors"
	"log/slog"

	"github.com/google/uuid"

	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

var uuidParse = uuid.Parse

// DeleteAttachment deletes the caller's own draft. The row's key and sealed name are destroyed
// first (crypto-shredding: the ciphertext is unreadable from then on), then the object is
// removed; an object that cannot be removed now is removed by the clean-up job.
func (s *Service) DeleteAttachment(ctx context.Context, p *auth.Principal, id string) error {
	if err := checkUUID(id); err != nil {
		return err
	}
	var a *domain.Attachment
	err := s.attachments.UpdateAttachment(ctx, id, func(cur *domain.Attachment) (domain.Effects, error) {
		a = cur
		if a.UploaderSubject != p.Subject || a.State == domain.StateUploading {
			return domain.Effects{}, domain.ErrAttachmentNotFound
		}
		if a.State == domain.StateDeleted {
			return domain.Effects{}, nil
		}
		if a.Bound() {
			return domain.Effects{}, usererr.New(usererr.FailedPrecondition, "ATTACHMENT_BOUND", "the attachment is bound to a message; it leaves with the message")
		}
		row, err := s.auditRow(ctx, p, eventsv1.Action_ACTION_DELETE, a, domain.Access{})
		if err != nil {
			return domain.Effects{}, err
		}
		a.MarkDeleted(s.now())
		return domain.Effects{Changed: true, Rows: []outbox.Event{row}}, nil
	})
	if err != nil {
		if errors.Is(err, usererr.ErrNotFound) && a != nil && a.UploaderSubject != p.Subject {
			s.deny(ctx, p, a, domain.Access{}, "not_uploader")
		}
		return s.dbFail(err)
	}
	if err := s.objects.Remove(ctx, a.ObjectName); err != nil {
		s.logger.WarnContext(ctx, "deleted attachment's object not removed; clean-up will retry", slog.String("attachment_id", a.ID), slog.String("error", err.Error()))
	}
	return nil
}

// BindRequest binds an attachment to a message.
type BindRequest struct {
	AttachmentID, ThreadID, MessageID, UploaderSubject string
}

// BindAttachment binds a clean upload to a message; called by the messaging service.
// Idempotent for the same message.
func (s *Service) BindAttachment(ctx context.Context, p *auth.Principal, req BindRequest) (*domain.Attachment, error) {
	if p.Kind != auth.KindService || p.Service != "messaging" {
		return nil, usererr.New(usererr.PermissionDenied, "MESSAGING_ONLY", "only the messaging service binds attachments")
	}
	if err := checkUUID(req.AttachmentID); err != nil {
		return nil, err
	}
	for _, f := range []struct{ name, v string }{{"thread_id", req.ThreadID}, {"message_id", req.MessageID}, {"uploader_subject", req.UploaderSubject}} {
		if err := checkID(f.name, f.v, true); err != nil {
			return nil, err
		}
	}
	var a *domain.Attachment
	err := s.attachments.BindAttachment(ctx, req.AttachmentID, req.MessageID, func(cur *domain.Attachment, bound int) (domain.Effects, error) {
		a = cur
		if err := s.checkBind(a, req, bound); err != nil || a.Bound() {
			return domain.Effects{}, err // a repeated binding is done already
		}
		a.BindTo(req.ThreadID, req.MessageID, s.now())
		row, err := s.auditRow(ctx, p, eventsv1.Action_ACTION_UPDATE, a, domain.Access{}, auditlog.Reason("bound_to_message"))
		if err != nil {
			return domain.Effects{}, err
		}
		return domain.Effects{Changed: true, Rows: []outbox.Event{row}}, nil
	})
	if err != nil {
		return nil, s.dbFail(err)
	}
	return a, nil
}

// checkBind refuses a binding of a the rules forbid; nil for an allowed one, and for a
// repetition of the binding a already has. bound is how many attachments the message has.
func (s *Service) checkBind(a *domain.Attachment, req BindRequest, bound int) error {
	if !a.State.Visible() || a.UploaderSubject != req.UploaderSubject {
		return domain.ErrAttachmentNotFound
	}
	if a.Bound() {
		if a.MessageID == req.MessageID && a.ThreadID == req.ThreadID {
			return nil
		}
		return usererr.New(usererr.FailedPrecondition, "ATTACHMENT_BOUND_ELSEWHERE", "the attachment is bound to another message")
	}
	if a.AADThreadID != "" && a.AADThreadID != req.ThreadID {
		return usererr.New(usererr.FailedPrecondition, "ATTACHMENT_FOR_ANOTHER_THREAD", "the attachment was uploaded for another thread")
	}
	switch a.State {
	case domain.StatePending:
		return usererr.New(usererr.FailedPrecondition, "SCAN_PENDING", "the attachment's malware scan has not finished")
	case domain.StateInfected, domain.StateFailed:
		return usererr.New(usererr.FailedPrecondition, "SCAN_FAILED", "the attachment failed its malware scan")
	}
	if bound >= s.cfg.Limits.MaxPerMessage {
		return usererr.New(usererr.ResourceExhausted, "TOO_MANY_ATTACHMENTS", "the message already has the maximum number of attachments")
	}
	return nil
}

// PurgeResult counts a purge.
type PurgeResult struct {
	Attachments int64
	Bytes       int64
}

// PurgeAttachments deletes every attachment of the threads: object first, then the row with
// its wrapped key (crypto-shredding), each with a PURGE audit record. Idempotent; a failure
// leaves the rest for the next run.
func (s *Service) PurgeAttachments(ctx context.Context, p *auth.Principal, threadIDs []string, reason string, dryRun bool) (PurgeResult, error) {
	if p.Kind != auth.KindService || p.Service != "messaging" {
		return PurgeResult{}, usererr.New(usererr.PermissionDenied, "MESSAGING_ONLY", "only the messaging service purges attachments")
	}
	if len(threadIDs) == 0 || len(threadIDs) > 1000 {
		return PurgeResult{}, usererr.New(usererr.InvalidArgument, "INVALID_THREAD_IDS", "thread_ids must hold 1 to 1,000 ids")
	}
	for _, id := range threadIDs {
		if err := checkID("thread_ids", id, true); err != nil {
			return PurgeResult{}, err
		}
	}
	reason = reasonCode(reason, "retention")
	rows, err := s.attachments.AttachmentsOfThreads(ctx, threadIDs)
	if err != nil {
		return PurgeResult{}, s.dbFail(err)
	}
	var res PurgeResult
	for _, a := range rows {
		counted := a.State.Visible()
		if dryRun {
			if counted {
				res.Attachments++
				res.Bytes += a.SizeBytes
			}
			continue
		}
		if err := s.objects.Remove(ctx, a.ObjectName); err != nil {
			return res, err
		}
		row, err := s.auditRow(ctx, p, eventsv1.Action_ACTION_PURGE, a, domain.Access{}, auditlog.Reason(reason))
		if err == nil {
			err = s.attachments.DeleteAttachment(ctx, a.ID, []outbox.Event{row})
		}
		if err != nil {
			return res, s.dbFail(err)
		}
		if counted {
			res.Attachments++
			res.Bytes += a.SizeBytes
		}
	}
	return res, nil
}
