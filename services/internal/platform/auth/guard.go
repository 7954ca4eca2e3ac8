package auth

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// UnauthenticatedMessage is the only message a caller ever sees for a missing or bad credential,
// whatever the reason: the reason goes to the audit record and the log.
const UnauthenticatedMessage = "missing or invalid credentials"

// ErrUnauthenticated is the refusal every authentication failure returns: Unauthenticated with
// reason CREDENTIALS_INVALID, whatever the cause (which goes to the audit record and the log).
var ErrUnauthenticated error = usererr.New(usererr.Unauthenticated, "CREDENTIALS_INVALID", UnauthenticatedMessage)

// TokenVerifier is what the guard needs from a Verifier (tests substitute their own).
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (*Principal, error)
}

// Admission decides whether a verified person may call at all, whatever the token says, and
// returns the principal the call proceeds with (package directory: deactivated people and
// unregistered client applications are refused; pools and proxy grants are the stored ones).
// A refusal is a *usererr.Error (PermissionDenied, or Unavailable while it cannot decide).
type Admission interface {
	Admit(p *Principal, now time.Time) (*Principal, error)
}

// Guard authenticates every rpc: a Bearer token in the `authorization` metadata makes a person
// principal; without one, a verified mTLS client certificate with a SPIFFE service id makes a
// service principal; anything else is Unauthenticated. It implements the grpcserver Guard method
// set; the server bypasses guards for health and reflection.
type Guard struct {
	verifier  TokenVerifier
	admission Admission
	recorder  DecisionRecorder
	logger    *slog.Logger
	now       func() time.Time
}

// GuardOption configures a Guard.
type GuardOption func(*Guard)

// WithRecorder records every authentication failure as a denial.
func WithRecorder(r DecisionRecorder) GuardOption { return func(g *Guard) { g.recorder = r } }

// WithAdmission checks every verified person against a: relayed tokens too, so a service
// acting for a person cannot carry a deactivated one past it.
func WithAdmission(a Admission) GuardOption { return func(g *Guard) { g.admission = a } }

// WithLogger sets the logger for refusals (reason codes only, never tokens).
func WithLogger(l *slog.Logger) GuardOption { return func(g *Guard) { g.logger = l } }

// NewGuard returns an authentication guard using v.
func NewGuard(v TokenVerifier, opts ...GuardOption) *Guard {
	g := &Guard{verifier: v, logger: slog.Default(), now: time.Now}
	for _, o := range opts {
		o(g)
	}
	return g
}

// Authenticate returns ctx carrying the caller's Principal, or ErrUnauthenticated.
func (g *Guard) Authenticate(ctx context.Context, fullMethod string) (context.Context, error) {
	svc, isService := PeerService(ctx)
	raw, present, ok := bearer(ctx)
	if !ok {
		return nil, g.refuse(ctx, fullMethod, ReasonMalformed)
	}
	if present {
		p, err := g.verifier.Verify(ctx, raw)
		if err != nil {
			reason := ReasonSignature
			if te, ok := err.(*TokenError); ok {
				reason = te.Reason
			}
			return nil, g.refuse(ctx, fullMethod, reason)
		}
		if isService {
			// Verify may return a Principal shared with other requests (the verified-token
			// cache): never modify it in place.
			relayed := *p
			relayed.Via = svc
			p = &relayed
		}
		if g.admission != nil {
			admitted, err := g.admission.Admit(p, g.now())
			if err != nil {
				return nil, g.refuseAdmission(ctx, fullMethod, p, err)
			}
			p = admitted
		}
		return WithPrincipal(ctx, p), nil
	}
	if isService {
		return WithPrincipal(ctx, &Principal{Kind: KindService, Subject: "service:" + svc, Service: svc}), nil
	}
	return nil, g.refuse(ctx, fullMethod, ReasonMissing)
}

// bearer extracts the token: present=false when there is no authorization header, ok=false when
// the header is malformed (several values, or not a Bearer token).
func bearer(ctx context.Context) (raw string, present, ok bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	switch len(vals) {
	case 0:
		return "", false, true
	case 1:
	default:
		return "", true, false
	}
	scheme, tok, found := strings.Cut(vals[0], " ")
	if !found || !strings.EqualFold(scheme, "bearer") || tok == "" {
		return "", true, false
	}
	return strings.TrimSpace(tok), true, true
}

func (g *Guard) refuse(ctx context.Context, fullMethod string, reason Reason) error {
	g.logger.LogAttrs(ctx, slog.LevelInfo, "authentication refused",
		slog.String("method", fullMethod), slog.String("reason_code", string(reason)))
	if g.recorder != nil {
		rec := NewRecord(ctx, nil, g.now())
		rec.Action = fullMethod
		rec.RecordType = "rpc"
		rec.Outcome = OutcomeDenied
		rec.ReasonCode = "unauthenticated:" + string(reason)
		if err := g.recorder.RecordDecision(ctx, rec); err != nil {
			g.logger.LogAttrs(ctx, slog.LevelWarn, "record authentication refusal failed", slog.String("error", err.Error()))
		}
	}
	return ErrUnauthenticated
}

// refuseAdmission logs and records a directory refusal of a verified person, against that
// person, and returns it as the caller's error.
func (g *Guard) refuseAdmission(ctx context.Context, fullMethod string, p *Principal, err error) error {
	reason := "ADMISSION_REFUSED"
	var ue *usererr.Error
	if errors.As(err, &ue) {
		reason = ue.ReasonOf()
	}
	g.logger.LogAttrs(ctx, slog.LevelInfo, "admission refused",
		slog.String("method", fullMethod), slog.String("reason_code", reason))
	if g.recorder != nil {
		rec := NewRecord(ctx, p, g.now())
		rec.Action = fullMethod
		rec.RecordType = "rpc"
		rec.Outcome = OutcomeDenied
		rec.ReasonCode = "directory:" + reason
		if rerr := g.recorder.RecordDecision(ctx, rec); rerr != nil {
			g.logger.LogAttrs(ctx, slog.LevelWarn, "record admission refusal failed", slog.String("error", rerr.Error()))
		}
	}
	return err
}

// UnaryServerInterceptor authenticates unary rpcs.
func (g *Guard) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := g.Authenticate(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor authenticates streaming rpcs once, when the stream opens.
func (g *Guard) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := g.Authenticate(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &ContextStream{ServerStream: ss, Ctx: ctx})
	}
}

// ContextStream is a grpc.ServerStream with a replaced context, for stream interceptors that
// add values (the principal, the policy cache).
type ContextStream struct {
	grpc.ServerStream
	Ctx context.Context
}

// Context returns the replaced context.
func (s *ContextStream) Context() context.Context { return s.Ctx }
