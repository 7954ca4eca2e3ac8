// Package messagingclient asks the messaging service, over mTLS as service "attachment",
// whether a person may act on a message or thread (CheckMessageAccess), and caches positive
// answers briefly. Denials are never cached, so a revoked grant takes effect on the next call;
// a cached allow lives at most TTL (30 s by default), well inside a token's lifetime.
package messagingclient

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// Client implements domain.AccessChecker over a MessagingService connection.
type Client struct {
	api   messagingv1.MessagingServiceClient
	cache *expirable.LRU[string, domain.Access]
	// Timeout bounds one call.
	Timeout time.Duration
}

// New returns a client over conn caching up to size positive answers for ttl (0: no cache).
func New(conn grpc.ClientConnInterface, size int, ttl time.Duration) *Client {
	c := &Client{api: messagingv1.NewMessagingServiceClient(conn), Timeout: 5 * time.Second}
	if ttl > 0 && size > 0 {
		c.cache = expirable.NewLRU[string, domain.Access](size, nil, ttl)
	}
	return c
}

// CheckAccess asks messaging whether p may perform action on the message (when messageID is
// set) or the thread. Messaging's NOT_FOUND becomes ErrNotFound, an unreachable messaging
// ErrUnavailable; a denial is an answer (Allowed false), not an error.
func (c *Client) CheckAccess(ctx context.Context, p *auth.Principal, t domain.AccessTarget) (domain.Access, error) {
	req := &messagingv1.CheckMessageAccessRequest{Principal: p.ToProto(), Action: action(t.Action)}
	if t.MessageID != "" {
		req.Target = &messagingv1.CheckMessageAccessRequest_MessageId{MessageId: t.MessageID}
	} else {
		req.Target = &messagingv1.CheckMessageAccessRequest_ThreadId{ThreadId: t.ThreadID}
	}
	key := ""
	if c.cache != nil {
		key = cacheKey(req)
		if a, ok := c.cache.Get(key); ok {
			return a, nil
		}
	}
	cctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	resp, err := c.api.CheckMessageAccess(cctx, req)
	if err != nil {
		switch status.Code(err) {
		case codes.NotFound:
			return domain.Access{}, usererr.New(usererr.NotFound, "MESSAGE_NOT_FOUND", "message or thread not found")
		case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Canceled:
			return domain.Access{}, usererr.Wrap(usererr.Unavailable, "MESSAGING_UNAVAILABLE", "messaging service unavailable", err)
		}
		return domain.Access{}, usererr.Wrap(usererr.Unavailable, "MESSAGING_UNAVAILABLE", "messaging access check failed", err)
	}
	a := domain.Access{
		Allowed:     resp.GetAllowed(),
		ReasonCode:  resp.GetReasonCode(),
		ThreadID:    resp.GetThreadId(),
		PoolID:      resp.GetPoolId(),
		PatientID:   resp.GetPatientId(),
		Sensitivity: resp.GetSensitivity(),
		BreakGlass:  resp.GetBreakGlass(),
	}
	// Break-the-glass answers are not cached: each such access is audited on its own merits.
	if c.cache != nil && a.Allowed && !a.BreakGlass {
		c.cache.Add(key, a)
	}
	return a, nil
}

// Purge drops every cached answer (tests; an operator revoking access in a hurry).
func (c *Client) Purge() {
	if c.cache != nil {
		c.cache.Purge()
	}
}

func action(a domain.AccessAction) messagingv1.AccessAction {
	switch a {
	case domain.AccessRead:
		return messagingv1.AccessAction_ACCESS_ACTION_READ
	case domain.AccessDownload:
		return messagingv1.AccessAction_ACCESS_ACTION_DOWNLOAD
	case domain.AccessAttach:
		return messagingv1.AccessAction_ACCESS_ACTION_ATTACH
	}
	return messagingv1.AccessAction_ACCESS_ACTION_UNSPECIFIED
}

// cacheKey hashes the whole request — principal (roles, grants, pools, auth time), target and
// action — so an answer is reused only for exactly the same question.
func cacheKey(req *messagingv1.CheckMessageAccessRequest) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
