package app

import (
	"context"
	"time"

	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/crypto"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// TriageKind names a triage change.
type TriageKind int

// The triage changes.
const (
	Claim TriageKind = iota + 1
	Assign
	Transfer
	Close
	Reopen
)

// TriageCmd is a triage change of one thread.
type TriageCmd struct {
	Kind     TriageKind
	ThreadID string
	// Assignee (Assign).
	Assignee string
	// ToPoolID, ReasonCode and Note (Transfer); ReasonCode also for Close.
	ToPoolID   string
	ReasonCode string
	Note       string
}

var triageActions = map[TriageKind]string{Claim: actClaim, Assign: actAssign, Transfer: actTransfer, Close: actClose, Reopen: actReopen}

// Triage claims, assigns, transfers, closes or reopens a thread and returns it (without its
// subject: state changes do not decrypt).
func (s *Service) Triage(ctx context.Context, p *auth.Principal, c TriageCmd) (*domain.Thread, error) {
	threadID, err := domain.CheckID("thread_id", c.ThreadID)
	if err != nil {
		return nil, err
	}
	action, ok := triageActions[c.Kind]
	if !ok {
		return nil, usererr.New(usererr.InvalidArgument, "TRIAGE_CHANGE_UNKNOWN", "unknown triage change")
	}
	rc := policy.Context{}
	switch c.Kind {
	case Assign:
		if c.Assignee == "" {
			return nil, usererr.New(usererr.InvalidArgument, "FIELD_REQUIRED", "assignee_subject is required")
		}
		if len(c.Assignee) > 200 {
			return nil, usererr.New(usererr.InvalidArgument, "FIELD_TOO_LONG", "assignee_subject is too long")
		}
	case Transfer:
		if err := domain.CheckPoolID("to_pool_id", c.ToPoolID); err != nil {
			return nil, err
		}
		if err := domain.CheckCode("reason_code", c.ReasonCode, true); err != nil {
			return nil, err
		}
		if err := domain.CheckText("reason", c.Note, domain.MaxTransferNoteChars, false); err != nil {
			return nil, err
		}
		rc.TargetPoolID = c.ToPoolID
	case Close:
		if err := domain.CheckCode("reason_code", c.ReasonCode, false); err != nil {
			return nil, err
		}
	}
	t, err := s.loadThread(ctx, threadID)
	if err != nil {
		return nil, err
	}
	if c.Kind == Transfer && c.ToPoolID == t.PoolID {
		return nil, usererr.New(usererr.InvalidArgument, "TRANSFER_TO_SAME_POOL", "to_pool_id is the thread's current pool")
	}
	if c.Kind == Transfer {
		// Pools are no secret: a missing destination is NOT_FOUND before the policy asks
		// whether the caller works in it.
		to, err := s.Pools.Pool(ctx, c.ToPoolID, "")
		if err != nil {
			return nil, storeError("load pool", err)
		}
		if !to.Pool.Active {
			return nil, domain.ErrPoolNotFound
		}
	}
	if _, err := s.authorize(ctx, p, action, threadResource(t), rc, t); err != nil {
		return nil, err
	}
	if c.Kind == Assign {
		// The directory's word, as every service admits callers by it: an assignee who is not
		// a member could not open the thread assigned to them.
		if s.Members.PoolRole(c.Assignee, t.PoolID) == directoryv1.PoolRole_POOL_ROLE_UNSPECIFIED {
			return nil, domain.ErrAssigneeNotMember
		}
	}
	a := actorFor(p, t.PatientID, t.PoolID)
	var note []byte
	if c.Kind == Transfer && c.Note != "" {
		sl, err := s.sealer(ctx, t)
		if err != nil {
			return nil, err
		}
		if note, err = sl.SealRecord([]byte(c.Note), crypto.MessageFieldAAD(t.ID, "", fieldTransferNote)); err != nil {
			return nil, err
		}
	}
	out, err := s.Threads.UpdateThread(ctx, t.ID, func(cur *domain.Thread, _ domain.PoolSettingsReader) (domain.ThreadChange, error) {
		// The thread may have moved between the policy check and the lock; re-check the pool.
		if cur.PoolID != t.PoolID {
			return domain.ThreadChange{}, usererr.New(usererr.Aborted, "THREAD_CHANGED", "the thread changed concurrently; try again")
		}
		now := s.Now()
		ch := domain.Triage{Status: cur.Status, Assignee: cur.AssigneeSubject, PoolID: cur.PoolID, ClosedAt: cur.ClosedAt, UpdatedAt: now}
		b := s.newBatch(ctx)
		code := ""
		switch c.Kind {
		case Claim, Assign:
			assignee := p.Subject
			if c.Kind == Assign {
				assignee = c.Assignee
			}
			if cur.Status == domain.StatusClosed {
				return domain.ThreadChange{}, domain.ErrThreadClosed
			}
			if cur.AssigneeSubject == assignee {
				return domain.ThreadChange{}, nil // already held: a no-op
			}
			if c.Kind == Claim && cur.AssigneeSubject != "" {
				return domain.ThreadChange{}, usererr.New(usererr.FailedPrecondition, "THREAD_ASSIGNED_ELSEWHERE",
					"thread is assigned to someone else; use AssignThread to reassign")
			}
			ch.Status, ch.Assignee = domain.StatusAssigned, assignee
			ev := &eventsv1.ThreadAssigned{ThreadId: cur.ID, PoolId: cur.PoolID, AssigneeSubject: assignee,
				AssignedBySubject: p.Subject, Claimed: c.Kind == Claim, PreviousAssigneeSubject: cur.AssigneeSubject}
			b.event("thread.assigned."+cur.PoolID, ev)
			code = map[TriageKind]string{Claim: "claim", Assign: "assign"}[c.Kind]
		case Transfer:
			if cur.Status == domain.StatusClosed {
				return domain.ThreadChange{}, domain.ErrThreadClosed
			}
			ch.Status, ch.Assignee, ch.PoolID, ch.TransferNoteSealed = domain.StatusOpen, "", c.ToPoolID, note
			ev := &eventsv1.ThreadTransferred{ThreadId: cur.ID, FromPoolId: cur.PoolID, ToPoolId: c.ToPoolID,
				TransferredBySubject: p.Subject, ReasonCode: c.ReasonCode, PatientId: cur.PatientID, Sensitivity: cur.Sensitivity}
			b.event("thread.transferred."+c.ToPoolID, ev)
			code = "transfer"
		case Close:
			if cur.Status == domain.StatusClosed {
				return domain.ThreadChange{}, nil
			}
			ch.Status, ch.ClosedAt = domain.StatusClosed, now
			ev := &eventsv1.ThreadClosed{ThreadId: cur.ID, PoolId: cur.PoolID, ClosedBySubject: p.Subject, ReasonCode: c.ReasonCode}
			b.event("thread.closed."+cur.PoolID, ev)
			code = "close"
		case Reopen:
			if cur.Status != domain.StatusClosed {
				return domain.ThreadChange{}, nil
			}
			ch.Status, ch.Assignee, ch.ClosedAt = domain.StatusOpen, "", time.Time{}
			ev := &eventsv1.ThreadReopened{ThreadId: cur.ID, PoolId: cur.PoolID, ReopenedBySubject: p.Subject, ReopenedByRole: a.Role}
			b.event("thread.reopened."+cur.PoolID, ev)
			code = "reopen"
		}
		if c.ReasonCode != "" {
			code += ":" + c.ReasonCode
		}
		b.audit(a, eventsv1.Action_ACTION_UPDATE, threadTarget(cur), auditlog.Reason(code))
		rows, err := b.rows()
		return domain.ThreadChange{Triage: &ch, Rows: rows}, err
	})
	if err != nil {
		return nil, storeError("triage thread", err)
	}
	return out, nil
}
