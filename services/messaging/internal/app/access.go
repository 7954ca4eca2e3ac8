package app

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/crypto"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/messaging/internal/adapters/pgstore"
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
		return nil, domain.Denied("permission denied: service callers only")
	}
	if c.User == nil || c.User.Subject == "" {
		return nil, domain.Invalid("principal is required")
	}
	action, ok := accessPolicyAction[c.Action]
	if !ok {
		return nil, domain.Invalid("action is required")
	}
	if err := domain.CheckText("break_glass_reason", c.BreakGlassReason, domain.MaxBreakGlassChars, false); err != nil {
		return nil, err
	}
	threadID := c.ThreadID
	switch {
	case c.MessageID != "":
		id, err := uuid.Parse(c.MessageID)
		if err != nil {
			return nil, domain.NotFound("message not found")
		}
		m, err := pgstore.MessageByID(ctx, s.Pool, id.String())
		if errors.Is(err, pgstore.ErrNoRows) {
			return nil, domain.NotFound("message not found")
		}
		if err != nil {
			return nil, dbError("load message", err)
		}
		threadID = m.ThreadID
	case threadID != "":
	default:
		return nil, domain.Invalid("target is required")
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
		id := uuid.NewString()
		sealed, err := sl.SealRecord([]byte(c.BreakGlassReason), crypto.MessageFieldAAD(t.ID, id, fieldBreakGlass))
		if err != nil {
			return nil, err
		}
		if err := pg.WithTx(ctx, s.Pool, func(tx pgx.Tx) error {
			return pgstore.InsertBreakGlass(ctx, tx, id, t.ID, user.Subject, sealed, s.Now())
		}); err != nil {
			return nil, dbError("record break-glass reason", err)
		}
	}
	return ans, nil
}

func withPrincipal(ctx context.Context, p *auth.Principal) context.Context {
	return auth.WithPrincipal(ctx, p)
}
