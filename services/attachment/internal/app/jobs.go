package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/crypto"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// jobPrincipal is the actor of background work in audit records.
var jobPrincipal = &auth.Principal{Kind: auth.KindService, Subject: "service:attachment", Service: "attachment"}

// The jobs' names, the operation of their audit records.
const (
	rescanJob  = "attachment.rescan_pending"
	cleanUpJob = "attachment.clean_up"
)

// RescanPending scans up to limit pending attachments (those uploaded while the scanner was
// down) by streaming each decrypted object through the scanner, and records the verdicts. It
// returns how many got a verdict. Scanner failures leave an attachment pending (never served)
// for the next run; an object that fails authentication becomes Failed.
func (s *Service) RescanPending(ctx context.Context, limit int) (int, error) {
	rows, err := s.attachments.PendingAttachments(ctx, limit)
	if err != nil {
		return 0, s.dbFail(err)
	}
	done := 0
	for _, a := range rows {
		if ctx.Err() != nil {
			return done, ctx.Err()
		}
		v, readErr, scanErr := s.rescan(ctx, a)
		state := domain.StateClean
		verdict := eventsv1.ScanVerdict_SCAN_VERDICT_CLEAN
		switch {
		case readErr != nil && kindOf(readErr) == usererr.DataLoss:
			s.logger.ErrorContext(ctx, "pending attachment failed authentication", slog.String("attachment_id", a.ID), slog.String("error", readErr.Error()))
			state, verdict = domain.StateFailed, eventsv1.ScanVerdict_SCAN_VERDICT_FAILED
		case readErr != nil || scanErr != nil:
			cause := readErr
			if cause == nil {
				cause = scanErr
			}
			s.logger.WarnContext(ctx, "re-scan failed; attachment stays pending", slog.String("attachment_id", a.ID), slog.String("error", cause.Error()))
			_ = s.attachments.SetScanAttempts(ctx, a.ID, a.ScanAttempts+1)
			if errors.Is(scanErr, usererr.ErrUnavailable) || readErr == nil {
				// The scanner is down: the rest would fail the same way.
				return done, nil
			}
			continue
		case v.Infected:
			state, verdict = domain.StateInfected, eventsv1.ScanVerdict_SCAN_VERDICT_INFECTED
		}
		if err := s.recordScan(ctx, a, state, verdict, v.Signature); err != nil {
			return done, err
		}
		done++
	}
	return done, nil
}

// rescan streams a's decrypted object through the scanner.
func (s *Service) rescan(ctx context.Context, a *domain.Attachment) (domain.Verdict, error, error) {
	dek, err := s.keys.OpenDEK(ctx, s.cfg.KeyName, a.WrappedDEK)
	if err != nil {
		return domain.Verdict{}, keyErr(err), nil
	}
	defer clear(dek)
	obj, err := s.objects.Open(ctx, a.ObjectName, readHint(a))
	if err != nil {
		if errors.Is(err, usererr.ErrNotFound) {
			return domain.Verdict{}, usererr.Wrap(usererr.DataLoss, "STORED_ATTACHMENT_MISSING", "object missing", err), nil
		}
		return domain.Verdict{}, err, nil
	}
	defer release(obj)
	r, err := crypto.NewStreamReader(obj, obj.Size(), dek, streamAAD(a))
	if err != nil {
		return domain.Verdict{}, objectErr(err), nil
	}
	src := &errReader{r: r}
	v, scanErr := s.scanner.Scan(ctx, src)
	if src.err != nil {
		return domain.Verdict{}, objectErr(src.err), nil
	}
	return v, nil, scanErr
}

// kindOf is the kind of the first usererr.Error in err's chain, 0 when there is none.
func kindOf(err error) usererr.Kind {
	k, _ := usererr.KindOf(err)
	return k
}

// errReader remembers the error its reader returned, to tell a bad object from a bad scanner.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// recordScan stores a re-scan's verdict with its audit record and event; infected and failed
// objects are deleted.
func (s *Service) recordScan(ctx context.Context, a *domain.Attachment, state domain.State, verdict eventsv1.ScanVerdict, sig string) error {
	now := s.now()
	a.State, a.SignatureName, a.ScanTime = state, sig, now
	opts := []auditlog.RecordOption{auditlog.Operation(rescanJob), auditlog.Reason("scan_" + string(state))}
	if state != domain.StateClean {
		opts = append(opts, auditlog.WithSeverity(eventsv1.Severity_SEVERITY_HIGH))
		if state == domain.StateInfected {
			opts = append(opts, auditlog.Reason("malware_detected"))
		}
	}
	attempts := a.ScanAttempts + 1
	err := s.attachments.UpdateAttachment(ctx, a.ID, func(cur *domain.Attachment) (domain.Effects, error) {
		if cur.State != domain.StatePending {
			return domain.Effects{}, nil // deleted or purged meanwhile
		}
		audit, err := s.auditRow(ctx, jobPrincipal, eventsv1.Action_ACTION_UPDATE, a, domain.Access{}, opts...)
		if err != nil {
			return domain.Effects{}, err
		}
		ev, err := s.scannedEvent(ctx, a, verdict)
		if err != nil {
			return domain.Effects{}, err
		}
		cur.RecordScan(state, sig, now, attempts)
		return domain.Effects{Changed: true, Rows: []outbox.Event{audit, ev}}, nil
	})
	if err != nil {
		return s.dbFail(err)
	}
	if state != domain.StateClean {
		if err := s.objects.Remove(ctx, a.ObjectName); err != nil {
			s.logger.WarnContext(ctx, "refused object not removed", slog.String("attachment_id", a.ID), slog.String("error", err.Error()))
		}
	}
	return nil
}

// CleanUp removes drafts never bound within DraftTTL, uploads stuck Uploading for UploadTTL
// (their process died), the objects of deleted drafts, multipart uploads aborted for
// UploadTTL, and upload sessions closed or abandoned (idle for SessionTTL) with their staged
// chunks. It returns how many rows (attachments and sessions) it removed.
func (s *Service) CleanUp(ctx context.Context, limit int) (int, error) {
	now := s.now()
	rows, err := s.attachments.StaleAttachments(ctx, now.Add(-s.cfg.DraftTTL), now.Add(-s.cfg.UploadTTL), limit)
	if err != nil {
		return 0, s.dbFail(err)
	}
	n := 0
	for _, a := range rows {
		if err := s.objects.Remove(ctx, a.ObjectName); err != nil {
			return n, err
		}
		var rows []outbox.Event
		var err error
		// An abandoned upload or a tombstone goes without a record: nothing anyone saw.
		if a.State.Visible() {
			var row outbox.Event
			row, err = s.auditRow(ctx, jobPrincipal, eventsv1.Action_ACTION_DELETE, a, domain.Access{},
				auditlog.Operation(cleanUpJob), auditlog.Reason("draft_expired"))
			if err == nil {
				rows = []outbox.Event{row}
			}
		}
		if err == nil {
			err = s.attachments.DeleteAttachment(ctx, a.ID, rows)
		}
		if err != nil {
			return n, s.dbFail(err)
		}
		n++
	}
	if _, err := s.objects.RemoveIncompleteUploads(ctx, s.cfg.UploadTTL); err != nil {
		return n, err
	}
	m, err := s.cleanUpSessions(ctx, limit)
	return n + m, err
}

// RunJobs re-scans pending files every scanEvery and cleans up every cleanEvery until ctx
// ends. Failures are logged and retried on the next tick.
func (s *Service) RunJobs(ctx context.Context, scanEvery, cleanEvery time.Duration) error {
	scan := time.NewTicker(scanEvery)
	defer scan.Stop()
	clean := time.NewTicker(cleanEvery)
	defer clean.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-scan.C:
			if n, err := s.RescanPending(ctx, 100); err != nil && ctx.Err() == nil {
				s.logger.WarnContext(ctx, "re-scan run failed", slog.String("error", err.Error()))
			} else if n > 0 {
				s.logger.InfoContext(ctx, "re-scanned pending attachments", slog.Int("count", n))
			}
		case <-clean.C:
			if n, err := s.CleanUp(ctx, 500); err != nil && ctx.Err() == nil {
				s.logger.WarnContext(ctx, "clean-up run failed", slog.String("error", err.Error()))
			} else if n > 0 {
				s.logger.InfoContext(ctx, "cleaned up attachments", slog.Int("count", n))
			}
		}
	}
}
