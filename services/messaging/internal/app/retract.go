package app

import (
	"context"
	"errors"

	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/crypto"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// RetractCmd retracts a message, optionally posting a correction.
type RetractCmd struct {
	ThreadID, MessageID string
	ReasonCode          string
	CorrectedBody       string
	ClientRequestID     string
}

// RetractResult is the retracted message as readers see it, and its correction.
type RetractResult struct {
	Retracted  MessageView
	Correction *MessageView
}

// RetractMessage retracts one of the caller's messages within the retract window. The sealed
// original stays in the record (auditors, legal); readers see only the retraction marker.
func (s *Service) RetractMessage(ctx context.Context, p *auth.Principal, c RetractCmd) (*RetractResult, error) {
	threadID, err := domain.CheckID("thread_id", c.ThreadID)
	if err != nil {
		return nil, err
	}
	msgID, err := domain.CheckID("message_id", c.MessageID)
	if err != nil {
		return nil, err
	}
	if err := domain.CheckCode("reason_code", c.ReasonCode, true); err != nil {
		return nil, err
	}
	if !domain.RetractReasons[c.ReasonCode] {
		return nil, usererr.New(usererr.InvalidArgument, "RETRACT_REASON_UNKNOWN", "reason_code must be one of wrong_patient, wrong_content, sent_in_error")
	}
	if err := domain.CheckText("corrected_body", c.CorrectedBody, domain.MaxBodyChars, false); err != nil {
		return nil, err
	}
	crid, err := domain.CheckRequestID(c.ClientRequestID)
	if err != nil {
		return nil, err
	}
	t, err := s.loadThread(ctx, threadID)
	if err != nil {
		return nil, err
	}
	fp := fingerprint("retract", msgID, c.ReasonCode, c.CorrectedBody)
	if res, err := s.replayRetract(ctx, p, t, msgID, crid, c, fp); res != nil || err != nil {
		return res, err
	}
	m, err := s.Messages.Message(ctx, t.ID, msgID)
	if err != nil {
		return nil, storeError("load message", err)
	}
	res := threadResource(t)
	res.Type, res.ID, res.Owner = "Message", m.ID, m.SenderSubject
	if _, err := s.authorize(ctx, p, actRetract, res, policy.Context{}, t); err != nil {
		return nil, err
	}
	switch {
	case m.AutoReply:
		return nil, usererr.New(usererr.FailedPrecondition, "AUTO_REPLY_NOT_RETRACTABLE", "an auto-reply cannot be retracted")
	case m.Retracted():
		return nil, domain.ErrAlreadyRetracted
	case t.Status == domain.StatusClosed:
		return nil, domain.ErrThreadClosed
	case s.Now().Sub(m.CreatedAt) > s.cfg.RetractWindow:
		return nil, usererr.Newf(usererr.FailedPrecondition, "RETRACT_WINDOW_PASSED", "the retraction window of %s has passed", s.cfg.RetractWindow)
	}
	a := actorFor(p, t.PatientID, t.PoolID)
	var corr *domain.Message
	if c.CorrectedBody != "" {
		sl, err := s.sealer(ctx, t)
		if err != nil {
			return nil, err
		}
		if corr, err = s.newMessage(ctx, sl, t, a, c.CorrectedBody, nil, crid, fp, m.ID); err != nil {
			return nil, err
		}
	}
	m.RetractedAt, m.RetractedBySubject, m.RetractedByRole, m.RetractReasonCode, m.RetractRequestID = s.Now(), p.Subject, a.Role, c.ReasonCode, crid
	if corr != nil {
		m.CorrectionMessageID = corr.ID
	}
	b := s.newBatch(ctx)
	ev := &eventsv1.MessageRetracted{ThreadId: t.ID, PoolId: t.PoolID, MessageId: m.ID, RetractedBySubject: p.Subject,
		ReasonCode: c.ReasonCode, CorrectionMessageId: m.CorrectionMessageID}
	b.event("message.retracted."+t.PoolID, ev)
	b.audit(a, eventsv1.Action_ACTION_UPDATE, messageTarget(t, m.ID), auditlog.Reason("retract:"+c.ReasonCode))
	rows, err := b.rows()
	if err == nil {
		var appends domain.Appends
		if corr != nil {
			appends = s.appends(ctx, t, domain.MessageAppend{Message: corr})
		}
		err = s.Messages.RetractMessage(ctx, m, rows, appends)
	}
	if errors.Is(err, domain.ErrRequestConflict) {
		if res, rerr := s.replayRetract(ctx, p, t, msgID, crid, c, fp); res != nil || rerr != nil {
			return res, rerr
		}
	}
	if err != nil {
		return nil, storeError("retract message", err)
	}
	out := &RetractResult{Retracted: MessageView{Message: m, Read: true}}
	if corr != nil {
		out.Correction = &MessageView{Message: corr, Body: c.CorrectedBody, Read: true}
	}
	return out, nil
}

// replayRetract answers a retried RetractMessage; nil, nil when crid is unused.
func (s *Service) replayRetract(ctx context.Context, p *auth.Principal, t *domain.Thread, msgID, crid string, c RetractCmd, fp []byte) (*RetractResult, error) {
	found, retracted, err := s.Messages.MessageByRequest(ctx, p.Subject, crid)
	if err != nil {
		return nil, storeError("look up request", err)
	}
	if found == nil {
		return nil, nil
	}
	different := domain.ErrRequestReused
	out := &RetractResult{}
	switch {
	case retracted:
		// Retract-only: the request holds no PHI, so its fields are compared directly.
		if found.ID != msgID || found.ThreadID != t.ID || found.RetractReasonCode != c.ReasonCode || c.CorrectedBody != "" || found.CorrectionMessageID != "" {
			return nil, different
		}
		out.Retracted = MessageView{Message: found, Read: true}
	case found.CorrectsMessageID == msgID && found.ThreadID == t.ID:
		m, _, sl, err := s.replayLookup(ctx, p, crid, fp)
		if err != nil {
			return nil, err
		}
		body, err := open(sl, m.BodySealed, crypto.MessageFieldAAD(t.ID, m.ID, fieldBody))
		if err != nil {
			return nil, err
		}
		orig, err := s.Messages.Message(ctx, t.ID, msgID)
		if err != nil {
			return nil, storeError("load message", err)
		}
		out.Retracted = MessageView{Message: orig, Read: true}
		out.Correction = &MessageView{Message: m, Body: body, Read: true}
	default:
		return nil, different
	}
	return out, nil
}
