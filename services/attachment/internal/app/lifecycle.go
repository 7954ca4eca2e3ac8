package app

import (
	"context"
	"log/slog"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
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
	err := pg.WithTx(ctx, s.Pool, func(tx pgx.Tx) error {
		var err error
		a, err = pgstore.Get(ctx, tx, id, true)
		if err != nil {
			return err
		}
		if a.UploaderSubject != p.Subject || a.State == domain.StateUploading {
			return domain.ErrAttachmentNotFound
		}
		if a.State == domain.StateDeleted {
			return nil
		}
		if a.Bound() {
			return usererr.New(usererr.FailedPrecondition, "ATTACHMENT_BOUND", "the attachment is bound to a message; it leaves with the message")
		}
		if err := pgstore.MarkDeleted(ctx, tx, a.ID, s.now()); err != nil {
			return err
		}
		return s.writeAudit(ctx, tx, s.record(ctx, p, eventsv1.Action_ACTION_DELETE, a, Access{}))
	})
	if err != nil {
		if k, _ := usererr.KindOf(err); k == usererr.NotFound && a != nil && a.UploaderSubject != p.Subject {
			s.deny(ctx, p, a, Access{}, "not_uploader")
		}
		return s.dbFail(err)
	}
	if err := s.Store.Remove(ctx, a.ObjectName); err != nil {
		s.Logger.WarnContext(ctx, "deleted attachment's object not removed; clean-up will retry", slog.String("attachment_id", a.ID), slog.String("error", err.Error()))
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
	err := pg.WithTx(ctx, s.Pool, func(tx pgx.Tx) error {
		var err error
		a, err = pgstore.Get(ctx, tx, req.AttachmentID, true)
		if err != nil {
			return err
		}
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
		n, err := pgstore.CountForMessage(ctx, tx, req.MessageID)
		if err != nil {
			return err
		}
		if n >= s.Limits.MaxPerMessage {
			return usererr.New(usererr.ResourceExhausted, "TOO_MANY_ATTACHMENTS", "the message already has the maximum number of attachments")
		}
		now := s.now()
		if err := pgstore.Bind(ctx, tx, a.ID, req.ThreadID, req.MessageID, "", "", now); err != nil {
			return err
		}
		a.ThreadID, a.MessageID, a.BindTime = req.ThreadID, req.MessageID, now
		rec := s.record(ctx, p, eventsv1.Action_ACTION_UPDATE, a, Access{})
		rec.ReasonCode = "bound_to_message"
		return s.writeAudit(ctx, tx, rec)
	})
	if err != nil {
		return nil, s.dbFail(err)
	}
	return a, nil
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
	rows, err := pgstore.ListByThreads(ctx, s.Pool, threadIDs)
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
		if err := s.Store.Remove(ctx, a.ObjectName); err != nil {
			return res, err
		}
		err := pg.WithTx(ctx, s.Pool, func(tx pgx.Tx) error {
			if err := pgstore.Delete(ctx, tx, a.ID); err != nil {
				return err
			}
			rec := s.record(ctx, p, eventsv1.Action_ACTION_PURGE, a, Access{})
			rec.ReasonCode = reason
			return s.writeAudit(ctx, tx, rec)
		})
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
