package app

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/crypto"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/messaging/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// ThreadView is a thread as one viewer sees it. Subject is empty unless the use case decrypted
// it (reads only).
type ThreadView struct {
	Thread  *domain.Thread
	Subject string
	Viewer  pgstore.Viewer
}

// MessageView is a message as one viewer sees it. Body is empty for retracted messages.
type MessageView struct {
	Message *domain.Message
	Body    string
	Read    bool
}

// CreateThreadCmd starts a thread.
type CreateThreadCmd struct {
	PoolID          string
	Category        commonv1.ThreadCategory
	Sensitivity     commonv1.Sensitivity
	Subject, Body   string
	AttachmentIDs   []string
	PatientID       string
	ClientRequestID string
}

// CreateThreadResult is the new thread, its first message and the pool's auto-reply.
type CreateThreadResult struct {
	Thread    ThreadView
	Message   MessageView
	AutoReply *MessageView
	Settings  domain.PoolSettings
}

// CreateThread starts a thread to a care pool with its first message.
func (s *Service) CreateThread(ctx context.Context, p *auth.Principal, c CreateThreadCmd) (*CreateThreadResult, error) {
	if err := domain.CheckPoolID("pool_id", c.PoolID); err != nil {
		return nil, err
	}
	if !domain.ValidCategory(c.Category) {
		return nil, domain.Invalid("category is required")
	}
	if !domain.ValidSensitivity(c.Sensitivity) {
		return nil, domain.Invalid("sensitivity is required")
	}
	if err := domain.CheckText("subject", c.Subject, domain.MaxSubjectChars, true); err != nil {
		return nil, err
	}
	if err := domain.CheckText("body", c.Body, domain.MaxBodyChars, true); err != nil {
		return nil, err
	}
	if err := domain.CheckAttachments(c.AttachmentIDs); err != nil {
		return nil, err
	}
	crid, err := domain.CheckRequestID(c.ClientRequestID)
	if err != nil {
		return nil, err
	}
	patientID := c.PatientID
	if patientID == "" {
		patientID = p.PatientID
	}
	if patientID == "" {
		return nil, domain.Invalid("patient_id is required when writing for a patient")
	}
	fp := fingerprint("create_thread", c.PoolID, c.Category.String(), c.Sensitivity.String(), c.Subject, c.Body, strings.Join(c.AttachmentIDs, ","), patientID)
	if res, err := s.replayCreate(ctx, p, crid, fp); res != nil || err != nil {
		return res, err
	}

	now := s.Now()
	t := &domain.Thread{
		ID: derivedID("thread", p.Subject, crid), PoolID: c.PoolID, PatientID: patientID,
		Category: c.Category, Sensitivity: c.Sensitivity, Status: domain.StatusOpen,
		CreatedBySubject: p.Subject, CreatedAt: now, UpdatedAt: now, LastMessageAt: now,
	}
	if _, err := s.authorize(ctx, p, actCreateThread, threadResource(t), policy.Context{}, nil); err != nil {
		return nil, err
	}
	a := actorFor(p, t.PatientID, t.PoolID)
	t.CreatedByRole, t.CreatedOnBehalfOf = a.Role, a.OnBehalfOf

	dek, err := s.Keys.NewDEK(ctx, s.cfg.KeyName)
	if err != nil {
		return nil, keyError(err)
	}
	sl, err := crypto.NewRecordSealer(dek.Plaintext, t.ID)
	clear(dek.Plaintext)
	if err != nil {
		return nil, err
	}
	t.WrappedDEK = dek.Wrapped
	if t.SubjectSealed, err = sl.SealRecord([]byte(c.Subject), crypto.MessageFieldAAD(t.ID, "", fieldSubject)); err != nil {
		return nil, err
	}
	m, err := s.newMessage(ctx, sl, t, a, c.Body, c.AttachmentIDs, crid, fp, "")
	if err != nil {
		return nil, err
	}
	settings, err := pgstore.PoolSettings(ctx, s.Pool, t.PoolID)
	if err != nil {
		return nil, dbError("load pool settings", err)
	}
	var auto *domain.Message
	if domain.PatientSide(a.Role) && settings.AutoReplyEnabled {
		if auto, err = s.autoReply(sl, t, settings); err != nil {
			return nil, err
		}
	}

	err = pg.WithTx(ctx, s.Pool, func(tx pgx.Tx) error {
		if err := pgstore.InsertThread(ctx, tx, t); err != nil {
			return err
		}
		b := s.newBatch(ctx)
		tc := &eventsv1.ThreadCreated{ThreadId: t.ID, PoolId: t.PoolID, PatientId: t.PatientID, Category: t.Category,
			Sensitivity: t.Sensitivity, CreatedBySubject: p.Subject, CreatedByRole: a.Role, FirstMessageId: m.ID}
		b.event("thread.created."+t.PoolID, tc, &tc.Meta)
		b.audit(s.threadRecord(ctx, a, eventsv1.Action_ACTION_CREATE, t))
		// The auto-reply answers only a thread's first patient-side message, sent or not.
		if err := s.appendMessage(ctx, tx, b, t, m, domain.PatientSide(a.Role), true); err != nil {
			return err
		}
		if auto != nil {
			if err := s.appendMessage(ctx, tx, b, t, auto, false, false); err != nil {
				return err
			}
		}
		return b.flush(tx)
	})
	if pgstore.IsRequestConflict(err) {
		// A concurrent retry won: answer as it did.
		if res, rerr := s.replayCreate(ctx, p, crid, fp); res != nil || rerr != nil {
			return res, rerr
		}
	}
	if err != nil {
		return nil, dbError("create thread", err)
	}
	t.MessageCount, t.LastSenderRole = m.Seq, a.Role
	res := &CreateThreadResult{Thread: ThreadView{Thread: t, Subject: c.Subject}, Message: MessageView{Message: m, Body: c.Body, Read: true}, Settings: settings}
	if auto != nil {
		t.MessageCount = auto.Seq
		res.AutoReply = &MessageView{Message: auto, Body: settings.AutoReplyBody()}
	}
	return res, nil
}

// replayCreate answers a retried CreateThread from what the first attempt stored: nil, nil
// when crid is unused.
func (s *Service) replayCreate(ctx context.Context, p *auth.Principal, crid string, fp []byte) (*CreateThreadResult, error) {
	m, t, sl, err := s.replayLookup(ctx, p, crid, fp)
	if m == nil || err != nil {
		return nil, err
	}
	if m.Seq != 1 {
		return nil, domain.Exists("client_request_id was already used for a different request")
	}
	res := &CreateThreadResult{Thread: ThreadView{Thread: t}}
	if res.Thread.Subject, err = open(sl, t.SubjectSealed, crypto.MessageFieldAAD(t.ID, "", fieldSubject)); err != nil {
		return nil, err
	}
	body, err := open(sl, m.BodySealed, crypto.MessageFieldAAD(t.ID, m.ID, fieldBody))
	if err != nil {
		return nil, err
	}
	res.Message = MessageView{Message: m, Body: body, Read: true}
	if res.Settings, err = pgstore.PoolSettings(ctx, s.Pool, t.PoolID); err != nil {
		return nil, dbError("load pool settings", err)
	}
	if next, err := pgstore.Messages(ctx, s.Pool, t.ID, 1, 1); err == nil && len(next) == 1 && next[0].AutoReply {
		body, err := open(sl, next[0].BodySealed, crypto.MessageFieldAAD(t.ID, next[0].ID, fieldBody))
		if err != nil {
			return nil, err
		}
		res.AutoReply = &MessageView{Message: next[0], Body: body}
	}
	return res, nil
}

// replayLookup finds the message a client request id created and checks that the retry is
// the same request (sealed fingerprint). nil when crid is unused.
func (s *Service) replayLookup(ctx context.Context, p *auth.Principal, crid string, fp []byte) (*domain.Message, *domain.Thread, *crypto.RecordSealer, error) {
	m, retracted, err := pgstore.MessageByRequest(ctx, s.Pool, p.Subject, crid)
	if errors.Is(err, pgstore.ErrNoRows) {
		return nil, nil, nil, nil
	}
	if err != nil {
		return nil, nil, nil, dbError("look up request", err)
	}
	if retracted || m.ClientRequestID != crid || len(m.RequestFPSealed) == 0 {
		return nil, nil, nil, domain.Exists("client_request_id was already used for a different request")
	}
	t, err := s.loadThread(ctx, m.ThreadID)
	if err != nil {
		return nil, nil, nil, err
	}
	sl, err := s.sealer(ctx, t)
	if err != nil {
		return nil, nil, nil, err
	}
	stored, err := sl.OpenRecord(m.RequestFPSealed, crypto.MessageFieldAAD(t.ID, m.ID, fieldFingerprint))
	if err != nil {
		return nil, nil, nil, &domain.Error{Kind: domain.KindDataLoss, Msg: "stored request failed authentication", Err: err}
	}
	if subtle.ConstantTimeCompare(stored, fp) != 1 {
		return nil, nil, nil, domain.Exists("client_request_id was already used for a different request")
	}
	return m, t, sl, nil
}

// newMessage seals a message's body and fingerprint and binds its attachments through the
// attachment service, which must confirm each is the sender's and clean. Ids are derived from
// the request id, so a retry binds to the same message.
func (s *Service) newMessage(ctx context.Context, sl *crypto.RecordSealer, t *domain.Thread, a Actor, body string, attachments []string, crid string, fp []byte, corrects string) (*domain.Message, error) {
	m := &domain.Message{
		ID: derivedID("message", a.Subject, crid), ThreadID: t.ID, SenderSubject: a.Subject, SenderRole: a.Role,
		OnBehalfOf: a.OnBehalfOf, AttachmentIDs: attachments, CreatedAt: s.Now(), ClientRequestID: crid,
		CorrectsMessageID: corrects,
	}
	var err error
	if m.BodySealed, err = sl.SealRecord([]byte(body), crypto.MessageFieldAAD(t.ID, m.ID, fieldBody)); err != nil {
		return nil, err
	}
	if m.RequestFPSealed, err = sl.SealRecord(fp, crypto.MessageFieldAAD(t.ID, m.ID, fieldFingerprint)); err != nil {
		return nil, err
	}
	for _, id := range attachments {
		bound, err := s.Attachments.Bind(ctx, id, t.ID, m.ID, a.Subject)
		if err != nil {
			return nil, err
		}
		if bound.UploaderSubject != "" && bound.UploaderSubject != a.Subject {
			return nil, domain.NotFound("attachment not found")
		}
		if !bound.Clean {
			return nil, domain.Precondition("attachment %s has not passed its malware scan", id)
		}
	}
	return m, nil
}

// autoReply builds the pool's automatic first reply as a system message.
func (s *Service) autoReply(sl *crypto.RecordSealer, t *domain.Thread, settings domain.PoolSettings) (*domain.Message, error) {
	m := &domain.Message{ID: derivedID("auto_reply", "", t.ID), ThreadID: t.ID, SenderRole: commonv1.Role_ROLE_UNSPECIFIED,
		CreatedAt: s.Now(), AutoReply: true}
	var err error
	m.BodySealed, err = sl.SealRecord([]byte(settings.AutoReplyBody()), crypto.MessageFieldAAD(t.ID, m.ID, fieldBody))
	return m, err
}

// appendMessage stores m in t and adds its MessageCreated event (on the pool's subject, which
// care-team apps subscribe to and notification reads as message.created.>) and, for people's
// messages, its audit record.
func (s *Service) appendMessage(ctx context.Context, tx pgx.Tx, b *batch, t *domain.Thread, m *domain.Message, markAutoReplied, first bool) error {
	app, err := pgstore.AppendMessage(ctx, tx, m, markAutoReplied)
	if errors.Is(err, pgstore.ErrThreadClosed) {
		return domain.Precondition("thread is closed")
	}
	if err != nil {
		return err
	}
	var recipients []string
	for _, sub := range append(app.Participants, app.Assignee) {
		if sub != "" && sub != m.SenderSubject && !contains(recipients, sub) {
			recipients = append(recipients, sub)
		}
	}
	ev := &eventsv1.MessageCreated{ThreadId: t.ID, MessageId: m.ID, PoolId: t.PoolID, PatientId: t.PatientID,
		SenderSubject: m.SenderSubject, SenderRole: m.SenderRole, AttachmentCount: int32(len(m.AttachmentIDs)),
		Sensitivity: t.Sensitivity, Category: t.Category, RecipientSubjects: recipients, FirstInThread: first,
		AutoReply: m.AutoReply, CorrectsMessageId: m.CorrectsMessageID}
	b.event("message.created."+t.PoolID, ev, &ev.Meta)
	if !m.AutoReply {
		b.audit(s.messageRecord(ctx, Actor{Subject: m.SenderSubject, Role: m.SenderRole, OnBehalfOf: m.OnBehalfOf}, eventsv1.Action_ACTION_CREATE, t, m.ID))
	}
	return nil
}

// SendMessageCmd replies in a thread.
type SendMessageCmd struct {
	ThreadID        string
	Body            string
	AttachmentIDs   []string
	ClientRequestID string
}

// SendMessage replies in a thread; a retry with the same client request id returns the first
// result.
func (s *Service) SendMessage(ctx context.Context, p *auth.Principal, c SendMessageCmd) (*MessageView, error) {
	threadID, err := domain.CheckID("thread_id", c.ThreadID)
	if err != nil {
		return nil, err
	}
	if err := domain.CheckText("body", c.Body, domain.MaxBodyChars, true); err != nil {
		return nil, err
	}
	if err := domain.CheckAttachments(c.AttachmentIDs); err != nil {
		return nil, err
	}
	crid, err := domain.CheckRequestID(c.ClientRequestID)
	if err != nil {
		return nil, err
	}
	fp := fingerprint("send_message", threadID, c.Body, strings.Join(c.AttachmentIDs, ","))
	if m, t, sl, err := s.replayLookup(ctx, p, crid, fp); m != nil || err != nil {
		if err != nil {
			return nil, err
		}
		if t.ID != threadID {
			return nil, domain.Exists("client_request_id was already used for a different request")
		}
		body, err := open(sl, m.BodySealed, crypto.MessageFieldAAD(t.ID, m.ID, fieldBody))
		return &MessageView{Message: m, Body: body, Read: true}, err
	}

	t, err := s.loadThread(ctx, threadID)
	if err != nil {
		return nil, err
	}
	if _, err := s.authorize(ctx, p, actSendMessage, threadResource(t), policy.Context{}, t); err != nil {
		return nil, err
	}
	if t.Status == domain.StatusClosed {
		return nil, domain.Precondition("thread is closed")
	}
	a := actorFor(p, t.PatientID, t.PoolID)
	sl, err := s.sealer(ctx, t)
	if err != nil {
		return nil, err
	}
	m, err := s.newMessage(ctx, sl, t, a, c.Body, c.AttachmentIDs, crid, fp, "")
	if err != nil {
		return nil, err
	}
	var auto *domain.Message
	firstPatientMessage := domain.PatientSide(a.Role) && !t.AutoReplied
	if firstPatientMessage {
		settings, err := pgstore.PoolSettings(ctx, s.Pool, t.PoolID)
		if err != nil {
			return nil, dbError("load pool settings", err)
		}
		if settings.AutoReplyEnabled {
			if auto, err = s.autoReply(sl, t, settings); err != nil {
				return nil, err
			}
		}
	}
	err = pg.WithTx(ctx, s.Pool, func(tx pgx.Tx) error {
		b := s.newBatch(ctx)
		if err := s.appendMessage(ctx, tx, b, t, m, firstPatientMessage, false); err != nil {
			return err
		}
		if auto != nil {
			if err := s.appendMessage(ctx, tx, b, t, auto, false, false); err != nil {
				return err
			}
		}
		return b.flush(tx)
	})
	if pgstore.IsRequestConflict(err) {
		if m, _, sl, rerr := s.replayLookup(ctx, p, crid, fp); m != nil || rerr != nil {
			if rerr != nil {
				return nil, rerr
			}
			body, err := open(sl, m.BodySealed, crypto.MessageFieldAAD(t.ID, m.ID, fieldBody))
			return &MessageView{Message: m, Body: body, Read: true}, err
		}
	}
	if err != nil {
		return nil, dbError(fmt.Sprintf("send message in thread %s", t.ID), err)
	}
	return &MessageView{Message: m, Body: c.Body, Read: true}, nil
}
