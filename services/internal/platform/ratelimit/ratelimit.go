// Package ratelimit limits request rates per principal and per client app (token buckets from
// golang.org/x/time/rate in bounded LRU maps) as a gRPC guard. A refused call gets
// ResourceExhausted with a google.rpc.RetryInfo detail saying when to retry.
package ratelimit

import (
	"context"
	"errors"
	"log/slog"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// Limit is a token bucket: Rate requests per second sustained, Burst at once.
type Limit struct {
	Rate  float64
	Burst int
}

// Config configures a Limiter. A zero Limit disables that dimension.
type Config struct {
	// PerPrincipal limits each subject (person or service); unauthenticated callers are keyed by IP.
	PerPrincipal Limit
	// PerClient limits each OAuth client app (client_id), across all its users.
	PerClient Limit
	// MaxKeys bounds each map; the least recently seen keys are evicted (default 100000). An
	// evicted key restarts with a full bucket, which only ever errs towards letting a request in
	// after long inactivity.
	MaxKeys int
	// Recorder, if set, records refusals as denials (reason "rate_limited").
	Recorder auth.DecisionRecorder
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Limiter is the rate-limit guard. It implements the grpcserver Guard method set and must run
// after the authentication guard.
type Limiter struct {
	cfg        Config
	principals *lru.Cache[string, *rate.Limiter]
	clients    *lru.Cache[string, *rate.Limiter]
}

// New returns a Limiter.
func New(cfg Config) (*Limiter, error) {
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var errs []error
	for name, l := range map[string]Limit{"per-principal": cfg.PerPrincipal, "per-client": cfg.PerClient} {
		if l.Rate < 0 || l.Burst < 0 || (l.Rate > 0 && l.Burst == 0) {
			errs = append(errs, errors.New("ratelimit: "+name+" limit needs a positive rate and burst"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	p, err := lru.New[string, *rate.Limiter](cfg.MaxKeys)
	if err != nil {
		return nil, err
	}
	c, err := lru.New[string, *rate.Limiter](cfg.MaxKeys)
	if err != nil {
		return nil, err
	}
	return &Limiter{cfg: cfg, principals: p, clients: c}, nil
}

func bucket(cache *lru.Cache[string, *rate.Limiter], key string, l Limit) *rate.Limiter {
	if lim, ok := cache.Get(key); ok {
		return lim
	}
	lim := rate.NewLimiter(rate.Limit(l.Rate), l.Burst)
	// Two first requests racing may each create a bucket; the loser's single token is lost,
	// which is harmless.
	if prev, ok, _ := cache.PeekOrAdd(key, lim); ok {
		return prev
	}
	return lim
}

// Allow takes one token from the caller's principal and client buckets. When refused it
// returns how long to wait; tokens are only taken when both buckets allow.
func (l *Limiter) Allow(ctx context.Context) (bool, time.Duration) {
	now := l.cfg.Now()
	principalKey, clientKey := "", ""
	if p, ok := auth.FromContext(ctx); ok {
		principalKey, clientKey = p.Subject, p.ClientID
	} else if ip, ok := auth.PeerAddr(ctx); ok {
		principalKey = "ip:" + ip.String()
	}
	var reservations []*rate.Reservation
	var wait time.Duration
	take := func(cache *lru.Cache[string, *rate.Limiter], key string, lim Limit) {
		if key == "" || lim.Rate == 0 {
			return
		}
		r := bucket(cache, key, lim).ReserveN(now, 1)
		if !r.OK() {
			wait = max(wait, time.Second)
			return
		}
		reservations = append(reservations, r)
		wait = max(wait, r.DelayFrom(now))
	}
	take(l.principals, principalKey, l.cfg.PerPrincipal)
	take(l.clients, clientKey, l.cfg.PerClient)
	if wait > 0 {
		for _, r := range reservations {
			r.CancelAt(now)
		}
		return false, wait
	}
	return true, 0
}

func (l *Limiter) check(ctx context.Context, fullMethod string) error {
	ok, wait := l.Allow(ctx)
	if ok {
		return nil
	}
	if l.cfg.Recorder != nil {
		p, _ := auth.FromContext(ctx)
		rec := auth.NewRecord(ctx, p, l.cfg.Now())
		rec.Action, rec.RecordType, rec.Outcome, rec.ReasonCode = fullMethod, "rpc", auth.OutcomeDenied, "rate_limited"
		if err := l.cfg.Recorder.RecordDecision(ctx, rec); err != nil {
			slog.WarnContext(ctx, "record rate-limit refusal failed", slog.String("error", err.Error()))
		}
	}
	st := status.New(codes.ResourceExhausted, "rate limit exceeded")
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: "RATE_LIMITED", Domain: usererr.Domain},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(wait.Round(time.Millisecond))}); err == nil {
		st = d
	}
	return st.Err()
}

// UnaryServerInterceptor limits unary rpcs.
func (l *Limiter) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return grpcserver.GuardFunc(l.check).UnaryServerInterceptor()
}

// StreamServerInterceptor limits the opening of streams (one token per stream).
func (l *Limiter) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return grpcserver.GuardFunc(l.check).StreamServerInterceptor()
}
