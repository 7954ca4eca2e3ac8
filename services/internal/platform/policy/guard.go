package policy

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// Fixed messages callers see; the deciding policies go to the audit record only.
const (
	PermissionDeniedMessage = "permission denied"
	NotRecordedMessage      = "access could not be recorded; try again later"
)

// ActionForMethod maps a full gRPC method name to its policy action and service:
// "/securemsg.messaging.v1.MessagingService/GetThread" → ("messaging.GetThread", "messaging").
// Methods outside the securemsg.<service>.v1 packages map to nothing and are denied.
func ActionForMethod(fullMethod string) (action, service string, ok bool) {
	svcFull, rpc, found := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !found || rpc == "" || strings.Contains(rpc, "/") {
		return "", "", false
	}
	parts := strings.Split(svcFull, ".")
	if len(parts) != 4 || parts[0] != "securemsg" || parts[2] != "v1" || parts[1] == "" || !strings.HasSuffix(parts[3], "Service") {
		return "", "", false
	}
	return parts[1] + "." + rpc, parts[1], true
}

// Guard is the rpc-level check: it runs after the authentication guard and asks the policies
// whether the principal may call the rpc at all (role, OAuth scope, MFA, freshness, proxy grant
// present). It implements the grpcserver Guard method set.
type Guard struct{ e *Engine }

// Guard returns the rpc-level interceptor pair for e.
func (e *Engine) Guard() *Guard { return &Guard{e: e} }

// Check authorises fullMethod for the principal in ctx and returns ctx with the principal's
// policy entity cached for the record-level checks of the same request. req is the request
// message (nil when it has not arrived yet, as when a client stream opens): a refusal is
// recorded against the record it names (TargetOf).
func (g *Guard) Check(ctx context.Context, fullMethod string, req any) (context.Context, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil, auth.ErrUnauthenticated
	}
	e := g.e
	now := e.now()
	pe := principalEntityFor(p)
	action, service, known := ActionForMethod(fullMethod)
	var d Decision
	if known {
		d = e.evaluate(e.cur.Load(), pe, p, action, APIResource(service), Context{}, now)
	} else {
		action, d = fullMethod, Decision{Reasons: []string{"unknown_rpc"}}
	}
	if !d.Allowed {
		// Only denials are recorded here. An allowed PHI read is recorded by the use case's
		// record-level check, naming the record it touched, in the same transaction as the read
		// (and refused there when it cannot be recorded): an rpc-level record would say less and
		// cost each read a second commit.
		var target *Target
		if t, ok := TargetOf(action, req); ok {
			target = &t
		}
		if _, err := e.record(ctx, p, action, APIResource(service), target, d, now); err != nil {
			return nil, usererr.New(usererr.Unavailable, "AUDIT_UNAVAILABLE", NotRecordedMessage)
		}
		return nil, usererr.New(usererr.PermissionDenied, "POLICY_DENIED", PermissionDeniedMessage)
	}
	return withPrincipalEntity(ctx, pe), nil
}

// UnaryServerInterceptor checks unary rpcs.
func (g *Guard) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := g.Check(ctx, info.FullMethod, req)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor checks streaming rpcs. A server stream's one request message is read
// before the handler runs, so its check waits for that message and a refusal names the record
// it asked for; a client (or bidirectional) stream is checked when it opens.
func (g *Guard) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if info.IsServerStream && !info.IsClientStream {
			return handler(srv, &checkOnRequest{ServerStream: ss, g: g, method: info.FullMethod, ctx: ss.Context()})
		}
		ctx, err := g.Check(ss.Context(), info.FullMethod, nil)
		if err != nil {
			return err
		}
		return handler(srv, &auth.ContextStream{ServerStream: ss, Ctx: ctx})
	}
}

// checkOnRequest runs the rpc-level check when a server stream's request arrives; the handler
// gets nothing from the stream before the check allowed it.
type checkOnRequest struct {
	grpc.ServerStream
	g       *Guard
	method  string
	ctx     context.Context
	checked bool
}

func (s *checkOnRequest) Context() context.Context { return s.ctx }

func (s *checkOnRequest) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if s.checked {
		return nil
	}
	ctx, err := s.g.Check(s.ctx, s.method, m)
	if err != nil {
		return err
	}
	s.ctx, s.checked = ctx, true
	return nil
}

// SendMsg refuses to send before the check ran: a handler that answers without reading the
// request is a programming error, never a way around the guard.
func (s *checkOnRequest) SendMsg(m any) error {
	if !s.checked {
		return status.Error(codes.Internal, "stream answered before its request was checked")
	}
	return s.ServerStream.SendMsg(m)
}
