package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"sync"

	"github.com/google/uuid"

	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/crypto"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// UploadRequest is an upload's metadata.
type UploadRequest struct {
	FileName          string // PHI: sealed; never logged
	DeclaredMediaType string
	DeclaredSize      int64
	ThreadID          string
	ClientRequestID   string
}

// newUpload is the row of a new upload by p, in state Uploading (invisible), whether it
// arrives as a stream or through a session.
func newUpload(p *auth.Principal, req UploadRequest) *domain.Attachment {
	a := &domain.Attachment{
		ID: uuid.NewString(), UploaderSubject: p.Subject, ClientRequestID: req.ClientRequestID,
		AADThreadID: req.ThreadID, ThreadID: req.ThreadID, State: domain.StateUploading,
		ObjectName: randomName(), DeclaredMediaType: req.DeclaredMediaType, SizeBytes: req.DeclaredSize,
		ObjectSize: crypto.CiphertextSize(req.DeclaredSize),
	}
	if p.HasRole(auth.RolePatient) {
		a.PatientID = p.PatientID
	}
	return a
}

// Upload stores a file read from body (which yields exactly DeclaredSize bytes, then io.EOF;
// an error from body aborts the upload). The bytes flow once through, in bounded memory:
// the first bytes are sniffed and checked against the allow-list and the declared type, then
// every chunk is hashed (SHA-256), sent to the malware scanner and encrypted into object
// storage, concurrently. The scanner's verdict decides the state: clean, infected (refused,
// the object deleted, audited at high severity), or pending when the scanner could not
// answer (a job scans it later; nothing is served before).
//
// On any failure nothing stays visible: the object is removed and the row deleted, or, when
// even that fails, left in state Uploading for the clean-up job.
func (s *Service) Upload(ctx context.Context, p *auth.Principal, req UploadRequest, body io.Reader) (*domain.Attachment, error) {
	name, err := s.checkUpload(req)
	if err != nil {
		return nil, err
	}
	if prev, err := s.replay(ctx, p, req, name); prev != nil || err != nil {
		return prev, err
	}
	a := newUpload(p, req)
	a.FileName = name
	acc, err := s.checkAttach(ctx, p, a)
	if err != nil {
		return nil, err
	}
	dek, err := s.keys.NewDEK(ctx, s.cfg.KeyName)
	if err != nil {
		return nil, keyErr(err)
	}
	defer clear(dek.Plaintext)
	a.WrappedDEK = dek.Wrapped

	// The row exists before the object can (invisible, Uploading) so the quota counts uploads
	// in progress and a crash leaves something the clean-up job finds. Its transaction runs
	// while the first bytes are sniffed, scanned, encrypted and sent; the object store gets
	// the object's last byte only once the row is committed (see gate), so no object is ever
	// stored without its row.
	inserted := s.insertUploading(ctx, a)
	verdict, scanErr, err := s.store(ctx, a, dek.Plaintext, body, inserted)
	if insErr := inserted.wait(); insErr != nil {
		if !errors.Is(insErr, usererr.ErrResourceExhausted) && !errors.Is(insErr, usererr.ErrAlreadyExists) {
			// The insert failed without saying no (the caller went away, the database
			// failed): its commit may have happened all the same. Remove what may exist now
			// rather than leave it to the clean-up job.
			s.abandon(ctx, a)
		}
		if errors.Is(insErr, usererr.ErrAlreadyExists) {
			// A concurrent retry with the same client request id won the race.
			if prev, rerr := s.replay(ctx, p, req, name); prev != nil || rerr != nil {
				return prev, rerr
			}
		}
		if err != nil && ctx.Err() != nil {
			return nil, err // the caller went away, which also ended the insert; say so
		}
		return nil, s.dbFail(insErr)
	}
	if err != nil {
		s.abandon(ctx, a)
		return nil, err
	}
	a.CreateTime = inserted.row.CreateTime
	return s.finish(ctx, p, a, acc, dek.Plaintext, verdict, scanErr)
}

// checkAttach asks messaging whether p may attach a file to a's thread (a draft, for no thread
// yet, needs no answer) and fills in the thread's patient and pool. A denial is audited; an
// adolescent-confidential thread is hidden as not found.
func (s *Service) checkAttach(ctx context.Context, p *auth.Principal, a *domain.Attachment) (domain.Access, error) {
	if a.AADThreadID == "" {
		return domain.Access{}, nil
	}
	acc, err := s.access.CheckAccess(ctx, p, domain.AccessTarget{ThreadID: a.AADThreadID, Action: domain.AccessAttach})
	if err != nil {
		if errors.Is(err, usererr.ErrNotFound) {
			return domain.Access{}, domain.ErrThreadNotFound
		}
		return domain.Access{}, err
	}
	a.PatientID, a.PoolID = acc.PatientID, acc.PoolID
	if !acc.Allowed {
		s.deny(ctx, p, a, acc, reasonCode(acc.ReasonCode, "messaging_denied"))
		if acc.ReasonCode == "adolescent_confidential" {
			return domain.Access{}, domain.ErrThreadNotFound
		}
		return domain.Access{}, usererr.New(usererr.PermissionDenied, "THREAD_ACCESS_DENIED", "you may not attach files to this thread")
	}
	return acc, nil
}

// rowInsert is the Uploading row's insert, running beside the upload's stream.
type rowInsert struct {
	done chan struct{}
	err  error
	// row is what is inserted: a copy of the attachment as it was when the upload started,
	// since the stream fills in the content facts of the original meanwhile.
	row domain.Attachment
}

// wait returns the insert's result once it is committed or failed.
func (r *rowInsert) wait() error {
	<-r.done
	return r.err
}

// insertUploading starts inserting a as Uploading, within the uploader's quota.
func (s *Service) insertUploading(ctx context.Context, a *domain.Attachment) *rowInsert {
	r := &rowInsert{done: make(chan struct{}), row: *a}
	go func() {
		defer close(r.done)
		r.err = s.attachments.InsertUploading(ctx, &r.row, s.cfg.Limits.QuotaBytes)
	}()
	return r
}

func (s *Service) checkUpload(req UploadRequest) (string, error) {
	name, err := domain.NeutraliseFileName(req.FileName)
	if err != nil {
		return "", err
	}
	if err := s.media.CheckDeclared(req.DeclaredMediaType); err != nil {
		return "", err
	}
	if err := s.cfg.Limits.CheckDeclaredSize(req.DeclaredSize); err != nil {
		return "", err
	}
	if err := checkID("thread_id", req.ThreadID, false); err != nil {
		return "", err
	}
	if req.ClientRequestID != "" {
		if _, err := uuid.Parse(req.ClientRequestID); err != nil {
			return "", usererr.New(usererr.InvalidArgument, "INVALID_CLIENT_REQUEST_ID", "client_request_id must be a UUID")
		}
	}
	return name, nil
}

// replay returns the attachment a retried upload (same client request id) already made, or
// ErrAlreadyExists when the id was used for a different upload or that upload is still
// running; nil, nil when the id is new.
func (s *Service) replay(ctx context.Context, p *auth.Principal, req UploadRequest, name string) (*domain.Attachment, error) {
	if req.ClientRequestID == "" {
		return nil, nil
	}
	prev, err := s.attachments.AttachmentByRequest(ctx, p.Subject, req.ClientRequestID)
	if err != nil || prev == nil {
		return nil, s.dbFail(err)
	}
	if !prev.State.Visible() || prev.SizeBytes != req.DeclaredSize ||
		prev.DeclaredMediaType != req.DeclaredMediaType || prev.AADThreadID != req.ThreadID {
		return nil, usererr.New(usererr.AlreadyExists, "CLIENT_REQUEST_ID_REUSED", "client_request_id was already used for another upload")
	}
	prev.FileName = name
	return prev, nil
}

// dbFail passes domain errors through and masks the rest as internal.
func (s *Service) dbFail(err error) error {
	if k, _ := usererr.KindOf(err); err == nil || k != 0 {
		return err
	}
	return fmt.Errorf("attachment store: %w", err)
}

// randomName is an object name that says nothing about the file: 128 random bits.
func randomName() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "obj/" + hex.EncodeToString(b[:])
}

// store runs the streaming pipeline and fills a's content facts. It returns the scanner's
// verdict, or scanErr when the scanner gave none (the file stays pending), or err when the
// upload failed (nothing is kept). The object store gets the object's last byte only after
// inserted succeeded; if it failed, the store is given that error instead and stores nothing.
func (s *Service) store(ctx context.Context, a *domain.Attachment, dek []byte, body io.Reader, inserted *rowInsert) (domain.Verdict, error, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	head := make([]byte, min(int64(domain.SniffBytes), a.SizeBytes))
	if n, err := io.ReadFull(body, head); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return domain.Verdict{}, nil, usererr.Newf(usererr.InvalidArgument, "SIZE_MISMATCH", "received %d bytes, declared %d", n, a.SizeBytes)
		}
		return domain.Verdict{}, nil, err
	}
	mt, err := s.media.Sniff(head, a.DeclaredMediaType)
	if err != nil {
		s.logger.InfoContext(ctx, "upload refused by file-type control", slog.String("attachment_id", a.ID), slog.String("sniffed", mt))
		return domain.Verdict{}, nil, err
	}
	a.MediaType = mt

	// A refused insert (over quota, say) stops the upload at once, not at its last byte.
	go func() {
		select {
		case <-inserted.done:
			if inserted.err != nil {
				cancel()
			}
		case <-ctx.Done():
		}
	}()

	objR, objW := io.Pipe()
	scanR, scanW := io.Pipe()
	var wg sync.WaitGroup
	var putErr, scanErr error
	var verdict domain.Verdict
	wg.Add(2)
	go func() {
		defer wg.Done()
		putErr = s.objects.Put(ctx, a.ObjectName, &gate{r: objR, left: a.ObjectSize, ctx: ctx, open: inserted}, a.ObjectSize)
		// Unblock the writer whatever happened; a short read by the store is a failure too.
		objR.CloseWithError(errStoreStopped)
	}()
	go func() {
		defer wg.Done()
		verdict, scanErr = s.scanner.Scan(ctx, scanR)
		scanR.CloseWithError(errScanStopped)
	}()

	hash := sha256.New()
	scanner := &scanFeed{w: scanW}
	enc, err := crypto.NewStreamWriter(objW, dek, streamAAD(a))
	if err == nil {
		err = copyChunks(io.MultiReader(bytes.NewReader(head), body), a.SizeBytes, hash, scanner, enc)
	}
	if err == nil {
		// The scanner has every byte: let it scan while the last segment is sealed and sent.
		_ = scanW.Close() // a pipe's Close always succeeds
		err = enc.Close()
	}
	if err != nil {
		objW.CloseWithError(err)
		scanW.CloseWithError(err)
		cancel()
		wg.Wait()
		if errors.Is(err, errStoreStopped) && putErr != nil {
			return domain.Verdict{}, nil, putErr
		}
		return domain.Verdict{}, nil, err
	}
	_ = objW.Close() // a pipe's Close always succeeds
	wg.Wait()
	if putErr != nil {
		return domain.Verdict{}, nil, putErr
	}
	a.SHA256 = hash.Sum(nil)
	if scanner.failed && scanErr == nil {
		scanErr = errors.New("scanner stopped reading")
	}
	return verdict, scanErr, nil
}

// gate passes an object's bytes to the object store but holds back the last one until the
// upload's row is committed: a store that never got the last byte stores nothing, so a crash
// or a refused insert leaves no object without its row. Only that byte waits; the rest of the
// transfer overlaps the insert.
type gate struct {
	r      io.Reader
	left   int64 // bytes of the object not yet passed on
	ctx    context.Context
	open   *rowInsert
	opened bool
}

func (g *gate) Read(p []byte) (int, error) {
	if !g.opened && g.left <= 1 {
		select {
		case <-g.open.done:
		case <-g.ctx.Done():
			return 0, g.ctx.Err()
		}
		if g.open.err != nil {
			return 0, fmt.Errorf("upload row not stored: %w", g.open.err)
		}
		g.opened = true
	}
	if !g.opened && int64(len(p)) >= g.left {
		p = p[:g.left-1]
	}
	n, err := g.r.Read(p)
	g.left -= int64(n)
	return n, err
}

var (
	errStoreStopped = errors.New("object storage stopped reading the upload")
	errScanStopped  = errors.New("scanner stopped reading")
)

// copyChunks copies exactly size bytes from r to each writer in turn, refusing a stream that
// is longer or shorter than declared.
func copyChunks(r io.Reader, size int64, hash hash.Hash, scan *scanFeed, enc io.Writer) error {
	buf := make([]byte, 64<<10)
	var total int64
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			total += int64(n)
			if total > size {
				return usererr.Newf(usererr.InvalidArgument, "SIZE_MISMATCH", "received more bytes than the declared %d", size)
			}
			hash.Write(buf[:n])
			scan.feed(buf[:n])
			if _, err := enc.Write(buf[:n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			if total != size {
				return usererr.Newf(usererr.InvalidArgument, "SIZE_MISMATCH", "received %d bytes, declared %d", total, size)
			}
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// scanFeed feeds the scanner on a best-effort basis: once the scanner stops (clamd down or
// failing), further bytes are dropped so the upload continues and the file waits for a re-scan
// instead.
type scanFeed struct {
	w      io.Writer
	failed bool
}

// feed passes p on to the scanner unless it has stopped.
func (b *scanFeed) feed(p []byte) {
	if !b.failed {
		if _, err := b.w.Write(p); err != nil {
			b.failed = true
		}
	}
}

// abandon removes what a failed upload left: the object (if any part of it was stored) and
// the row. When that fails too, the row stays Uploading (never visible) for the clean-up job.
func (s *Service) abandon(ctx context.Context, a *domain.Attachment) {
	cctx, cancel := cleanupCtx(ctx)
	defer cancel()
	if err := s.objects.Remove(cctx, a.ObjectName); err != nil {
		s.logger.WarnContext(ctx, "abandoned upload: object not removed; clean-up will retry", slog.String("attachment_id", a.ID), slog.String("error", err.Error()))
		return
	}
	if err := s.attachments.DeleteAttachment(cctx, a.ID, nil); err != nil {
		s.logger.WarnContext(ctx, "abandoned upload: row not removed; clean-up will retry", slog.String("attachment_id", a.ID), slog.String("error", err.Error()))
	}
}

// finish records the upload's outcome with its audit record and scan event.
func (s *Service) finish(ctx context.Context, p *auth.Principal, a *domain.Attachment, acc domain.Access, dek []byte, v domain.Verdict, scanErr error) (*domain.Attachment, error) {
	now := s.now()
	var verdict eventsv1.ScanVerdict
	var outcome []auditlog.RecordOption
	switch {
	case scanErr != nil:
		s.logger.WarnContext(ctx, "scan unavailable; attachment pending", slog.String("attachment_id", a.ID), slog.String("error", scanErr.Error()))
		a.State = domain.StatePending
		outcome = []auditlog.RecordOption{auditlog.Reason("scan_pending")}
	case v.Infected:
		a.RecordScan(domain.StateInfected, v.Signature, now, 1)
		verdict = eventsv1.ScanVerdict_SCAN_VERDICT_INFECTED
		outcome = []auditlog.RecordOption{auditlog.Denied("malware_detected"), auditlog.WithSeverity(eventsv1.Severity_SEVERITY_HIGH)}
	default:
		a.RecordScan(domain.StateClean, "", now, 1)
		verdict = eventsv1.ScanVerdict_SCAN_VERDICT_CLEAN
	}
	if a.State != domain.StateInfected {
		sealer, err := crypto.NewRecordSealer(dek, a.ID)
		if err != nil {
			return nil, err
		}
		if a.FileNameSealed, err = sealer.SealRecord([]byte(a.FileName), fileNameAAD(a.ID)); err != nil {
			return nil, err
		}
	} else {
		// The ciphertext of malware is not kept.
		cctx, cancel := cleanupCtx(ctx)
		if err := s.objects.Remove(cctx, a.ObjectName); err != nil {
			s.logger.WarnContext(ctx, "infected object not removed; clean-up will retry", slog.String("attachment_id", a.ID), slog.String("error", err.Error()))
		}
		cancel()
	}
	// The outcome, its audit record and its scan event are one statement (CompleteUpload): one
	// round trip, and all or nothing like the transaction it replaces.
	rows, err := s.outcomeRows(ctx, p, a, acc, verdict, outcome)
	if err == nil {
		err = s.attachments.CompleteUpload(ctx, a, rows)
	}
	if err != nil {
		s.abandon(ctx, a)
		return nil, s.dbFail(err)
	}
	if a.State == domain.StateInfected {
		s.logger.WarnContext(ctx, "upload refused: malware found", slog.String("attachment_id", a.ID), slog.String("signature", a.SignatureName))
		return nil, usererr.New(usererr.InvalidArgument, "MALWARE_DETECTED", "the file contains malware and was refused")
	}
	return a, nil
}

// outcomeRows are the outbox rows recording an upload's outcome: the audit record and, when
// there is a verdict, the scan event.
func (s *Service) outcomeRows(ctx context.Context, p *auth.Principal, a *domain.Attachment, acc domain.Access, verdict eventsv1.ScanVerdict, outcome []auditlog.RecordOption) ([]outbox.Event, error) {
	audit, err := s.auditRow(ctx, p, eventsv1.Action_ACTION_CREATE, a, acc, outcome...)
	if err != nil {
		return nil, err
	}
	rows := []outbox.Event{audit}
	if verdict != eventsv1.ScanVerdict_SCAN_VERDICT_UNSPECIFIED {
		ev, err := s.scannedEvent(ctx, a, verdict)
		if err != nil {
			return nil, err
		}
		rows = append(rows, ev)
	}
	return rows, nil
}
