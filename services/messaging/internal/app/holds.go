package app

import (
	"context"
	"slices"
	"time"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// RetentionPeriod is one category's retention period and its cutoff as of the policy's AsOf.
type RetentionPeriod struct {
	Category commonv1.ThreadCategory
	Period   time.Duration
	Cutoff   time.Time
}

// RetentionPolicy is the retention policy in force and the legal holds that keep threads
// past it.
type RetentionPolicy struct {
	Periods       []RetentionPeriod // in category order
	PurgeInterval time.Duration     // 0: the service never purges by itself
	AsOf          time.Time
	Holds         domain.LegalHoldCounts
}

// GetRetentionPolicy returns the configured retention periods with the cutoffs a purge run now
// would use (the same domain.Retention.Cutoff the purge calls), and the legal hold counts. It
// reads configuration and counts, no PHI, so only a denial is audited.
func (s *Service) GetRetentionPolicy(ctx context.Context, p *auth.Principal) (*RetentionPolicy, error) {
	if _, err := s.authorize(ctx, p, actGetRetention, policy.Resource{Type: "Pool", ID: "retention"}, policy.Context{}, nil); err != nil {
		return nil, err
	}
	holds, err := s.Retention.CountLegalHolds(ctx)
	if err != nil {
		return nil, storeError("count legal holds", err)
	}
	out := &RetentionPolicy{PurgeInterval: s.cfg.PurgeInterval, AsOf: s.Now(), Holds: holds}
	for cat, d := range s.cfg.Retention {
		cutoff, _ := s.cfg.Retention.Cutoff(cat, out.AsOf)
		out.Periods = append(out.Periods, RetentionPeriod{Category: cat, Period: d, Cutoff: cutoff})
	}
	slices.SortFunc(out.Periods, func(a, b RetentionPeriod) int { return int(a.Category) - int(b.Category) })
	return out, nil
}

// ListLegalHolds returns a page of the legal holds in force. The listing names the patients
// and threads under hold for a legal matter, so it is audited before the page is returned, and
// refused if that fails: one QUERY record of the legal hold registry, and one per patient hold
// on the page naming that patient (purpose LEGAL), so it shows in their access report.
func (s *Service) ListLegalHolds(ctx context.Context, p *auth.Principal, pageSize int, pageToken string) ([]domain.LegalHold, string, error) {
	limit := pageLimit(pageSize, 50, 200)
	var after domain.LegalHoldCursor
	if pageToken != "" {
		parts, err := parseKeysetToken("legal-holds", pageToken, 2)
		if err != nil {
			return nil, "", err
		}
		if parts[0] != "patient" && parts[0] != "thread" {
			return nil, "", errPageToken
		}
		after = domain.LegalHoldCursor{Thread: parts[0] == "thread", Key: parts[1]}
	}
	// The listing is about the hold registry as a whole, which policy sees as one record.
	if _, err := s.authorize(ctx, p, actListHolds, policy.Resource{Type: "Thread", ID: "legal-holds"}, policy.Context{}, nil); err != nil {
		return nil, "", err
	}
	holds, err := s.Retention.LegalHolds(ctx, after, limit+1)
	if err != nil {
		return nil, "", storeError("list legal holds", err)
	}
	next := ""
	if len(holds) > limit {
		holds = holds[:limit]
		c := holds[limit-1].Cursor()
		kind := "patient"
		if c.Thread {
			kind = "thread"
		}
		next = keysetToken("legal-holds", kind, c.Key)
	}
	b := s.newBatch(ctx)
	b.audit(actorFor(p, "", ""), eventsv1.Action_ACTION_QUERY, auditlog.Target{Type: eventsv1.RecordType_RECORD_TYPE_LEGAL_HOLD, ID: "legal-holds"},
		auditlog.Reason("legal_holds_listed"), auditlog.WithPurpose(commonv1.PurposeOfUse_PURPOSE_OF_USE_LEGAL))
	// Each patient named on the page learns of it in their own accounting of disclosures.
	for _, h := range holds {
		if h.PatientID != "" {
			b.audit(actorFor(p, h.PatientID, ""), eventsv1.Action_ACTION_QUERY,
				auditlog.Target{Type: eventsv1.RecordType_RECORD_TYPE_LEGAL_HOLD, ID: "patient-hold", PatientID: h.PatientID},
				auditlog.Reason("legal_hold_listed"), auditlog.WithPurpose(commonv1.PurposeOfUse_PURPOSE_OF_USE_LEGAL))
		}
	}
	rows, err := b.rows()
	if err == nil {
		err = s.AuditTrail.WriteAudit(ctx, rows)
	}
	if err != nil {
		return nil, "", storeError("audit legal hold listing", err)
	}
	return holds, next, nil
}
