package app

import (
	"context"
	"errors"
	"io"

	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/crypto"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// Download is an opened download: the attachment's metadata and a reader of the requested
// plaintext range. Read errors wrapping ErrDataLoss mean the stored object failed
// authentication; no byte past the last verified segment is ever returned.
type Download struct {
	Attachment *domain.Attachment
	Offset     int64
	Length     int64
	body       io.Reader
	obj        domain.Object
}

// Read reads plaintext, mapping authentication failures to ErrDataLoss.
func (d *Download) Read(p []byte) (int, error) {
	n, err := d.body.Read(p)
	if err != nil && err != io.EOF {
		err = objectErr(err)
	}
	return n, err
}

// Close releases the object.
func (d *Download) Close() error { return d.obj.Close() }

// objectErr maps a failure reading or decrypting an object.
func objectErr(err error) error {
	switch {
	case isUserErr(err):
		return err
	case errors.Is(err, crypto.ErrNotAuthentic), errors.Is(err, crypto.ErrUnsupportedVersion),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return domain.NotAuthentic("the stored attachment failed authentication", err)
	}
	return err
}

// OpenDownload authorises and audits a download of [offset, offset+length) (length 0: to the
// end) and opens it. The audit record is committed before OpenDownload returns, so before any
// byte can be read (fail closed); the object store is opened meanwhile.
func (s *Service) OpenDownload(ctx context.Context, p *auth.Principal, id string, offset, length int64) (*Download, error) {
	return s.OpenDownloadRange(ctx, p, id, domain.ByteRange{Offset: offset, Length: length})
}

// OpenDownloadRange is OpenDownload for any domain.ByteRange, a suffix included; a range that
// starts at or beyond the end is a domain.RangeNotSatisfiableError, which states the size.
func (s *Service) OpenDownloadRange(ctx context.Context, p *auth.Principal, id string, rng domain.ByteRange) (*Download, error) {
	if err := checkUUID(id); err != nil {
		return nil, err
	}
	if err := rng.Check(); err != nil {
		return nil, err
	}
	a, acc, err := s.readable(ctx, p, id, domain.AccessDownload)
	if err != nil {
		return nil, err
	}
	if a.State != domain.StateClean {
		return nil, usererr.Newf(usererr.FailedPrecondition, "ATTACHMENT_NOT_CLEAN", "the attachment is not available: its malware scan is %s", a.State)
	}
	offset, length, err := rng.Resolve(a.SizeBytes)
	if err != nil {
		return nil, err
	}
	// The object store's first round trips run while the key is opened and the audit record
	// commits: fetching ciphertext serves nothing, and no byte leaves before the commit.
	opening := s.openObject(ctx, a)
	dek, err := s.keys.OpenDEK(ctx, s.cfg.KeyName, a.WrappedDEK)
	if err != nil {
		opening.discard()
		return nil, keyErr(err)
	}
	if err := s.openName(a, dek); err != nil {
		opening.discard()
		return nil, err
	}
	var opts []auditlog.RecordOption
	if (offset != 0 || length != a.SizeBytes) && !acc.BreakGlass {
		opts = append(opts, auditlog.Reason("range")) // break-the-glass keeps its own reason
	}
	if err := s.audit(ctx, p, eventsv1.Action_ACTION_DOWNLOAD, a, acc, opts...); err != nil {
		opening.discard()
		return nil, s.dbFail(err)
	}
	obj, err := opening.wait()
	if err != nil {
		if errors.Is(err, usererr.ErrNotFound) {
			return nil, usererr.Wrap(usererr.DataLoss, "STORED_ATTACHMENT_MISSING", "the stored attachment is missing", err)
		}
		return nil, err
	}
	if obj.Size() != a.ObjectSize {
		release(obj)
		return nil, errWrongSize
	}
	r, err := crypto.NewStreamReader(obj, obj.Size(), dek, streamAAD(a))
	if err != nil {
		release(obj)
		return nil, objectErr(err)
	}
	if r.Size() != a.SizeBytes {
		release(obj)
		return nil, errWrongSize
	}
	body, err := r.Range(offset, length)
	if err != nil {
		release(obj)
		return nil, objectErr(err)
	}
	return &Download{Attachment: a, Offset: offset, Length: length, body: body, obj: obj}, nil
}

// errWrongSize is returned for an object whose size is not the one recorded at upload.
var errWrongSize = usererr.New(usererr.DataLoss, "STORED_ATTACHMENT_WRONG_SIZE", "the stored attachment has the wrong size")

// isUserErr reports whether err already says what the caller is told.
func isUserErr(err error) bool {
	k, _ := usererr.KindOf(err)
	return k != 0
}

// streamTail is how many bytes at the end of an object hold its last segment, at most: what a
// stream reader authenticates right after the header.
var streamTail = crypto.CiphertextSize(crypto.DefaultSegmentSize) - crypto.StreamHeaderSize

// readHint is what a stream reader over a's object reads first.
func readHint(a *domain.Attachment) domain.ReadHint {
	return domain.ReadHint{Size: a.ObjectSize, Tail: streamTail}
}

// objectOpening is an object store Open running in the background.
type objectOpening struct {
	done chan struct{}
	obj  domain.Object
	err  error
}

// openObject starts opening a's object.
func (s *Service) openObject(ctx context.Context, a *domain.Attachment) *objectOpening {
	o := &objectOpening{done: make(chan struct{})}
	go func() {
		defer close(o.done)
		o.obj, o.err = s.objects.Open(ctx, a.ObjectName, readHint(a))
	}()
	return o
}

// release closes an object that is no longer needed. It was opened for reading only, so a
// failed close loses nothing.
func release(obj domain.Object) { _ = obj.Close() }

// wait returns the opened object.
func (o *objectOpening) wait() (domain.Object, error) {
	<-o.done
	return o.obj, o.err
}

// discard closes the object once it is open, without waiting for it.
func (o *objectOpening) discard() {
	go func() {
		if obj, err := o.wait(); err == nil {
			release(obj)
		}
	}()
}

// GetAttachment returns an attachment's metadata (with its file name) to a caller who may
// read it, auditing the read of the (PHI) file name.
func (s *Service) GetAttachment(ctx context.Context, p *auth.Principal, id string) (*domain.Attachment, error) {
	if err := checkUUID(id); err != nil {
		return nil, err
	}
	a, acc, err := s.readable(ctx, p, id, domain.AccessRead)
	if err != nil {
		return nil, err
	}
	if a.WrappedDEK != "" {
		dek, err := s.keys.OpenDEK(ctx, s.cfg.KeyName, a.WrappedDEK)
		if err != nil {
			return nil, keyErr(err)
		}
		if err := s.openName(a, dek); err != nil {
			return nil, err
		}
	}
	if p.Kind != auth.KindService {
		if err := s.audit(ctx, p, eventsv1.Action_ACTION_READ, a, acc); err != nil {
			return nil, s.dbFail(err)
		}
	}
	return a, nil
}

// readable loads an attachment callers may know about (not uploading, not deleted) that p may
// act on with action (authorize), with messaging's answer.
func (s *Service) readable(ctx context.Context, p *auth.Principal, id string, action domain.AccessAction) (*domain.Attachment, domain.Access, error) {
	a, err := s.attachments.Attachment(ctx, id)
	if err != nil {
		return nil, domain.Access{}, s.dbFail(err)
	}
	if !a.State.Visible() {
		return nil, domain.Access{}, domain.ErrAttachmentNotFound
	}
	acc, err := s.authorize(ctx, p, a, action)
	if err != nil {
		return nil, domain.Access{}, err
	}
	return a, acc, nil
}

// openName decrypts a's sealed file name into a.FileName.
func (s *Service) openName(a *domain.Attachment, dek []byte) error {
	if len(a.FileNameSealed) == 0 {
		return nil
	}
	sealer, err := crypto.NewRecordSealer(dek, a.ID)
	if err != nil {
		return err
	}
	name, err := sealer.OpenRecord(a.FileNameSealed, fileNameAAD(a.ID))
	if err != nil {
		return domain.NotAuthentic("the attachment's file name failed authentication", err)
	}
	a.FileName = string(name)
	return nil
}

func checkUUID(id string) error {
	return checkUUIDAs("attachment_id", id, domain.ErrAttachmentNotFound)
}

// checkUUIDAs refuses an empty id in field, and answers notFound for one that is not a UUID:
// no such record can exist.
func checkUUIDAs(field, id string, notFound error) error {
	if id == "" {
		return usererr.New(usererr.InvalidArgument, "FIELD_REQUIRED", field+" is required")
	}
	if _, err := uuidParse(id); err != nil {
		return notFound
	}
	return nil
}
