package app

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

func poolResource(poolID string) policy.Resource {
	return policy.Resource{Type: "Pool", ID: poolID, PoolID: poolID}
}

// GetPoolSettings returns a pool's settings (defaults when never configured).
func (s *Service) GetPoolSettings(ctx context.Context, p *auth.Principal, poolID string) (domain.PoolSettings, error) {
	if err := domain.CheckPoolID("pool_id", poolID); err != nil {
		return domain.PoolSettings{}, err
	}
	if _, err := s.authorize(ctx, p, actGetSettings, poolResource(poolID), policy.Context{}, nil); err != nil {
		return domain.PoolSettings{}, err
	}
	st, err := s.Settings.PoolSettings(ctx, poolID)
	return st, storeError("load pool settings", err)
}

// Settings fields UpdatePoolSettings may change.
var settingsFields = map[string]bool{"auto_reply_enabled": true, "auto_reply_text": true, "turnaround_time": true, "emergency_disclaimer": true}

// UpdatePoolSettings changes the named fields of a pool's settings. etag, when set, must match.
func (s *Service) UpdatePoolSettings(ctx context.Context, p *auth.Principal, in domain.PoolSettings, etag string, mask []string) (domain.PoolSettings, error) {
	if err := domain.CheckPoolID("settings.pool_id", in.PoolID); err != nil {
		return domain.PoolSettings{}, err
	}
	if len(mask) == 0 {
		return domain.PoolSettings{}, usererr.New(usererr.InvalidArgument, "FIELD_REQUIRED", "update_mask is required")
	}
	for _, f := range mask {
		if !settingsFields[f] {
			return domain.PoolSettings{}, usererr.New(usererr.InvalidArgument, "UPDATE_MASK_FIELD_UNKNOWN", "update_mask names an unknown or read-only field")
		}
	}
	if err := domain.CheckPoolSettings(in); err != nil {
		return domain.PoolSettings{}, err
	}
	var want int64 = -1
	if etag != "" {
		v, err := strconv.ParseInt(etag, 10, 64)
		if err != nil {
			return domain.PoolSettings{}, usererr.New(usererr.Aborted, "ETAG_MISMATCH", "etag does not match the stored settings")
		}
		want = v
	}
	if _, err := s.authorize(ctx, p, actUpdateSetting, poolResource(in.PoolID), policy.Context{}, nil); err != nil {
		return domain.PoolSettings{}, err
	}
	out, err := s.Settings.UpdatePoolSettings(ctx, in.PoolID, func(cur domain.PoolSettings) (domain.PoolSettings, []outbox.Event, error) {
		if want >= 0 && cur.Version != want {
			return cur, nil, usererr.New(usererr.Aborted, "ETAG_MISMATCH", "etag does not match the stored settings; re-read and retry")
		}
		next := cur
		for _, f := range mask {
			switch f {
			case "auto_reply_enabled":
				next.AutoReplyEnabled = in.AutoReplyEnabled
			case "auto_reply_text":
				next.AutoReplyText = in.AutoReplyText
			case "turnaround_time":
				next.Turnaround = in.Turnaround
			case "emergency_disclaimer":
				next.EmergencyDisclaimer = in.EmergencyDisclaimer
			}
		}
		next.UpdatedAt, next.UpdatedBySubject = s.Now(), p.Subject
		b := s.newBatch(ctx)
		b.audit(actorFor(p, "", in.PoolID), eventsv1.Action_ACTION_UPDATE,
			auditlog.Target{Type: eventsv1.RecordType_RECORD_TYPE_POOL_SETTINGS, ID: in.PoolID, PoolID: in.PoolID}, auditlog.Reason("pool_settings"))
		rows, err := b.rows()
		return next, rows, err
	})
	return out, storeError("update pool settings", err)
}

// LegalHoldResult is the hold state after SetLegalHold.
type LegalHoldResult struct {
	ThreadsAffected int64
	On              bool
	CaseReference   string
	UpdateTime      time.Time
}

// SetLegalHold places or lifts a legal hold on a thread or on every thread of a patient.
func (s *Service) SetLegalHold(ctx context.Context, p *auth.Principal, threadID, patientID string, on bool, caseRef string) (*LegalHoldResult, error) {
	if (threadID == "") == (patientID == "") {
		return nil, usererr.New(usererr.InvalidArgument, "HOLD_TARGET_AMBIGUOUS", "exactly one of thread_id and patient_id is required")
	}
	if on {
		if err := domain.CheckCaseReference(caseRef); err != nil {
			return nil, err
		}
	} else {
		caseRef = ""
	}
	res := policy.Resource{Type: "Thread", ID: "patient:" + patientID, PatientID: patientID}
	var t *domain.Thread
	if threadID != "" {
		id, err := domain.CheckID("thread_id", threadID)
		if err != nil {
			return nil, err
		}
		if t, err = s.loadThread(ctx, id); err != nil {
			return nil, err
		}
		res = threadResource(t)
	} else if len(patientID) > 100 {
		return nil, usererr.New(usererr.InvalidArgument, "FIELD_TOO_LONG", "patient_id is too long")
	}
	if _, err := s.authorize(ctx, p, actSetLegalHold, res, policy.Context{}, nil); err != nil {
		return nil, err
	}
	out := &LegalHoldResult{On: on, CaseReference: caseRef, UpdateTime: s.Now()}
	recordID := patientID
	if t != nil {
		recordID, patientID = t.ID, t.PatientID
	}
	b := s.newBatch(ctx)
	reason := "legal_hold_lifted"
	if on {
		reason = "legal_hold_placed"
	}
	b.audit(actorFor(p, "", ""), eventsv1.Action_ACTION_UPDATE,
		auditlog.Target{Type: eventsv1.RecordType_RECORD_TYPE_LEGAL_HOLD, ID: recordID, PatientID: patientID, PoolID: res.PoolID},
		auditlog.Reason(reason), auditlog.WithSeverity(eventsv1.Severity_SEVERITY_HIGH), auditlog.WithPurpose(commonv1.PurposeOfUse_PURPOSE_OF_USE_LEGAL))
	rows, err := b.rows()
	if err == nil {
		if t != nil {
			var changed bool
			if changed, err = s.Threads.SetThreadHold(ctx, t.ID, on, caseRef, p.Subject, out.UpdateTime, rows); changed {
				out.ThreadsAffected = 1
			}
		} else {
			out.ThreadsAffected, err = s.Threads.SetPatientHold(ctx, patientID, on, caseRef, p.Subject, out.UpdateTime, rows)
		}
	}
	if err != nil {
		return nil, storeError("set legal hold", err)
	}
	// The case reference is an identifier by contract (CheckCaseReference), not PHI: it is
	// logged so that operators can tie the hold to its matter.
	s.Logger.InfoContext(ctx, "legal hold changed", slog.Bool("on", on), slog.String("case_reference", caseRef),
		slog.Int64("threads_affected", out.ThreadsAffected))
	return out, nil
}
