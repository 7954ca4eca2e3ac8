// Package attachmentclient is the messaging service's adapter to the attachment service: it
// binds uploads to messages and purges a thread's files, over mTLS as service "messaging",
// and turns the attachment service's answers into messaging's refusals.
package attachmentclient

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	"github.com/securemsg/securemsg/services/internal/platform/config"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// Client implements domain.Attachments over gRPC.
type Client struct {
	conn *grpc.ClientConn
	api  attachmentv1.AttachmentServiceClient
}

var _ domain.Attachments = (*Client)(nil)

// Dial returns a client for the attachment service described by cfg (mTLS with the messaging
// service's certificate). It connects on first use.
func Dial(cfg config.Client) (*Client, error) {
	conn, err := grpcserver.Dial(cfg)
	if err != nil {
		return nil, fmt.Errorf("dial attachment service: %w", err)
	}
	return New(conn), nil
}

// New wraps an existing connection.
func New(conn *grpc.ClientConn) *Client {
	return &Client{conn: conn, api: attachmentv1.NewAttachmentServiceClient(conn)}
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Bind implements domain.Attachments.
func (c *Client) Bind(ctx context.Context, attachmentID, threadID, messageID, uploader string) (domain.BoundAttachment, error) {
	resp, err := c.api.BindAttachment(ctx, &attachmentv1.BindAttachmentRequest{
		AttachmentId: attachmentID, ThreadId: threadID, MessageId: messageID, UploaderSubject: uploader,
	})
	if err != nil {
		return domain.BoundAttachment{}, mapError(err, attachmentID)
	}
	a := resp.GetAttachment()
	return domain.BoundAttachment{
		ID: a.GetAttachmentId(), ThreadID: a.GetThreadId(), MessageID: a.GetMessageId(),
		UploaderSubject: a.GetUploaderSubject(), Clean: a.GetScanState() == attachmentv1.ScanState_SCAN_STATE_CLEAN,
	}, nil
}

// Purge implements domain.Attachments.
func (c *Client) Purge(ctx context.Context, threadIDs []string, reasonCode string) (int64, error) {
	resp, err := c.api.PurgeAttachments(ctx, &attachmentv1.PurgeAttachmentsRequest{ThreadIds: threadIDs, ReasonCode: reasonCode})
	if err != nil {
		return 0, mapError(err, "")
	}
	return resp.GetAttachmentsPurged(), nil
}

// mapError turns the attachment service's status into messaging's own refusal, whose message
// names only the attachment id (never a file name): a peer's answer is translated here, at the
// edge it came in through, not passed on as if it were ours.
func mapError(err error, attachmentID string) error {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.NotFound:
		return usererr.Newf(usererr.NotFound, "ATTACHMENT_NOT_FOUND", "attachment %s not found", attachmentID)
	case codes.FailedPrecondition:
		return usererr.Newf(usererr.FailedPrecondition, "ATTACHMENT_NOT_BINDABLE",
			"attachment %s cannot be attached (infected, failed scan, or bound elsewhere)", attachmentID)
	case codes.InvalidArgument:
		return usererr.Newf(usererr.InvalidArgument, "ATTACHMENT_REFUSED", "attachment %s was refused by the attachment service", attachmentID)
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return usererr.Wrap(usererr.Unavailable, "ATTACHMENT_SERVICE_UNAVAILABLE", "attachment service unavailable; try again later", err)
	}
	// Not wrapped: the peer's status must not reach our caller as if it were ours.
	return fmt.Errorf("attachment service answered %s", st.Code())
}
