package ports

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwt"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/app"
)

// WatchInbox implements messagingv1.MessagingServiceServer: it streams the caller's watch
// until the caller leaves or its token expires. The stream's memory is the watch's bounded
// buffer plus what HTTP/2 flow control lets the transport hold: a client that stops reading
// blocks Send, its watch overflows and it gets a resync once it reads again.
func (h *Handler) WatchInbox(_ *messagingv1.WatchInboxRequest, stream grpc.ServerStreamingServer[messagingv1.WatchInboxResponse]) error {
	ctx := stream.Context()
	p, err := principal(ctx)
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
// branches on to fetch a fresh token and reconnect. usererr has no Unauthenticated kind (the
// guard chain answers every other authentication failure), hence the status built here.
var errTokenExpired = func() error {
	st := status.New(codes.Unauthenticated, "the access token expired; reconnect with a fresh token")
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: "TOKEN_EXPIRED", Domain: usererr.Domain}); err == nil {
		st = d
	}
	return st.Err()
}()

func watchError(err error) error {
	if errors.Is(err, app.ErrWatchExpired) {
		return errTokenExpired
	}
	return err
}

// tokenExpiry reads the exp claim of the bearer token the guard chain verified for this call
// (auth.Principal keeps it private). The token is not verified again: an unverified token
// never reaches a handler.
func tokenExpiry(ctx context.Context) (time.Time, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) != 1 {
		return time.Time{}, errTokenExpired
	}
	scheme, raw, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return time.Time{}, errTokenExpired
	}
	tok, err := jwt.ParseInsecure([]byte(strings.TrimSpace(raw)))
	if err != nil {
		return time.Time{}, errTokenExpired
	}
	exp, ok := tok.Expiration()
	if !ok {
		return time.Time{}, errTokenExpired
	}
	return exp, nil
}
