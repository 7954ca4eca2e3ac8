// Package ports is the attachment service's gRPC edge: it decodes requests, takes the caller
// from the context (the guard chain has already authenticated it and run the rpc-level policy),
// calls the use cases with domain values and encodes their answers. Errors are returned as the
// use cases made them: a usererr.Error carries its own gRPC status (code, PHI-free message,
// ErrorInfo reason), and the server's error interceptor masks anything else.
package ports

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/app"
	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// MaxChunkBytes is the largest upload chunk and the size of download chunks.
//
// Clients should send uploads in chunks of exactly this size (the last one shorter): per byte,
// fewer and larger messages cost the least on both ends, and the server's per-stream flow-
// control window is one chunk (wire.ServerOptions). Downloads need no client settings: the
// messages stay below gRPC's default 4 MiB receive limit, and grpc-go's default receive window
// grows with the connection's bandwidth-delay product (fixed windows measured no faster here).
// The service's own tests and benchmarks use exactly that.
const MaxChunkBytes = 1 << 20

// downloadChunk is how much plaintext one download message carries: the largest a message may,
// since per-message costs (framing, a send, a receive, an allocation in most clients) are
// paid per chunk; 1 MiB took ~8 % less CPU per byte than 256 KiB, end to end. The buffers are
// pooled and released as soon as gRPC has written them (ChunkCodec).
const downloadChunk = MaxChunkBytes

// Handler implements attachmentv1.AttachmentServiceServer over the use cases.
type Handler struct {
	attachmentv1.UnimplementedAttachmentServiceServer
	app *app.Service
}

// NewHandler returns the gRPC handler of svc's use cases.
func NewHandler(svc *app.Service) *Handler { return &Handler{app: svc} }

func principal(ctx context.Context) (*auth.Principal, error) {
	p, ok := auth.FromContext(ctx)
	if !ok || p == nil {
		return nil, status.Error(codes.Unauthenticated, "no authenticated caller")
	}
	return p, nil
}

// UploadAttachment receives metadata, then chunks.
func (h *Handler) UploadAttachment(stream grpc.ClientStreamingServer[attachmentv1.UploadAttachmentRequest, attachmentv1.UploadAttachmentResponse]) error {
	ctx := stream.Context()
	p, err := principal(ctx)
	if err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return usererr.New(usererr.InvalidArgument, "METADATA_MISSING", "the stream ended before the metadata")
		}
		return streamErr(ctx, err)
	}
	md := first.GetMetadata()
	if md == nil {
		return usererr.New(usererr.InvalidArgument, "METADATA_NOT_FIRST", "the first message must be metadata")
	}
	a, err := h.app.Upload(ctx, p, app.UploadRequest{
		FileName: md.GetFileName(), DeclaredMediaType: md.GetDeclaredMediaType(),
		DeclaredSize: md.GetDeclaredSizeBytes(), ThreadID: md.GetThreadId(), ClientRequestID: md.GetClientRequestId(),
	}, &chunkReader{stream: stream})
	if err != nil {
		return err
	}
	return stream.SendAndClose(&attachmentv1.UploadAttachmentResponse{Attachment: toProto(a)})
}

// chunkReader reads the chunks of an upload stream as an io.Reader, one message at a time.
type chunkReader struct {
	stream grpc.ClientStreamingServer[attachmentv1.UploadAttachmentRequest, attachmentv1.UploadAttachmentResponse]
	buf    []byte
	// held is the whole chunk buf is a suffix of, given back to the pool when consumed.
	held []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		releaseChunk(r.held)
		r.held = nil
		msg, err := r.stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0, io.EOF
			}
			return 0, streamErr(r.stream.Context(), err)
		}
		if msg.GetMetadata() != nil {
			return 0, usererr.New(usererr.InvalidArgument, "METADATA_REPEATED", "metadata may be sent only once, first")
		}
		// A chunk over MaxChunkBytes never gets here: the request rules refuse it
		// (CHUNK_TOO_LARGE) as the stream delivers it.
		r.buf, r.held = msg.GetChunk(), msg.GetChunk()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// streamErr maps a receive failure: the client going away is a cancellation.
func streamErr(ctx context.Context, err error) error {
	if ctx.Err() != nil || status.Code(err) == codes.Canceled {
		return usererr.Wrap(usererr.Canceled, "UPLOAD_CANCELLED", "the upload was cancelled", err)
	}
	return err
}

// DownloadAttachment streams the metadata, then the plaintext in chunks.
func (h *Handler) DownloadAttachment(req *attachmentv1.DownloadAttachmentRequest, stream grpc.ServerStreamingServer[attachmentv1.DownloadAttachmentResponse]) error {
	ctx := stream.Context()
	p, err := principal(ctx)
	if err != nil {
		return err
	}
	d, err := h.app.OpenDownload(ctx, p, req.GetAttachmentId(), req.GetOffset(), req.GetLength())
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }() // read-only: whatever was sent is sent
	if err := stream.Send(&attachmentv1.DownloadAttachmentResponse{Attachment: toProto(d.Attachment), Offset: d.Offset}); err != nil {
		return err
	}
	return sendChunks(d, func(chunk []byte, off int64) error {
		return stream.Send(&attachmentv1.DownloadAttachmentResponse{Chunk: chunk, Offset: off})
	})
}

// GetAttachment returns metadata.
func (h *Handler) GetAttachment(ctx context.Context, req *attachmentv1.GetAttachmentRequest) (*attachmentv1.GetAttachmentResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	a, err := h.app.GetAttachment(ctx, p, req.GetAttachmentId())
	if err != nil {
		return nil, err
	}
	return &attachmentv1.GetAttachmentResponse{Attachment: toProto(a)}, nil
}

// DeleteAttachment deletes a draft.
func (h *Handler) DeleteAttachment(ctx context.Context, req *attachmentv1.DeleteAttachmentRequest) (*attachmentv1.DeleteAttachmentResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.app.DeleteAttachment(ctx, p, req.GetAttachmentId()); err != nil {
		return nil, err
	}
	return &attachmentv1.DeleteAttachmentResponse{}, nil
}

// BindAttachment binds to a message (messaging only).
func (h *Handler) BindAttachment(ctx context.Context, req *attachmentv1.BindAttachmentRequest) (*attachmentv1.BindAttachmentResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	a, err := h.app.BindAttachment(ctx, p, app.BindRequest{
		AttachmentID: req.GetAttachmentId(), ThreadID: req.GetThreadId(), MessageID: req.GetMessageId(), UploaderSubject: req.GetUploaderSubject(),
	})
	if err != nil {
		return nil, err
	}
	// The file name stays sealed: messaging does not need it to bind.
	return &attachmentv1.BindAttachmentResponse{Attachment: toProto(a)}, nil
}

// PurgeAttachments purges threads' attachments (messaging only).
func (h *Handler) PurgeAttachments(ctx context.Context, req *attachmentv1.PurgeAttachmentsRequest) (*attachmentv1.PurgeAttachmentsResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	res, err := h.app.PurgeAttachments(ctx, p, req.GetThreadIds(), req.GetReasonCode(), req.GetDryRun())
	if err != nil {
		return nil, err
	}
	return &attachmentv1.PurgeAttachmentsResponse{AttachmentsPurged: res.Attachments, BytesPurged: res.Bytes}, nil
}

func toProto(a *domain.Attachment) *attachmentv1.Attachment {
	out := &attachmentv1.Attachment{
		AttachmentId: a.ID, ThreadId: a.ThreadID, MessageId: a.MessageID, UploaderSubject: a.UploaderSubject,
		FileName: a.FileName, DeclaredMediaType: a.DeclaredMediaType, MediaType: a.MediaType,
		SizeBytes: a.SizeBytes, Sha256: a.SHA256, ScanState: scanState(a.State),
		CreateTime: timestamppb.New(a.CreateTime),
	}
	if !a.ScanTime.IsZero() {
		out.ScanTime = timestamppb.New(a.ScanTime)
	}
	if !a.BindTime.IsZero() {
		out.BindTime = timestamppb.New(a.BindTime)
	}
	return out
}

func scanState(s domain.State) attachmentv1.ScanState {
	switch s {
	case domain.StatePending:
		return attachmentv1.ScanState_SCAN_STATE_PENDING
	case domain.StateClean:
		return attachmentv1.ScanState_SCAN_STATE_CLEAN
	case domain.StateInfected:
		return attachmentv1.ScanState_SCAN_STATE_INFECTED
	case domain.StateFailed:
		return attachmentv1.ScanState_SCAN_STATE_FAILED
	}
	return attachmentv1.ScanState_SCAN_STATE_UNSPECIFIED
}
