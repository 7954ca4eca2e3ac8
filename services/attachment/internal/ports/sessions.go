package ports

import (
	"context"
	"io"

	"google.golang.org/grpc"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/app"
	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// CreateUploadSession starts a resumable upload.
func (h *Handler) CreateUploadSession(ctx context.Context, req *attachmentv1.CreateUploadSessionRequest) (*attachmentv1.CreateUploadSessionResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	md := req.GetMetadata()
	prog, err := h.app.CreateUploadSession(ctx, p, app.UploadRequest{
		FileName: md.GetFileName(), DeclaredMediaType: md.GetDeclaredMediaType(),
		DeclaredSize: md.GetDeclaredSizeBytes(), ThreadID: md.GetThreadId(), ClientRequestID: md.GetClientRequestId(),
	})
	if err != nil {
		return nil, err
	}
	return &attachmentv1.CreateUploadSessionResponse{Session: sessionProto(prog)}, nil
}

// AppendUploadChunk stores a chunk of an upload session.
func (h *Handler) AppendUploadChunk(ctx context.Context, req *attachmentv1.AppendUploadChunkRequest) (*attachmentv1.AppendUploadChunkResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	prog, err := h.app.AppendUploadChunk(ctx, p, req.GetUploadId(), req.GetOffset(), req.GetData())
	// The chunk is sealed and stored, or refused: nothing holds it now (ChunkCodec pools it).
	releaseSessionChunk(req.GetData())
	req.Data = nil
	if err != nil {
		return nil, err
	}
	return &attachmentv1.AppendUploadChunkResponse{Session: sessionProto(prog)}, nil
}

// GetUploadSession reports an upload session's progress.
func (h *Handler) GetUploadSession(ctx context.Context, req *attachmentv1.GetUploadSessionRequest) (*attachmentv1.GetUploadSessionResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	prog, err := h.app.UploadSessionStatus(ctx, p, req.GetUploadId())
	if err != nil {
		return nil, err
	}
	return &attachmentv1.GetUploadSessionResponse{Session: sessionProto(prog)}, nil
}

// FinishUploadSession stores an upload session's file.
func (h *Handler) FinishUploadSession(ctx context.Context, req *attachmentv1.FinishUploadSessionRequest) (*attachmentv1.FinishUploadSessionResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	a, err := h.app.FinishUploadSession(ctx, p, req.GetUploadId())
	if err != nil {
		return nil, err
	}
	return &attachmentv1.FinishUploadSessionResponse{Attachment: toProto(a)}, nil
}

// CancelUploadSession gives an upload session up.
func (h *Handler) CancelUploadSession(ctx context.Context, req *attachmentv1.CancelUploadSessionRequest) (*attachmentv1.CancelUploadSessionResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.app.CancelUploadSession(ctx, p, req.GetUploadId()); err != nil {
		return nil, err
	}
	return &attachmentv1.CancelUploadSessionResponse{}, nil
}

func sessionProto(prog *app.UploadProgress) *attachmentv1.UploadSession {
	out := &attachmentv1.UploadSession{
		UploadId: prog.ID, NextOffset: prog.NextOffset, DeclaredSizeBytes: prog.DeclaredSize,
		MaxChunkBytes: domain.MaxSessionChunkBytes,
	}
	switch {
	case prog.Attachment != nil:
		out.State, out.Attachment = attachmentv1.UploadSessionState_UPLOAD_SESSION_STATE_FINISHED, toProto(prog.Attachment)
	case prog.State == domain.SessionFinishing:
		out.State = attachmentv1.UploadSessionState_UPLOAD_SESSION_STATE_FINISHING
	default:
		out.State = attachmentv1.UploadSessionState_UPLOAD_SESSION_STATE_OPEN
	}
	return out
}

// DownloadAttachmentContent streams the head (the attachment and the range served), then the
// plaintext in chunks.
func (h *Handler) DownloadAttachmentContent(req *attachmentv1.DownloadAttachmentContentRequest, stream grpc.ServerStreamingServer[attachmentv1.DownloadAttachmentContentResponse]) error {
	ctx := stream.Context()
	p, err := principal(ctx)
	if err != nil {
		return err
	}
	d, err := h.app.OpenDownloadRange(ctx, p, req.GetAttachmentId(), domain.ByteRange{
		Offset: req.GetOffset(), Length: req.GetLength(), Suffix: req.GetSuffixLength(),
	})
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }() // read-only: whatever was sent is sent
	head := &attachmentv1.DownloadContentHead{Attachment: toProto(d.Attachment), Offset: d.Offset, Length: d.Length}
	if err := stream.Send(&attachmentv1.DownloadAttachmentContentResponse{Part: &attachmentv1.DownloadAttachmentContentResponse_Head{Head: head}}); err != nil {
		return err
	}
	return sendChunks(d, func(chunk []byte, _ int64) error {
		err := stream.Send(&attachmentv1.DownloadAttachmentContentResponse{Part: &attachmentv1.DownloadAttachmentContentResponse_Chunk{Chunk: chunk}})
		// The standard codec has copied the chunk by the time Send returns (ChunkCodec moves
		// only DownloadAttachmentResponse without a copy), so the buffer can be reused.
		chunk = chunk[:cap(chunk)]
		downloadBuffers.p.Put(&chunk)
		return err
	})
}

// sendChunks reads d to its end in download chunks and hands each to send with its offset. A
// buffer is fresh per chunk: with ChunkCodec, gRPC writes it out without a copy and gives it
// back to the pool afterwards, so it must not be reused here.
func sendChunks(d *app.Download, send func(chunk []byte, offset int64) error) error {
	off := d.Offset
	for {
		buf := downloadBuffer()
		n, rerr := io.ReadFull(d, buf)
		if n > 0 {
			// Only authenticated bytes reach buf: the reader releases a segment after its tag
			// verified, so sending what arrived before a failure is safe.
			if err := send(buf[:n], off); err != nil {
				return err
			}
			off += int64(n)
		} else {
			downloadBuffers.Put(&buf)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			if off != d.Offset+d.Length {
				return usererr.New(usererr.DataLoss, "STORED_ATTACHMENT_TRUNCATED", "the stored attachment ended early")
			}
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
