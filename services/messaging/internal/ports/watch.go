package ports

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/app"
)

// WatchInbox implements messagingv1.MessagingServiceServer: it streams the caller's watch
// until the caller leaves or its token expires. The stream's memory is the watch's bounded
// buffer plus what HTTP/2 flow control lets the transport hold: a client that stops reading
// blocks Send, its watch overflows and it gets a resync once it reads again.
func (h *Handler) WatchInbox(_ *messagingv1.WatchInboxRequest, stream grpc.ServerStreamingServer[messagingv1.WatchInboxResponse]) error {
	ctx := stream.Context()
	p, err := h.principal(ctx)
	if err != nil {
		return err
	}
	expires, err := tokenExpiry(ctx)
	if err != nil {
		return err
	}
	w, err := h.svc.WatchInbox(ctx, p, expires)
	if err != nil {
		return watchError(err)
	}
	defer w.Close()
	for {
		n, err := w.Next(ctx)
		if err != nil {
			return watchError(err)
		}
		if err := stream.Send(noticeProto(n)); err != nil {
			return err
		}
	}
}

func noticeProto(n app.Notice) *messagingv1.WatchInboxResponse {
	switch n.Kind {
	case app.NoticeChange:
		c := &messagingv1.InboxChange{EventId: n.Change.EventID, ThreadId: n.Change.ThreadID,
			Kind: messagingv1.InboxChangeKind(n.Change.Kind), MessageId: n.Change.MessageID}
		if !n.Change.OccurredAt.IsZero() {
			c.OccurTime = timestamppb.New(n.Change.OccurredAt)
		}
		return &messagingv1.WatchInboxResponse{Notice: &messagingv1.WatchInboxResponse_Change{Change: c}}
	case app.NoticeResync:
		return &messagingv1.WatchInboxResponse{Notice: &messagingv1.WatchInboxResponse_Resync{Resync: &messagingv1.Resync{}}}
	default:
		return &messagingv1.WatchInboxResponse{Notice: &messagingv1.WatchInboxResponse_Heartbeat{Heartbeat: &messagingv1.Heartbeat{}}}
	}
}

// errTokenExpired ends a watch whose token expired: UNAUTHENTICATED, with the reason a portal
// branches on to fetch a fresh token and reconnect.
var errTokenExpired = usererr.New(usererr.Unauthenticated, "TOKEN_EXPIRED", "the access token expired; reconnect with a fresh token")

func watchError(err error) error {
	if errors.Is(err, app.ErrWatchExpired) {
		return errTokenExpired
	}
	return err
}

// tokenExpiry is when the caller's verified token expires (the guard chain put the principal
// there); a principal without one cannot hold a watch open.
func tokenExpiry(ctx context.Context) (time.Time, error) {
	p, ok := auth.FromContext(ctx)
	if !ok || p.ExpiresAt().IsZero() {
		return time.Time{}, errTokenExpired
	}
	return p.ExpiresAt(), nil
}
