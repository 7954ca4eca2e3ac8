package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/crypto"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// Upload sessions (domain/session.go) give a browser, which cannot send a client stream, the
// streamed upload's guarantees over unary calls:
//   - Create runs the stream's checks up front (name, declared type and size, thread access)
//     and inserts the invisible Uploading row with its sealed name and wrapped DEK, claiming the
//     quota and the client request id at once — the same insert the stream makes.
//   - Append seals each chunk at once (segmented AEAD under the attachment's DEK, bound to the
//     upload and the chunk's offset) into a staged object of its own; only ciphertext is stored.
//     The first chunk is sniffed on arrival, so a wrong type is refused before more is sent.
//   - Finish streams the staged chunks, decrypted and authenticated in order, through the
//     stream's pipeline (store, finish): sniffed again, hashed, scanned by clamd and encrypted
//     into the attachment's object while it flows, then recorded with its audit record and scan
//     event. Nothing is bindable or served before the verdict, exactly as for the stream.
//   - Every state lives in Postgres and the object store, so any replica serves any call; a
//     session left idle for SessionTTL is removed with its staged bytes by the clean-up job.
//
// The staged chunks cost a second write of the bytes (the stream writes them once): resuming
// the attachment's own segmented stream across calls would need the crypto package to continue
// a stream from a saved header and segment index, which it does not offer. Finish must read
// every byte anyway, for the scan.

// UploadProgress is what a caller learns of an upload session: its id (the attachment's), how
// many bytes were received (where the next chunk starts), the declared size, and — once it is
// finished — the attachment.
type UploadProgress struct {
	ID           string
	State        domain.SessionState
	NextOffset   int64
	DeclaredSize int64
	// Attachment is the finished upload; nil while the session is open or finishing.
	Attachment *domain.Attachment
}

// stageAAD binds a staged chunk to its upload and its place in the file, so a chunk moved to
// another upload or offset fails authentication when Finish reads it.
func stageAAD(uploadID string, offset int64) []byte {
	return crypto.BindAAD("securemsg.attachment.upload_chunk.v1", uploadID, strconv.FormatInt(offset, 10))
}

// randomPrefix is a staged chunks' name prefix that says nothing about the file.
func randomPrefix() string {
	return "stage/" + randomName()[len("obj/"):] + "/"
}

// CreateUploadSession opens a resumable upload for req, checked as an upload stream's metadata
// is. A retried create with the same client request id returns the session (or, finished, the
// upload) it made; a different upload under the same id is ALREADY_EXISTS.
func (s *Service) CreateUploadSession(ctx context.Context, p *auth.Principal, req UploadRequest) (*UploadProgress, error) {
	name, err := s.checkUpload(req)
	if err != nil {
		return nil, err
	}
	if prev, err := s.replaySession(ctx, p, req, name); prev != nil || err != nil {
		return prev, err
	}
	a := newUpload(p, req)
	if _, err := s.checkAttach(ctx, p, a); err != nil {
		return nil, err
	}
	dek, err := s.keys.NewDEK(ctx, s.cfg.KeyName)
	if err != nil {
		return nil, keyErr(err)
	}
	defer clear(dek.Plaintext)
	a.WrappedDEK = dek.Wrapped
	// The name is sealed now, under the attachment's own key, so it is never stored in clear
	// while the session waits for its chunks.
	sealer, err := crypto.NewRecordSealer(dek.Plaintext, a.ID)
	if err != nil {
		return nil, err
	}
	if a.FileNameSealed, err = sealer.SealRecord([]byte(name), fileNameAAD(a.ID)); err != nil {
		return nil, err
	}
	sess := &domain.UploadSession{ID: a.ID, UploaderSubject: p.Subject, StagePrefix: randomPrefix()}
	if err := s.sessions.CreateSession(ctx, a, sess, s.cfg.Limits.QuotaBytes); err != nil {
		if errors.Is(err, usererr.ErrAlreadyExists) {
			// A concurrent retry with the same client request id won the race.
			if prev, rerr := s.replaySession(ctx, p, req, name); prev != nil || rerr != nil {
				return prev, rerr
			}
		}
		return nil, s.dbFail(err)
	}
	return &UploadProgress{ID: a.ID, State: sess.State, DeclaredSize: a.SizeBytes}, nil
}

// replaySession answers a create retried with a client request id used before: that upload's
// session, or the finished upload; ALREADY_EXISTS when the id was used for another upload or a
// streamed upload; nil, nil when the id is new.
func (s *Service) replaySession(ctx context.Context, p *auth.Principal, req UploadRequest, name string) (*UploadProgress, error) {
	if req.ClientRequestID == "" {
		return nil, nil
	}
	prev, err := s.attachments.AttachmentByRequest(ctx, p.Subject, req.ClientRequestID)
	if err != nil || prev == nil {
		return nil, s.dbFail(err)
	}
	reused := usererr.New(usererr.AlreadyExists, "CLIENT_REQUEST_ID_REUSED", "client_request_id was already used for another upload")
	if prev.SizeBytes != req.DeclaredSize || prev.DeclaredMediaType != req.DeclaredMediaType || prev.AADThreadID != req.ThreadID {
		return nil, reused
	}
	if prev.State.Visible() {
		prev.FileName = name
		return &UploadProgress{ID: prev.ID, State: domain.SessionClosed, NextOffset: prev.SizeBytes, DeclaredSize: prev.SizeBytes, Attachment: prev}, nil
	}
	sess, err := s.sessions.Session(ctx, prev.ID)
	if errors.Is(err, usererr.ErrNotFound) || (err == nil && sess.State == domain.SessionClosed) {
		return nil, reused // a streamed upload still running, or a session given up
	}
	if err != nil {
		return nil, s.dbFail(err)
	}
	return progressOf(sess, prev), nil
}

func progressOf(sess *domain.UploadSession, a *domain.Attachment) *UploadProgress {
	return &UploadProgress{ID: sess.ID, State: sess.State, NextOffset: sess.NextOffset, DeclaredSize: a.SizeBytes}
}

// ownSession loads upload id and its attachment row for p, its uploader. Anyone else's upload
// is not found (and the attempt audited); so is an upload that is neither a session nor a
// finished upload. The session is nil for a finished upload whose session is gone.
func (s *Service) ownSession(ctx context.Context, p *auth.Principal, id string) (*domain.UploadSession, *domain.Attachment, error) {
	if err := checkUUIDAs("upload_id", id, domain.ErrUploadNotFound); err != nil {
		return nil, nil, err
	}
	a, err := s.attachments.Attachment(ctx, id)
	if errors.Is(err, usererr.ErrNotFound) {
		return nil, nil, domain.ErrUploadNotFound
	}
	if err != nil {
		return nil, nil, s.dbFail(err)
	}
	if a.UploaderSubject != p.Subject {
		s.deny(ctx, p, a, domain.Access{}, "not_uploader")
		return nil, nil, domain.ErrUploadNotFound
	}
	sess, err := s.sessions.Session(ctx, id)
	switch {
	case errors.Is(err, usererr.ErrNotFound):
		if !a.State.Visible() {
			return nil, nil, domain.ErrUploadNotFound // a streamed upload in progress
		}
		return nil, a, nil
	case err != nil:
		return nil, nil, s.dbFail(err)
	}
	return sess, a, nil
}

// progress answers for a session and its row: finished once the row is visible.
func (s *Service) progress(ctx context.Context, sess *domain.UploadSession, a *domain.Attachment) (*UploadProgress, error) {
	if a.State.Visible() {
		if err := s.openStoredName(ctx, a); err != nil {
			return nil, err
		}
		return &UploadProgress{ID: a.ID, State: domain.SessionClosed, NextOffset: a.SizeBytes, DeclaredSize: a.SizeBytes, Attachment: a}, nil
	}
	if sess == nil || sess.State == domain.SessionClosed {
		return nil, domain.ErrUploadNotFound
	}
	return progressOf(sess, a), nil
}

// openStoredName decrypts a's sealed file name for its uploader.
func (s *Service) openStoredName(ctx context.Context, a *domain.Attachment) error {
	if a.WrappedDEK == "" {
		return nil
	}
	dek, err := s.keys.OpenDEK(ctx, s.cfg.KeyName, a.WrappedDEK)
	if err != nil {
		return keyErr(err)
	}
	defer clear(dek)
	return s.openName(a, dek)
}

// UploadSessionStatus tells the uploader where upload id stands: the next offset to send, or
// the finished attachment.
func (s *Service) UploadSessionStatus(ctx context.Context, p *auth.Principal, id string) (*UploadProgress, error) {
	sess, a, err := s.ownSession(ctx, p, id)
	if err != nil {
		return nil, err
	}
	return s.progress(ctx, sess, a)
}

// AppendUploadChunk stores data as the bytes of upload id at offset. A chunk at the next offset
// is sealed into a staged object and recorded; a repeat of a chunk already received (same
// offset, length and bytes) changes nothing and succeeds, so a retried call is harmless; any
// other offset is refused with the expected one (domain.OffsetMismatchError). A first chunk
// whose sniffed type is refused ends the session.
func (s *Service) AppendUploadChunk(ctx context.Context, p *auth.Principal, id string, offset int64, data []byte) (*UploadProgress, error) {
	sess, a, err := s.ownSession(ctx, p, id)
	if err != nil {
		return nil, err
	}
	if err := domain.CheckChunk(offset, len(data), a.SizeBytes); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	if sess == nil || sess.State != domain.SessionOpen || offset != sess.NextOffset {
		return s.notNext(ctx, sess, a, offset, data, sum[:])
	}
	if offset == 0 {
		if _, err := s.media.Sniff(data[:min(len(data), domain.SniffBytes)], a.DeclaredMediaType); err != nil {
			s.logger.InfoContext(ctx, "upload session refused by file-type control", slog.String("attachment_id", a.ID))
			s.endSession(ctx, sess, a)
			return nil, err
		}
	}
	dek, err := s.keys.OpenDEK(ctx, s.cfg.KeyName, a.WrappedDEK)
	if err != nil {
		return nil, keyErr(err)
	}
	defer clear(dek)
	c := domain.Chunk{Offset: offset, Length: int64(len(data)), SHA256: sum[:],
		ObjectName: sess.StagePrefix + fmt.Sprintf("%016x-", offset) + randomName()[len("obj/"):]}
	if err := s.stageChunk(ctx, a.ID, c, dek, data); err != nil {
		return nil, err
	}
	ok, err := s.sessions.AppendChunk(ctx, a.ID, c, s.now())
	if err == nil && !ok {
		err = errNotAppended
	}
	if err != nil {
		// The staged object is not the session's: a concurrent append of this offset won, the
		// session was closed, or the database failed. It goes now; what a failure here leaves,
		// the session's clean-up removes by prefix.
		cctx, cancel := cleanupCtx(ctx)
		if rerr := s.objects.Remove(cctx, c.ObjectName); rerr != nil {
			s.logger.WarnContext(ctx, "unrecorded staged chunk not removed; the session's clean-up will", slog.String("attachment_id", a.ID), slog.String("error", rerr.Error()))
		}
		cancel()
		if !errors.Is(err, errNotAppended) {
			return nil, s.dbFail(err)
		}
		if sess, err = s.sessions.Session(ctx, a.ID); err != nil {
			return nil, s.dbFail(err)
		}
		return s.notNext(ctx, sess, a, offset, data, sum[:])
	}
	sess.NextOffset += c.Length
	return progressOf(sess, a), nil
}

// errNotAppended says AppendChunk found the session no longer taking that offset.
var errNotAppended = errors.New("upload session moved on")

// notNext answers a chunk that is not the session's next: a duplicate of a chunk received
// succeeds without a change, anything else is refused with the state that refuses it.
func (s *Service) notNext(ctx context.Context, sess *domain.UploadSession, a *domain.Attachment, offset int64, data, sum []byte) (*UploadProgress, error) {
	if a.State.Visible() || sess == nil {
		return nil, usererr.New(usererr.FailedPrecondition, "UPLOAD_FINISHED", "the upload is finished; it takes no more chunks")
	}
	switch sess.State {
	case domain.SessionClosed:
		return nil, domain.ErrUploadNotFound
	case domain.SessionFinishing:
		return nil, usererr.New(usererr.FailedPrecondition, "UPLOAD_FINISHING", "the upload is being finished; it takes no more chunks")
	}
	if offset < sess.NextOffset {
		prev, err := s.sessions.ChunkAt(ctx, a.ID, offset)
		if err != nil {
			return nil, s.dbFail(err)
		}
		if prev != nil && prev.Length == int64(len(data)) && bytes.Equal(prev.SHA256, sum) {
			return progressOf(sess, a), nil
		}
	}
	return nil, domain.NewOffsetMismatch(offset, sess.NextOffset)
}

// stageChunk seals data into the staged object c names, streaming: the ciphertext is written
// to the object store as it is sealed, never held whole.
func (s *Service) stageChunk(ctx context.Context, uploadID string, c domain.Chunk, dek, data []byte) error {
	pr, pw := io.Pipe()
	sealed := make(chan struct{})
	go func() {
		defer close(sealed)
		enc, err := crypto.NewStreamWriter(pw, dek, stageAAD(uploadID, c.Offset))
		if err == nil {
			_, err = enc.Write(data)
		}
		if err == nil {
			err = enc.Close()
		}
		pw.CloseWithError(err) // nil: EOF for the reader
	}()
	err := s.objects.Put(ctx, c.ObjectName, pr, crypto.CiphertextSize(c.Length))
	pr.CloseWithError(errStoreStopped) // release the sealer if the store stopped early
	<-sealed                           // data and dek are the caller's again only once the sealer is done
	return err
}

// FinishUploadSession completes upload id once every declared byte was received: the staged
// chunks flow, decrypted in order, through the upload pipeline (sniff, hash, scan, encrypt,
// record) and are then removed. The answer is the stored attachment, as UploadAttachment's
// (PENDING when the scanner could not answer, refused when it found malware). Finishing a
// finished upload returns it again.
func (s *Service) FinishUploadSession(ctx context.Context, p *auth.Principal, id string) (*domain.Attachment, error) {
	sess, a, err := s.ownSession(ctx, p, id)
	if err != nil {
		return nil, err
	}
	if a.State.Visible() {
		if err := s.openStoredName(ctx, a); err != nil {
			return nil, err
		}
		return a, nil
	}
	switch {
	case sess.State == domain.SessionClosed:
		return nil, domain.ErrUploadNotFound
	case sess.NextOffset != a.SizeBytes:
		return nil, usererr.Newf(usererr.FailedPrecondition, "UPLOAD_INCOMPLETE", "received %d of the declared %d bytes", sess.NextOffset, a.SizeBytes)
	}
	now := s.now()
	claimed, err := s.sessions.ClaimFinish(ctx, a.ID, now, now.Add(-s.cfg.FinishLease))
	if err != nil {
		return nil, s.dbFail(err)
	}
	if !claimed {
		return nil, usererr.New(usererr.Aborted, "UPLOAD_FINISHING", "the upload is being finished by another call; ask for its status")
	}
	stored, err := s.finishSession(ctx, p, sess, a)
	if err != nil && retryable(err) {
		if rerr := s.sessions.ReleaseFinish(context.WithoutCancel(ctx), a.ID); rerr != nil {
			s.logger.WarnContext(ctx, "upload session finish not released; it is taken over after the lease", slog.String("attachment_id", a.ID), slog.String("error", rerr.Error()))
		}
		return nil, err
	}
	// Finished, or refused for good (malware, wrong type, revoked access, damaged staging):
	// the session is over either way and its staged chunks go.
	s.closeStaging(ctx, sess, a, err != nil && !a.State.Visible())
	return stored, err
}

// retryable reports a failure a second Finish may mend: a dependency down, the caller gone.
func retryable(err error) bool {
	return errors.Is(err, usererr.ErrUnavailable) || errors.Is(err, usererr.ErrCanceled) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// finishSession runs the upload pipeline over the staged chunks of a claimed session.
func (s *Service) finishSession(ctx context.Context, p *auth.Principal, sess *domain.UploadSession, a *domain.Attachment) (*domain.Attachment, error) {
	// Access is asked again: it may have been revoked while the chunks were sent.
	acc, err := s.checkAttach(ctx, p, a)
	if err != nil {
		return nil, err
	}
	chunks, err := s.sessions.Chunks(ctx, a.ID)
	if err != nil {
		return nil, s.dbFail(err)
	}
	dek, err := s.keys.OpenDEK(ctx, s.cfg.KeyName, a.WrappedDEK)
	if err != nil {
		return nil, keyErr(err)
	}
	defer clear(dek)
	if err := s.openName(a, dek); err != nil {
		return nil, err
	}
	body := &stagedReader{ctx: ctx, s: s, id: a.ID, chunks: chunks, dek: dek}
	defer body.close()
	verdict, scanErr, err := s.store(ctx, a, dek, body, committedRow)
	if err != nil {
		// Nothing of the attachment's object may stay; the row stays Uploading for a retry or
		// goes with the session.
		cctx, cancel := cleanupCtx(ctx)
		if rerr := s.objects.Remove(cctx, a.ObjectName); rerr != nil {
			s.logger.WarnContext(ctx, "failed finish: object not removed; clean-up will retry", slog.String("attachment_id", a.ID), slog.String("error", rerr.Error()))
		}
		cancel()
		if body.err != nil {
			return nil, body.err
		}
		return nil, err
	}
	a.CreateTime = s.now() // an attachment is created when its upload completes
	return s.finish(ctx, p, a, acc, dek, verdict, scanErr)
}

// committedRow stands for the row insert of a session, committed when the session was created:
// the pipeline's gate lets the object's last byte through at once.
var committedRow = func() *rowInsert {
	r := &rowInsert{done: make(chan struct{})}
	close(r.done)
	return r
}()

// stagedReader reads a session's staged chunks in offset order, each decrypted and
// authenticated, opening one at a time: memory stays one segment and one read window whatever
// the file size. A chunk that is missing, out of place or fails authentication ends the read
// with a DataLoss error.
type stagedReader struct {
	ctx    context.Context
	s      *Service
	id     string
	chunks []domain.Chunk
	dek    []byte
	next   int64 // the offset the next chunk must start at
	cur    io.Reader
	obj    domain.Object
	err    error
}

func (r *stagedReader) Read(p []byte) (int, error) {
	for {
		if r.err != nil {
			return 0, r.err
		}
		if r.cur != nil {
			n, err := r.cur.Read(p)
			if err == io.EOF {
				r.close()
				err = nil
			}
			if err != nil {
				r.err = stagedErr(err)
			}
			if n > 0 || r.err != nil {
				return n, r.err
			}
			continue
		}
		if len(r.chunks) == 0 {
			return 0, io.EOF
		}
		if err := r.open(r.chunks[0]); err != nil {
			r.err = err
			return 0, err
		}
		r.chunks = r.chunks[1:]
	}
}

// open starts reading chunk c.
func (r *stagedReader) open(c domain.Chunk) error {
	if c.Offset != r.next {
		return usererr.New(usererr.DataLoss, "STAGED_UPLOAD_INCOMPLETE", "the upload's staged chunks do not cover the file")
	}
	obj, err := r.s.objects.Open(r.ctx, c.ObjectName, domain.ReadHint{Size: crypto.CiphertextSize(c.Length), Tail: streamTail})
	if err != nil {
		if errors.Is(err, usererr.ErrNotFound) {
			return usererr.Wrap(usererr.DataLoss, "STAGED_CHUNK_MISSING", "a staged chunk of the upload is missing", err)
		}
		return err
	}
	sr, err := crypto.NewStreamReader(obj, obj.Size(), r.dek, stageAAD(r.id, c.Offset))
	if err == nil && sr.Size() != c.Length {
		err = fmt.Errorf("staged chunk holds %d bytes, recorded %d: %w", sr.Size(), c.Length, crypto.ErrNotAuthentic)
	}
	if err != nil {
		release(obj)
		return stagedErr(err)
	}
	r.obj, r.cur, r.next = obj, sr, c.Offset+c.Length
	return nil
}

// stagedErr maps a failure reading a staged chunk: one that fails authentication is damaged
// staging, which no retry mends.
func stagedErr(err error) error {
	if errors.Is(err, crypto.ErrNotAuthentic) || errors.Is(err, crypto.ErrUnsupportedVersion) {
		return usererr.Wrap(usererr.DataLoss, "STAGED_CHUNK_NOT_AUTHENTIC", "a staged chunk of the upload failed authentication", err)
	}
	return objectErr(err)
}

// close releases the chunk being read.
func (r *stagedReader) close() {
	if r.obj != nil {
		release(r.obj)
		r.obj, r.cur = nil, nil
	}
}

// CancelUploadSession gives up upload id: its staged bytes and its row go, its quota is freed.
// A cancelled upload is gone (NOT_FOUND); a finished one is deleted with DeleteAttachment.
func (s *Service) CancelUploadSession(ctx context.Context, p *auth.Principal, id string) error {
	sess, a, err := s.ownSession(ctx, p, id)
	if err != nil {
		return err
	}
	if a.State.Visible() {
		return usererr.New(usererr.FailedPrecondition, "UPLOAD_FINISHED", "the upload is finished; delete the attachment instead")
	}
	if sess.State == domain.SessionFinishing && !sess.UpdateTime.Before(s.now().Add(-s.cfg.FinishLease)) {
		return usererr.New(usererr.FailedPrecondition, "UPLOAD_FINISHING", "the upload is being finished; it can no longer be cancelled")
	}
	s.endSession(ctx, sess, a)
	return nil
}

// endSession ends a session whose upload will not complete: closed first (no call appends or
// finishes it any more), then its staged chunks, its object and its row are removed. What fails
// here, the clean-up job finishes (a closed session is stale at once).
func (s *Service) endSession(ctx context.Context, sess *domain.UploadSession, a *domain.Attachment) {
	cctx, cancel := cleanupCtx(ctx)
	defer cancel()
	if _, err := s.sessions.CloseSession(cctx, sess.ID, time.Time{}); err != nil {
		s.logger.WarnContext(ctx, "upload session not closed; clean-up will retry", slog.String("attachment_id", a.ID), slog.String("error", err.Error()))
		return
	}
	s.closeStaging(ctx, sess, a, true)
}

// closeStaging removes a closed session's staged chunks and then the session; with
// removeUpload also the never-completed upload's object and row. Failures are left to the
// clean-up job.
func (s *Service) closeStaging(ctx context.Context, sess *domain.UploadSession, a *domain.Attachment, removeUpload bool) {
	cctx, cancel := cleanupCtx(ctx)
	defer cancel()
	if _, err := s.sessions.CloseSession(cctx, sess.ID, time.Time{}); err != nil {
		s.logger.WarnContext(ctx, "upload session not closed; clean-up will retry", slog.String("attachment_id", a.ID), slog.String("error", err.Error()))
		return
	}
	if err := s.removeSession(cctx, sess, a, removeUpload); err != nil {
		s.logger.WarnContext(ctx, "upload session not removed; clean-up will retry", slog.String("attachment_id", a.ID), slog.String("error", err.Error()))
	}
}

// removeSession deletes a closed session's staged chunks, with removeUpload the upload's object
// and Uploading row (a is nil when the row is gone), and then the session itself.
func (s *Service) removeSession(ctx context.Context, sess *domain.UploadSession, a *domain.Attachment, removeUpload bool) error {
	if _, err := s.objects.RemovePrefix(ctx, sess.StagePrefix); err != nil {
		return err
	}
	if removeUpload && a != nil && a.State == domain.StateUploading {
		if err := s.objects.Remove(ctx, a.ObjectName); err != nil {
			return err
		}
		if err := s.attachments.DeleteAttachment(ctx, a.ID, nil); err != nil {
			return s.dbFail(err)
		}
	}
	return s.dbFail(s.sessions.DeleteSession(ctx, sess.ID))
}

// cleanUpSessions removes up to limit sessions that are closed or were abandoned (idle for
// SessionTTL): staged chunks, the never-completed upload's object and row, the session. It
// returns how many it removed.
func (s *Service) cleanUpSessions(ctx context.Context, limit int) (int, error) {
	cutoff := s.now().Add(-s.cfg.SessionTTL)
	stale, err := s.sessions.StaleSessions(ctx, cutoff, limit)
	if err != nil {
		return 0, s.dbFail(err)
	}
	n := 0
	for _, sess := range stale {
		// Closed under the row's lock only if still idle: a chunk that just arrived keeps it.
		closed, err := s.sessions.CloseSession(ctx, sess.ID, cutoff)
		if err != nil {
			return n, s.dbFail(err)
		}
		if !closed {
			continue
		}
		a, err := s.attachments.Attachment(ctx, sess.ID)
		if errors.Is(err, usererr.ErrNotFound) {
			a, err = nil, nil
		}
		if err != nil {
			return n, s.dbFail(err)
		}
		if err := s.removeSession(ctx, sess, a, true); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
