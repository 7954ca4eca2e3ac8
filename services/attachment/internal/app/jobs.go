package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/crypto"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// jobPrincipal is the actor of background work in audit records.
var jobPrincipal = &auth.Principal{Kind: auth.KindService, Subject: "service:attachment", Service: "attachment"}

// RescanPending scans up to limit pending attachments (those uploaded while the scanner was
// down) by streaming each decrypted object through the scanner, and records the verdicts. It
// returns how many got a verdict. Scanner failures leave an attachment pending (never served)
// for the next run; an object that fails authentication becomes Failed.
func (s *Service) RescanPending(ctx context.Context, limit int) (int, error) {
	rows, err := pgstore.ListPending(ctx, s.Pool, limit)
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
			s.Logger.ErrorContext(ctx, "pending attachment failed authentication", slog.String("attachment_id", a.ID), slog.String("error", readErr.Error()))
			state, verdict = domain.StateFailed, eventsv1.ScanVerdict_SCAN_VERDICT_FAILED
		case readErr != nil || scanErr != nil:
			cause := readErr
			if cause == nil {
				cause = scanErr
			}
			s.Logger.WarnContext(ctx, "re-scan failed; attachment stays pending", slog.String("attachment_id", a.ID), slog.String("error", cause.Error()))
			_ = pgstore.SetScanAttempts(ctx, s.Pool, a.ID, a.ScanAttempts+1)
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
	dek, err := s.Keys.OpenDEK(ctx, s.keyName(), a.WrappedDEK)
	if err != nil {
		return domain.Verdict{}, keyErr(err), nil
	}
	defer clear(dek)
	obj, err := s.Store.Open(ctx, a.ObjectName, readHint(a))
	if err != nil {
		if errors.Is(err, usererr.ErrNotFound) {
			return domain.Verdict{}, usererr.Wrap(usererr.DataLoss, "STORED_ATTACHMENT_MISSING", "object missing", err), nil
		}
		return domain.Verdict{}, err, nil
	}
	defer obj.Close()
	r, err := crypto.NewStreamReader(obj, obj.Size(), dek, streamAAD(a))
	if err != nil {
		return domain.Verdict{}, objectErr(err), nil
	}
	src := &errReader{r: r}
	v, scanErr := s.Scanner.Scan(ctx, src)
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
	rec := s.record(ctx, jobPrincipal, eventsv1.Action_ACTION_UPDATE, a, Access{})
	rec.ReasonCode = "scan_" + string(state)
	if state != domain.StateClean {
		rec.Severity = eventsv1.Severity_SEVERITY_HIGH
		if state == domain.StateInfected {
			rec.ReasonCode = "malware_detected"
		}
	}
	err := pg.WithTx(ctx, s.Pool, func(tx pgx.Tx) error {
		cur, err := pgstore.Get(ctx, tx, a.ID, true)
		if err != nil {
			return err
		}
		if cur.State != domain.StatePending {
			return nil // deleted or purged meanwhile
		}
		if err := pgstore.SetScan(ctx, tx, a.ID, state, sig, now, a.ScanAttempts+1); err != nil {
			return err
		}
		if err := s.writeAudit(ctx, tx, rec); err != nil {
			return err
		}
		ev, err := s.scannedEvent(ctx, a, verdict)
		if err != nil {
			return err
		}
		return addEvents(ctx, tx, ev)
	})
	if err != nil {
		return s.dbFail(err)
	}
	if state != domain.StateClean {
		if err := s.Store.Remove(ctx, a.ObjectName); err != nil {
			s.Logger.WarnContext(ctx, "refused object not removed", slog.String("attachment_id", a.ID), slog.String("error", err.Error()))
		}
	}
	return nil
}

// CleanUp removes drafts never bound within DraftTTL, uploads stuck Uploading for UploadTTL
// (their process died), the objects of deleted drafts, and multipart uploads aborted for
// UploadTTL. It returns how many rows it removed.
func (s *Service) CleanUp(ctx context.Context, limit int) (int, error) {
	now := s.now()
	rows, err := pgstore.ListStale(ctx, s.Pool, now.Add(-s.DraftTTL), now.Add(-s.UploadTTL), limit)
	if err != nil {
		return 0, s.dbFail(err)
	}
	n := 0
	for _, a := range rows {
		if err := s.Store.Remove(ctx, a.ObjectName); err != nil {
			return n, err
		}
		err := pg.WithTx(ctx, s.Pool, func(tx pgx.Tx) error {
			if err := pgstore.Delete(ctx, tx, a.ID); err != nil {
				return err
			}
			if !a.State.Visible() {
				return nil // an abandoned upload or a tombstone: nothing anyone saw
			}
			rec := s.record(ctx, jobPrincipal, eventsv1.Action_ACTION_DELETE, a, Access{})
			rec.ReasonCode = "draft_expired"
			return s.writeAudit(ctx, tx, rec)
		})
		if err != nil {
			return n, s.dbFail(err)
		}
		n++
	}
	if _, err := s.Store.RemoveIncompleteUploads(ctx, s.UploadTTL); err != nil {
		return n, err
	}
	return n, nil
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
				s.Logger.WarnContext(ctx, "re-scan run failed", slog.String("error", err.Error()))
			} else if n > 0 {
				s.Logger.InfoContext(ctx, "re-scanned pending attachments", slog.Int("count", n))
			}
		case <-clean.C:
			if n, err := s.CleanUp(ctx, 500); err != nil && ctx.Err() == nil {
				s.Logger.WarnContext(ctx, "clean-up run failed", slog.String("error", err.Error()))
			} else if n > 0 {
				s.Logger.InfoContext(ctx, "cleaned up attachments", slog.Int("count", n))
			}
		}
	}
}
