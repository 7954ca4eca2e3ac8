package app

import (
	"cmp"
	"context"
	"slices"

	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
)

// Reconcile answers a producer's reconciliation request (see auditlog.Reconciler). idle must
// say whether the ingest consumer has nothing pending: only then can a record the log lacks be
// called lost rather than on its way.
func (s *Service) Reconcile(ctx context.Context, req auditlog.ReconcileRequest, idle bool) auditlog.ReconcileReply {
	mark, err := s.marks.ReconcileMark(ctx, req.Producer)
	if err != nil {
		return auditlog.ReconcileReply{Error: "mark unavailable"}
	}
	if len(req.Entries) == 0 {
		return auditlog.ReconcileReply{Mark: mark}
	}
	if !idle {
		return auditlog.ReconcileReply{Mark: mark, Busy: true}
	}
	entries := slices.Clone(req.Entries)
	slices.SortFunc(entries, func(a, b auditlog.ReconcileEntry) int { return cmp.Compare(a.Seq, b.Seq) })
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.ID
	}
	have, err := s.marks.HasEvents(ctx, ids)
	if err != nil {
		return auditlog.ReconcileReply{Mark: mark, Error: "lookup unavailable"}
	}
	var missing []string
	newMark := mark
	for _, e := range entries {
		if !have[e.ID] {
			missing = append(missing, e.ID)
			continue
		}
		if len(missing) == 0 {
			newMark = max(newMark, e.Seq)
		}
	}
	if newMark > mark {
		if err := s.marks.SetReconcileMark(ctx, req.Producer, newMark); err != nil {
			return auditlog.ReconcileReply{Mark: mark, Error: "mark not saved"}
		}
	}
	return auditlog.ReconcileReply{Mark: newMark, Missing: missing}
}
