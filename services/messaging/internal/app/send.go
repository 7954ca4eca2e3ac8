package app

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/crypto"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// ThreadView is a thread as one viewer sees it. Subject is empty unless the use case decrypted
// it (reads only).
type ThreadView struct {
	Thread  *domain.Thread
	Subject string
	Viewer  domain.Viewer
}

// MessageView is a message as one viewer sees it. Body is empty for retracted messages.
type MessageView struct {
	Message *domain.Message
	Body    string
	Read    bool
	// Receipts are the other readers' receipts the viewer may see, earliest first.
	Receipts []domain.ReadReceipt
	// Names are the display names of participants(), when GetMessage returns the view to a
	// caller who may read the content (GetThread puts a page's names in its result instead).
	Names map[string]string
}

// participants are the subjects the view names: the sender, the readers of its receipts and
// who retracted it.
func (v *MessageView) participants() []string {
	out := []string{v.Message.SenderSubject}
	for _, r := range v.Receipts {
		out = append(out, r.Subject)
	}
	if v.Message.RetractedBySubject != "" {
		out = append(out, v.Message.RetractedBySubject)
	}
	return out
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
		return nil, usererr.New(usererr.InvalidArgument, "FIELD_REQUIRED", "category is required")
	}
	if !domain.ValidSensitivity(c.Sensitivity) {
		return nil, usererr.New(usererr.InvalidArgument, "FIELD_REQUIRED", "sensitivity is required")
	}
	if err := domain.CheckText("subject", c.Subject, domain.MaxSubjectChars, true); err != nil {
		return nil, err
	}
	crid, err := domain.CheckMessage(c.Body, c.AttachmentIDs, c.ClientRequestID)
	if err != nil {
		return nil, err
	}
	patientID := c.PatientID
	if patientID == "" {
		patientID = p.PatientID
	}
	if patientID == "" {
		return nil, usererr.New(usererr.InvalidArgument, "FIELD_REQUIRED", "patient_id is required when writing for a patient")
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
	pool, err := s.Pools.Pool(ctx, t.PoolID, t.PatientID)
	if err != nil {
		return nil, storeError("load pool", err)
	}
	if !pool.Pool.Active {
		return nil, domain.ErrPoolNotFound
	}
	if !pool.MayWrite {
		return nil, domain.ErrPoolClosedToPatient
	}
	settings := pool.Settings

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
	var auto *domain.Message
	if domain.PatientSide(a.Role) && settings.AutoReplyEnabled {
		if auto, err = s.autoReply(sl, t, settings); err != nil {
			return nil, err
		}
	}

	b := s.newBatch(ctx)
	tc := &eventsv1.ThreadCreated{ThreadId: t.ID, PoolId: t.PoolID, PatientId: t.PatientID, Category: t.Category,
		Sensitivity: t.Sensitivity, CreatedBySubject: p.Subject, CreatedByRole: a.Role, FirstMessageId: m.ID}
	b.event("thread.created."+t.PoolID, tc)
	b.audit(a, eventsv1.Action_ACTION_CREATE, threadTarget(t))
	rows, err := b.rows()
	if err == nil {
		// The auto-reply answers only a thread's first patient-side message, sent or not.
		appends := []domain.MessageAppend{{Message: m, MarkAutoReplied: domain.PatientSide(a.Role)}}
		if auto != nil {
			appends = append(appends, domain.MessageAppend{Message: auto})
		}
		err = s.Threads.CreateThread(ctx, t, rows, s.appends(ctx, t, appends...))
	}
	if errors.Is(err, domain.ErrRequestConflict) {
		// A concurrent retry won: answer as it did.
		if res, rerr := s.replayCreate(ctx, p, crid, fp); res != nil || rerr != nil {
			return res, rerr
		}
	}
	if err != nil {
		return nil, storeError("create thread", err)
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
		return nil, domain.ErrRequestReused
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
	if res.Settings, err = s.Settings.PoolSettings(ctx, t.PoolID); err != nil {
		return nil, storeError("load pool settings", err)
	}
	if next, err := s.Messages.Messages(ctx, t.ID, 1, 1); err == nil && len(next) == 1 && next[0].AutoReply {
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
	m, retracted, err := s.Messages.MessageByRequest(ctx, p.Subject, crid)
	if err != nil {
		return nil, nil, nil, storeError("look up request", err)
	}
	if m == nil {
		return nil, nil, nil, nil
	}
	if retracted {
		return nil, nil, nil, domain.ErrRequestReused
	}
	t, err := s.loadThread(ctx, m.ThreadID)
	if err != nil {
		return nil, nil, nil, err
	}
	sl, err := s.checkReplay(ctx, m, t, crid, fp)
	if err != nil {
		return nil, nil, nil, err
	}
	return m, t, sl, nil
}

// checkReplay checks that m, which crid created in thread t, came from the same request as the
// retry (fingerprint fp), and returns the thread's sealer.
func (s *Service) checkReplay(ctx context.Context, m *domain.Message, t *domain.Thread, crid string, fp []byte) (*crypto.RecordSealer, error) {
	if m.ClientRequestID != crid || len(m.RequestFPSealed) == 0 || m.ThreadID != t.ID {
		return nil, domain.ErrRequestReused
	}
	sl, err := s.sealer(ctx, t)
	if err != nil {
		return nil, err
	}
	stored, err := sl.OpenRecord(m.RequestFPSealed, crypto.MessageFieldAAD(t.ID, m.ID, fieldFingerprint))
	if err != nil {
		return nil, errNotAuthentic("stored request", err)
	}
	if subtle.ConstantTimeCompare(stored, fp) != 1 {
		return nil, domain.ErrRequestReused
	}
	return sl, nil
}

// newMessage seals a message's body and fingerprint and binds its attachments through the
// attachment service, which must confirm each is the sender's and clean. Ids are derived from
// the request id, so a retry binds to the same message.
func (s *Service) newMessage(ctx context.Context, sl *crypto.RecordSealer, t *domain.Thread, a auditlog.Actor, body string, attachments []string, crid string, fp []byte, corrects string) (*domain.Message, error) {
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
			return nil, usererr.New(usererr.NotFound, "ATTACHMENT_NOT_FOUND", "attachment not found")
		}
		if !bound.Clean {
			return nil, usererr.Newf(usererr.FailedPrecondition, "ATTACHMENT_NOT_CLEAN", "attachment %s has not passed its malware scan", id)
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

// appends are messages to append to t in the commit of another change, each with its
// MessageCreated event (on the pool's subject, which care-team apps subscribe to and
// notification reads as message.created.>) and, for people's messages, its audit record,
// addressed from the thread as it stood right after the message landed.
func (s *Service) appends(ctx context.Context, t *domain.Thread, msgs ...domain.MessageAppend) domain.Appends {
	return domain.Appends{Messages: msgs, Effects: func(m *domain.Message, after domain.Appended) ([]outbox.Event, error) {
		b := s.newBatch(ctx)
		s.messageCreated(ctx, b, t, m, after.Participants, after.Assignee, m.Seq == 1)
		return b.rows()
	}}
}

// messageCreated adds m's MessageCreated event, addressed to the thread's participants and
// assignee other than the sender, and, for people's messages, its audit record.
func (s *Service) messageCreated(ctx context.Context, b *batch, t *domain.Thread, m *domain.Message, participants []string, assignee string, first bool) {
	var recipients []string
	for _, sub := range append(slices.Clip(participants), assignee) {
		if sub != "" && sub != m.SenderSubject && !contains(recipients, sub) {
			recipients = append(recipients, sub)
		}
	}
	attachments := int32(len(m.AttachmentIDs)) //nolint:gosec // at most domain.MaxAttachments (CheckAttachments)
	ev := &eventsv1.MessageCreated{ThreadId: t.ID, MessageId: m.ID, PoolId: t.PoolID, PatientId: t.PatientID,
		SenderSubject: m.SenderSubject, SenderRole: m.SenderRole, AttachmentCount: attachments,
		Sensitivity: t.Sensitivity, Category: t.Category, RecipientSubjects: recipients, FirstInThread: first,
		AutoReply: m.AutoReply, CorrectsMessageId: m.CorrectsMessageID}
	b.event("message.created."+t.PoolID, ev)
	if !m.AutoReply {
		sender := auditlog.Actor{Subject: m.SenderSubject, Role: m.SenderRole, OnBehalfOf: m.OnBehalfOf}
		b.audit(sender, eventsv1.Action_ACTION_CREATE, messageTarget(t, m.ID))
	}
}

// SendMessageCmd replies in a thread.
type SendMessageCmd struct {
	ThreadID        string
	Body            string
	AttachmentIDs   []string
	ClientRequestID string
}

// optimisticSends bounds the attempts to send without locking the thread; each is authorised
// on the thread as loaded and writes nothing when it changed (assignment, transfer, a new
// participant) before the message landed.
const optimisticSends = 2

// SendMessage replies in a thread; a retry with the same client request id returns the first
// result.
//
// The common case costs two round trips to Postgres: one loads the thread together with any
// earlier result of the request id, and one statement appends the message and writes its event
// and audit record (domain.ThreadRepository.AppendMessageIfUnchanged) on the condition that the
// thread is still as it was authorised. When it changed, the send is authorised again on the new state;
// when it keeps changing, or when the message is the thread's first from the patient's side
// (which the pool's auto-reply answers), it is authorised and written under the thread's row
// lock (sendLocked).
func (s *Service) SendMessage(ctx context.Context, p *auth.Principal, c SendMessageCmd) (*MessageView, error) {
	threadID, err := domain.CheckID("thread_id", c.ThreadID)
	if err != nil {
		return nil, err
	}
	crid, err := domain.CheckMessage(c.Body, c.AttachmentIDs, c.ClientRequestID)
	if err != nil {
		return nil, err
	}
	fp := fingerprint("send_message", threadID, c.Body, strings.Join(c.AttachmentIDs, ","))
	t, used, err := s.Threads.ThreadAndRequest(ctx, threadID, p.Subject, crid)
	if err != nil {
		return nil, storeError("load thread", err)
	}
	if used {
		m, t, sl, err := s.replayLookup(ctx, p, crid, fp)
		if err != nil {
			return nil, err
		}
		if m == nil || t.ID != threadID {
			return nil, domain.ErrRequestReused
		}
		body, err := open(sl, m.BodySealed, crypto.MessageFieldAAD(t.ID, m.ID, fieldBody))
		return &MessageView{Message: m, Body: body, Read: true}, err
	}
	if t == nil {
		return nil, domain.ErrThreadNotFound
	}
	// Optimistic attempts first; a thread that keeps changing (or that owes an auto-reply) is
	// written under its row lock instead.
	for range optimisticSends {
		if domain.PatientSide(actorFor(p, t.PatientID, t.PoolID).Role) && !t.AutoReplied {
			break
		}
		view, err := s.sendUnlocked(ctx, p, t, c, crid, fp)
		if !errors.Is(err, domain.ErrThreadChanged) {
			return view, err
		}
		if t, err = s.loadThread(ctx, threadID); err != nil {
			return nil, err
		}
	}
	return s.sendLocked(ctx, p, threadID, c, crid, fp)
}

// prepareSend authorises a send into t as loaded (or locked) and builds the sealed message.
func (s *Service) prepareSend(ctx context.Context, p *auth.Principal, t *domain.Thread, c SendMessageCmd, crid string, fp []byte) (*domain.Message, *crypto.RecordSealer, error) {
	if _, err := s.authorize(ctx, p, actSendMessage, threadResource(t), policy.Context{}, t); err != nil {
		return nil, nil, err
	}
	if t.Status == domain.StatusClosed {
		return nil, nil, domain.ErrThreadClosed
	}
	sl, err := s.sealer(ctx, t)
	if err != nil {
		return nil, nil, err
	}
	m, err := s.newMessage(ctx, sl, t, actorFor(p, t.PatientID, t.PoolID), c.Body, c.AttachmentIDs, crid, fp, "")
	return m, sl, err
}

// sendUnlocked is one optimistic attempt to send into t as loaded. It returns
// domain.ErrThreadChanged, having written nothing, when t changed in the meantime.
func (s *Service) sendUnlocked(ctx context.Context, p *auth.Principal, t *domain.Thread, c SendMessageCmd, crid string, fp []byte) (*MessageView, error) {
	m, _, err := s.prepareSend(ctx, p, t, c, crid, fp)
	if err != nil {
		return nil, err
	}
	b := s.newBatch(ctx)
	s.messageCreated(ctx, b, t, m, t.Participants, t.AssigneeSubject, false)
	rows, err := b.rows()
	if err != nil {
		return nil, err
	}
	err = s.Threads.AppendMessageIfUnchanged(ctx, t, m, rows)
	if errors.Is(err, domain.ErrThreadChanged) {
		return nil, err
	}
	return s.sent(ctx, p, t, m, c, crid, fp, err)
}

// sendLocked sends with the thread's row locked from authorisation to commit, so the state the
// send is authorised against is the state it lands in. A thread's first patient-side message
// takes this path, as its pool's auto-reply goes in the same transaction.
func (s *Service) sendLocked(ctx context.Context, p *auth.Principal, threadID string, c SendMessageCmd, crid string, fp []byte) (*MessageView, error) {
	var locked *domain.Thread
	var m *domain.Message
	_, err := s.Threads.UpdateThread(ctx, threadID, func(t *domain.Thread, settings domain.PoolSettingsReader) (domain.ThreadChange, error) {
		locked = t
		var sl *crypto.RecordSealer
		var err error
		if m, sl, err = s.prepareSend(ctx, p, t, c, crid, fp); err != nil {
			return domain.ThreadChange{}, err
		}
		firstPatientMessage := domain.PatientSide(m.SenderRole) && !t.AutoReplied
		appends := []domain.MessageAppend{{Message: m, MarkAutoReplied: firstPatientMessage}}
		if firstPatientMessage {
			st, err := settings.PoolSettings(ctx, t.PoolID)
			if err != nil {
				return domain.ThreadChange{}, err
			}
			if st.AutoReplyEnabled {
				auto, err := s.autoReply(sl, t, st)
				if err != nil {
					return domain.ThreadChange{}, err
				}
				appends = append(appends, domain.MessageAppend{Message: auto})
			}
		}
		return domain.ThreadChange{Appends: s.appends(ctx, t, appends...)}, nil
	})
	if locked == nil {
		return nil, storeError("load thread", err)
	}
	return s.sent(ctx, p, locked, m, c, crid, fp, err)
}

// sent answers a send whose write returned err: a concurrent retry of the same request that won
// is answered as it was.
func (s *Service) sent(ctx context.Context, p *auth.Principal, t *domain.Thread, m *domain.Message, c SendMessageCmd, crid string, fp []byte, err error) (*MessageView, error) {
	if errors.Is(err, domain.ErrRequestConflict) {
		if m, _, sl, rerr := s.replayLookup(ctx, p, crid, fp); m != nil || rerr != nil {
			if rerr != nil {
				return nil, rerr
			}
			body, err := open(sl, m.BodySealed, crypto.MessageFieldAAD(t.ID, m.ID, fieldBody))
			return &MessageView{Message: m, Body: body, Read: true}, err
		}
	}
	if err != nil {
		return nil, storeError(fmt.Sprintf("send message in thread %s", t.ID), err)
	}
	return &MessageView{Message: m, Body: c.Body, Read: true}, nil
}
