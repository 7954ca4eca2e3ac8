package app

import (
	"context"
	"errors"
	"slices"
	"time"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// PurgeCmd is a retention purge run.
type PurgeCmd struct {
	DryRun     bool
	AsOf       time.Time // zero: now
	Categories []commonv1.ThreadCategory
	Limit      int // 0: 1,000
}

// PurgeCounts count one category (Category 0: the total).
type PurgeCounts struct {
	Category                                                  commonv1.ThreadCategory
	Eligible, Purged, Messages, Attachments, SkippedLegalHold int64
}

// PurgeResult is what a run did.
type PurgeResult struct {
	DryRun     bool
	ByCategory []PurgeCounts
	Total      PurgeCounts
	Truncated  bool
	Start      time.Time
	Finish     time.Time
}

// SystemPrincipal is the purge job's own identity in audit records.
var SystemPrincipal = &auth.Principal{Kind: auth.KindService, Subject: "service:messaging", Service: "messaging"}

// purgeJobOperation names the purge job in its audit records (the rpc is named by its method).
const purgeJobOperation = "messaging.retention-purge"

// RunRetentionPurge is the admin rpc: it checks the caller, then purges.
func (s *Service) RunRetentionPurge(ctx context.Context, p *auth.Principal, c PurgeCmd) (*PurgeResult, error) {
	if c.Limit < 0 {
		return nil, usererr.New(usererr.InvalidArgument, "FIELD_OUT_OF_RANGE", "limit must not be negative")
	}
	if !c.AsOf.IsZero() && c.AsOf.After(s.Now().Add(time.Minute)) {
		return nil, usererr.New(usererr.InvalidArgument, "AS_OF_IN_FUTURE", "as_of must not be in the future")
	}
	for _, cat := range c.Categories {
		if !domain.ValidCategory(cat) {
			return nil, usererr.New(usererr.InvalidArgument, "CATEGORY_UNKNOWN", "categories holds an unknown category")
		}
	}
	if _, err := s.authorize(ctx, p, actPurge, policy.Resource{Type: "Pool", ID: "retention"}, policy.Context{}, nil); err != nil {
		return nil, err
	}
	return s.Purge(ctx, p, c)
}

// purgeLock names the lock that keeps purges (rpc and job, on every replica) apart. It is per
// Transit key, so services sharing a database with their own keys do not exclude each other.
func (s *Service) purgeLock() string { return "securemsg messaging retention purge " + s.cfg.KeyName }

// Purge deletes threads past their category's retention that no legal hold covers: it asks
// the attachment service to purge their files first (a thread whose files could not be purged
// is kept for the next run), then, per thread and in one transaction, clears and deletes the
// wrapped DEK with the rows (crypto-shredding anything that survives in backups) and audits
// the purge. Idempotent; bounded by Limit.
func (s *Service) Purge(ctx context.Context, p *auth.Principal, c PurgeCmd) (*PurgeResult, error) {
	res := &PurgeResult{DryRun: c.DryRun, Start: s.Now()}
	asOf := c.AsOf
	if asOf.IsZero() {
		asOf = res.Start
	}
	limit := c.Limit
	if limit == 0 {
		limit = 1000
	}
	cats := slices.Clone(c.Categories)
	if len(cats) == 0 {
		for v := range commonv1.ThreadCategory_name {
			if v != 0 {
				cats = append(cats, commonv1.ThreadCategory(v))
			}
		}
	}
	slices.Sort(cats)
	cats = slices.Compact(cats)

	var partial bool // the purge failed after some threads went: res says which
	err := s.Retention.WithPurgeLock(ctx, s.purgeLock(), func(ctx context.Context, expired domain.ExpiredThreads) error {
		a := actorFor(p, "", "")
		remaining := limit
		for _, cat := range cats {
			cutoff, ok := s.cfg.Retention.Cutoff(cat, asOf)
			if !ok {
				continue
			}
			counts := PurgeCounts{Category: cat}
			var err error
			if counts.SkippedLegalHold, err = expired.CountHeldExpired(ctx, cat, cutoff); err != nil {
				return storeError("count held threads", err)
			}
			var cands []domain.PurgeCandidate
			switch {
			case remaining > 0:
				if cands, err = expired.ExpiredThreads(ctx, cat, cutoff, remaining+1); err != nil {
					return storeError("list expired threads", err)
				}
			case !res.Truncated:
				// The limit ran out exactly at the end of an earlier category: look for one
				// more thread only to say truthfully whether the run stopped short.
				more, err := expired.ExpiredThreads(ctx, cat, cutoff, 1)
				if err != nil {
					return storeError("list expired threads", err)
				}
				res.Truncated = len(more) > 0
			}
			if len(cands) > remaining {
				cands, res.Truncated = cands[:remaining], true
			}
			remaining -= len(cands)
			counts.Eligible = int64(len(cands))
			if c.DryRun {
				for _, cd := range cands {
					counts.Messages += cd.Messages
					counts.Attachments += cd.Attachments
				}
			} else if err := s.purgeThreads(ctx, a, cands, cutoff, &counts); err != nil {
				s.addCounts(res, counts)
				partial = true
				return err
			}
			s.addCounts(res, counts)
		}
		return nil
	})
	switch {
	case partial:
		return res, err
	case err != nil:
		return nil, storeError("retention purge", err)
	}
	res.Finish = s.Now()
	return res, nil
}

func (s *Service) addCounts(res *PurgeResult, c PurgeCounts) {
	if c.Eligible == 0 && c.SkippedLegalHold == 0 {
		return
	}
	res.ByCategory = append(res.ByCategory, c)
	res.Total.Eligible += c.Eligible
	res.Total.Purged += c.Purged
	res.Total.Messages += c.Messages
	res.Total.Attachments += c.Attachments
	res.Total.SkippedLegalHold += c.SkippedLegalHold
}

func (s *Service) purgeThreads(ctx context.Context, a auditlog.Actor, cands []domain.PurgeCandidate, cutoff time.Time, counts *PurgeCounts) error {
	for start := 0; start < len(cands); start += 1000 {
		chunk := cands[start:min(start+1000, len(cands))]
		ids := make([]string, len(chunk))
		for i, cd := range chunk {
			ids[i] = cd.ID
		}
		if _, err := s.Attachments.Purge(ctx, ids, "retention"); err != nil {
			return err
		}
		for _, cd := range chunk {
			b := s.newBatch(ctx)
			t := &domain.Thread{ID: cd.ID, PatientID: cd.PatientID, PoolID: cd.PoolID, Sensitivity: cd.Sensitivity}
			opts := []auditlog.RecordOption{auditlog.Reason("retention"), auditlog.WithPurpose(commonv1.PurposeOfUse_PURPOSE_OF_USE_OPERATIONS)}
			if auth.RequestInfoFrom(ctx).Method == "" { // the job, not the rpc
				opts = append(opts, auditlog.Operation(purgeJobOperation))
			}
			b.audit(a, eventsv1.Action_ACTION_PURGE, threadTarget(t), opts...)
			rows, err := b.rows()
			var deleted bool
			if err == nil {
				deleted, err = s.Retention.DeleteExpiredThread(ctx, cd.ID, cutoff, rows)
			}
			if err != nil {
				return storeError("purge thread", err)
			}
			if deleted {
				s.Keys.Forget(s.cfg.KeyName, cd.WrappedDEK)
				counts.Purged++
				counts.Messages += cd.Messages
				counts.Attachments += cd.Attachments
			}
		}
	}
	return nil
}

// RunPurgeJob purges every interval until ctx ends, as the service itself. A run that finds
// another purge running, or the attachment service down, is retried at the next tick.
func (s *Service) RunPurgeJob(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return nil
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		res, err := s.Purge(ctx, SystemPrincipal, PurgeCmd{})
		switch {
		case err != nil && !errors.Is(err, context.Canceled):
			s.Logger.WarnContext(ctx, "retention purge failed", "error", err.Error())
		case res != nil && res.Total.Purged > 0:
			s.Logger.InfoContext(ctx, "retention purge", "threads_purged", res.Total.Purged, "messages_purged", res.Total.Messages,
				"attachments_purged", res.Total.Attachments, "threads_skipped_legal_hold", res.Total.SkippedLegalHold, "truncated", res.Truncated)
		}
	}
}
