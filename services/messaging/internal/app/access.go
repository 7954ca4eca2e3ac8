package app

import (
	"context"
	"errors"

	"github.com/google/uuid"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/crypto"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// AccessAction is what another service asks about (values match messagingv1.AccessAction).
type AccessAction int

// Access actions.
const (
	AccessRead     AccessAction = 1
	AccessDownload AccessAction = 2
	AccessAttach   AccessAction = 3
)

// accessPolicyAction maps an access question to the attachment service's policy action, so
// the same rules decide here as for the rpc the user called there.
var accessPolicyAction = map[AccessAction]string{
	AccessRead:     "attachment.GetAttachment",
	AccessDownload: "attachment.DownloadAttachment",
	AccessAttach:   "attachment.UploadAttachment",
}

// AccessCheck is a CheckMessageAccess question.
type AccessCheck struct {
	// User is the end user, rebuilt from the relayed principal (auth.PrincipalFromProto).
	User             *auth.Principal
	MessageID        string
	ThreadID         string
	Action           AccessAction
	BreakGlassReason string
}

// AccessAnswer is the decision and the record's facts for the caller's audit record.
type AccessAnswer struct {
	Allowed     bool
	ReasonCode  string
	ThreadID    string
	PoolID      string
	PatientID   string
	Sensitivity commonv1.Sensitivity
	BreakGlass  bool
}

// CheckMessageAccess decides whether an end user may act on a message or thread, for another
// securemsg service. A denial is an answer, and it is audited here; an allowed access is
// audited by the caller when it acts (it knows the attachment).
func (s *Service) CheckMessageAccess(ctx context.Context, caller *auth.Principal, c AccessCheck) (*AccessAnswer, error) {
	if caller == nil || caller.Kind != auth.KindService {
		return nil, domain.ErrServiceCallersOnly
	}
	if c.User == nil || c.User.Subject == "" {
		return nil, errPrincipalRequired
	}
	action, ok := accessPolicyAction[c.Action]
	if !ok {
		return nil, usererr.New(usererr.InvalidArgument, "FIELD_REQUIRED", "action is required")
	}
	if err := domain.CheckText("break_glass_reason", c.BreakGlassReason, domain.MaxBreakGlassChars, false); err != nil {
		return nil, err
	}
	threadID := c.ThreadID
	switch {
	case c.MessageID != "":
		id, err := uuid.Parse(c.MessageID)
		if err != nil {
			return nil, errNoSuchMessage
		}
		m, err := s.Messages.MessageByID(ctx, id.String())
		if errors.Is(err, domain.ErrMessageNotFound) {
			return nil, errNoSuchMessage
		}
		if err != nil {
			return nil, storeError("load message", err)
		}
		threadID = m.ThreadID
	case threadID != "":
	default:
		return nil, usererr.New(usererr.InvalidArgument, "FIELD_REQUIRED", "target is required")
	}
	threadID, err := domain.CheckID("thread_id", threadID)
	if err != nil {
		return nil, err
	}
	t, err := s.loadThread(ctx, threadID)
	if err != nil {
		return nil, err
	}
	ans := &AccessAnswer{ThreadID: t.ID, PoolID: t.PoolID, PatientID: t.PatientID, Sensitivity: t.Sensitivity}
	res := threadResource(t)
	res.Type = "Attachment"
	if c.Action == AccessAttach {
		res.Type = "Thread"
	}
	user := c.User
	d := s.Policy.Evaluate(user, action, res, policy.Context{})
	if !d.Allowed && c.BreakGlassReason != "" && c.Action != AccessAttach {
		d = s.Policy.Evaluate(user, action, res, policy.Context{BreakGlassReason: c.BreakGlassReason})
	}
	switch {
	case !d.Allowed:
		ans.ReasonCode = reasonCode(d)
		if hiddenFrom(user, t) {
			ans.ReasonCode = "adolescent_confidential"
		}
		s.deny(withPrincipal(ctx, caller), user, action, res, d)
		return ans, nil
	case c.Action == AccessAttach && t.Status == domain.StatusClosed:
		ans.ReasonCode = "thread_closed"
		return ans, nil
	}
	ans.Allowed, ans.BreakGlass, ans.ReasonCode = true, d.BreakGlass, reasonCode(d)
	if d.BreakGlass {
		// The reason is kept sealed, as for GetThread; the caller audits the access at HIGH.
		sl, err := s.sealer(ctx, t)
		if err != nil {
			return nil, err
		}
		bg := domain.BreakGlass{ID: uuid.NewString(), Subject: user.Subject, At: s.Now()}
		if bg.ReasonSealed, err = sl.SealRecord([]byte(c.BreakGlassReason), crypto.MessageFieldAAD(t.ID, bg.ID, fieldBreakGlass)); err != nil {
			return nil, err
		}
		if err := s.Inbox.RecordBreakGlass(ctx, t.ID, bg); err != nil {
			return nil, storeError("record break-glass reason", err)
		}
	}
	return ans, nil
}

// Refusals of CheckMessageAccess.
var (
	errPrincipalRequired = usererr.New(usererr.InvalidArgument, "FIELD_REQUIRED", "principal is required")
	// errNoSuchMessage answers for a message id that names no message: unlike
	// domain.ErrMessageNotFound, no thread was named.
	errNoSuchMessage = usererr.New(usererr.NotFound, "MESSAGE_NOT_FOUND", "message not found")
)

func withPrincipal(ctx context.Context, p *auth.Principal) context.Context {
	return auth.WithPrincipal(ctx, p)
}
