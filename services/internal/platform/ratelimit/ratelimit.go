// Package ratelimit limits request rates per principal and per client app as a gRPC guard. A
// refused call gets ResourceExhausted with a google.rpc.RetryInfo detail saying when to retry.
//
// The buckets live in one of two stores, with the same limits and the same refusal:
//
//   - in the process (token buckets from golang.org/x/time/rate in bounded LRU maps), when
//     Config.RedisURL is unset. Each replica then admits the whole limit on its own, so a
//     caller spread over N replicas gets N times the limit.
//   - in Redis (GCRA, github.com/go-redis/redis_rate), shared by every replica with the same
//     Config.Scope, so the limit holds across replicas. When Redis cannot answer within
//     Config.StoreTimeout, Config.Failure decides: FailOpen falls back to the per-process
//     buckets, FailClosed refuses with Unavailable (see FailureMode).
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

// FailureMode is what a Redis-backed Limiter does while Redis cannot answer.
type FailureMode string

const (
	// FailOpen decides with per-process buckets of the same limits: calls keep flowing, and a
	// caller can get up to N times its limit across N replicas until Redis answers again. It is
	// the default: for a patient messaging system an outage of the rate-limit store must not
	// become an outage of messaging, and every call is still authenticated and authorised.
	FailOpen FailureMode = "open"
	// FailClosed refuses every call with Unavailable (reason RATE_LIMIT_UNAVAILABLE) until Redis
	// answers again, for deployments where unbounded abuse costs more than the outage.
	FailClosed FailureMode = "closed"
)

// Config configures a Limiter. A zero Limit disables that dimension.
type Config struct {
	// PerPrincipal limits each subject (person or service); unauthenticated callers are keyed by IP.
	PerPrincipal Limit
	// PerClient limits each OAuth client app (client_id), across all its users.
	PerClient Limit
	// MaxKeys bounds each per-process map; the least recently seen keys are evicted (default
	// 100000). An evicted key restarts with a full bucket, which only ever errs towards letting a
	// request in after long inactivity.
	MaxKeys int
	// Recorder, if set, records refusals as denials (reason "rate_limited", or
	// "rate_limit_unavailable" when failing closed).
	Recorder auth.DecisionRecorder
	// Now is the clock of the per-process buckets and of the store's back-off (default
	// time.Now). Redis buckets use Redis's own clock, so every replica sees the same time.
	Now func() time.Time

	// RedisURL, when set, keeps the buckets in Redis (redis://host:6379/N, or rediss:// for TLS)
	// so that every replica with the same Scope shares them. Unset: per-process buckets.
	RedisURL string
	// RedisCACert is the PEM file of the CA a rediss:// server's certificate chains to; empty:
	// the system roots.
	RedisCACert string
	// Scope prefixes the Redis keys: replicas of one service share it (the service name), and
	// different services keep apart limits, as they did per process.
	Scope string
	// StoreTimeout bounds the Redis calls of one decision (default 100ms), so a slow Redis
	// delays an rpc by at most that much.
	StoreTimeout time.Duration
	// StoreBackoff is how long decisions skip Redis after a failed call (default 1s): during an
	// outage each process waits out one timeout per StoreBackoff, not one per rpc.
	StoreBackoff time.Duration
	// Failure is what to do while Redis cannot answer (default FailOpen).
	Failure FailureMode
	// Logger receives the store-failure warnings, at most one per logEvery (default slog.Default()).
	Logger *slog.Logger
}

// logEvery spaces the store-failure warnings: an outage fails every rpc's call, and one line per
// rpc would bury the log.
const logEvery = 10 * time.Second

// Limiter is the rate-limit guard. It implements the grpcserver Guard method set and must run
// after the authentication guard. It is also a prometheus.Collector of
// securemsg_ratelimit_store_errors_total.
type Limiter struct {
	cfg Config
	// local holds the per-process buckets: the store itself without Redis, the fallback of
	// FailOpen with it.
	local *memoryStore
	// shared is the Redis store, nil without RedisURL.
	shared *redisStore

	storeErrors prometheus.Counter
	// skipStoreUntil (unix nanoseconds) is when decisions try Redis again after a failure.
	skipStoreUntil atomic.Int64

	logMu      sync.Mutex
	lastLog    time.Time
	unreported int
}

// New returns a Limiter. With RedisURL it does not connect yet: a Redis that is down at start
// is handled like one that goes down later, by Failure.
func New(cfg Config) (*Limiter, error) {
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.StoreTimeout == 0 {
		cfg.StoreTimeout = 100 * time.Millisecond
	}
	if cfg.StoreBackoff == 0 {
		cfg.StoreBackoff = time.Second
	}
	if cfg.Failure == "" {
		cfg.Failure = FailOpen
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var errs []error
	for name, l := range map[string]Limit{"per-principal": cfg.PerPrincipal, "per-client": cfg.PerClient} {
		if l.Rate < 0 || l.Burst < 0 || (l.Rate > 0 && l.Burst == 0) {
			errs = append(errs, errors.New("ratelimit: "+name+" limit needs a positive rate and burst"))
		}
		if cfg.RedisURL != "" && l.Rate > 0 && l.Rate < minSharedRate {
			errs = append(errs, fmt.Errorf("ratelimit: %s rate must be at least %g/s with Redis", name, minSharedRate))
		}
	}
	if cfg.Failure != FailOpen && cfg.Failure != FailClosed {
		errs = append(errs, fmt.Errorf("ratelimit: failure mode must be %q or %q, got %q", FailOpen, FailClosed, cfg.Failure))
	}
	if cfg.StoreTimeout < 0 || cfg.StoreBackoff < 0 {
		errs = append(errs, errors.New("ratelimit: store timeout and backoff must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	local, err := newMemoryStore(cfg.MaxKeys)
	if err != nil {
		return nil, err
	}
	l := &Limiter{cfg: cfg, local: local, storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "securemsg_ratelimit_store_errors_total",
		Help: "Redis calls of the rate limiter that failed or timed out; those decisions followed SECUREMSG_RATE_REDIS_FAILURE.",
	})}
	if cfg.RedisURL != "" {
		if l.shared, err = newRedisStore(cfg.RedisURL, cfg.RedisCACert, cfg.Scope, cfg.StoreTimeout); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Close releases the Redis connections; the Limiter must not be used after.
func (l *Limiter) Close() error {
	if l.shared == nil {
		return nil
	}
	return l.shared.close()
}

// Describe implements prometheus.Collector.
func (l *Limiter) Describe(ch chan<- *prometheus.Desc) { l.storeErrors.Describe(ch) }

// Collect implements prometheus.Collector.
func (l *Limiter) Collect(ch chan<- prometheus.Metric) { l.storeErrors.Collect(ch) }

// bucketKind names the two dimensions a call is limited in.
type bucketKind int

const (
	principalBucket bucketKind = iota
	clientBucket
)

// bucket is one of the caller's buckets: which dimension, whose, and its limit. Both stores'
// take(ctx, now, buckets) (ok, wait, err) take one token from every bucket of a call or, when
// any refuses, from none, and then say how long until all of them would allow it.
type bucket struct {
	kind  bucketKind
	key   string
	limit Limit
}

// decision is the outcome of one call; unavailable marks a refusal because Redis could not
// answer (FailClosed).
type decision struct {
	ok          bool
	wait        time.Duration
	unavailable bool
}

func (l *Limiter) buckets(ctx context.Context) []bucket {
	principalKey, clientKey := "", ""
	if p, ok := auth.FromContext(ctx); ok {
		principalKey, clientKey = p.Subject, p.ClientID
	} else if ip, ok := auth.PeerAddr(ctx); ok {
		principalKey = "ip:" + ip.String()
	}
	var out []bucket
	if principalKey != "" && l.cfg.PerPrincipal.Rate > 0 {
		out = append(out, bucket{kind: principalBucket, key: principalKey, limit: l.cfg.PerPrincipal})
	}
	if clientKey != "" && l.cfg.PerClient.Rate > 0 {
		out = append(out, bucket{kind: clientBucket, key: clientKey, limit: l.cfg.PerClient})
	}
	return out
}

func (l *Limiter) decide(ctx context.Context) decision {
	buckets := l.buckets(ctx)
	if len(buckets) == 0 {
		return decision{ok: true}
	}
	now := l.cfg.Now()
	if l.shared != nil {
		if retry := time.Unix(0, l.skipStoreUntil.Load()); now.Before(retry) {
			return l.withoutStore(ctx, now, buckets, retry.Sub(now))
		}
		ok, wait, err := l.shared.take(ctx, now, buckets)
		if err == nil {
			return decision{ok: ok, wait: wait}
		}
		l.storeFailed(ctx, now, err)
		return l.withoutStore(ctx, now, buckets, l.cfg.StoreBackoff)
	}
	ok, wait, _ := l.local.take(ctx, now, buckets)
	return decision{ok: ok, wait: wait}
}

// withoutStore decides while Redis is not to be asked; retryIn is how long until it is again.
func (l *Limiter) withoutStore(ctx context.Context, now time.Time, buckets []bucket, retryIn time.Duration) decision {
	if l.cfg.Failure == FailClosed {
		return decision{wait: retryIn, unavailable: true}
	}
	ok, wait, _ := l.local.take(ctx, now, buckets)
	return decision{ok: ok, wait: wait}
}

// storeFailed counts a failed Redis call, backs off from Redis and warns, at most once per
// logEvery, with how many failures the warning stands for.
func (l *Limiter) storeFailed(ctx context.Context, now time.Time, err error) {
	l.storeErrors.Inc()
	l.skipStoreUntil.Store(now.Add(l.cfg.StoreBackoff).UnixNano())
	l.logMu.Lock()
	l.unreported++
	if !l.lastLog.IsZero() && now.Sub(l.lastLog) < logEvery {
		l.logMu.Unlock()
		return
	}
	failures := l.unreported
	l.lastLog, l.unreported = now, 0
	l.logMu.Unlock()
	then := "deciding with per-process limits"
	if l.cfg.Failure == FailClosed {
		then = "refusing calls"
	}
	// The error is go-redis's (dial, timeout, script): it names the address, never a key.
	l.cfg.Logger.WarnContext(ctx, "rate-limit store unavailable; "+then,
		slog.String("error", err.Error()), slog.Int("failures", failures),
		slog.String("failure_mode", string(l.cfg.Failure)), slog.Duration("retry_in", l.cfg.StoreBackoff))
}

// Allow takes one token from the caller's principal and client buckets. When refused it
// returns how long to wait; tokens are only taken when both buckets allow. While a Redis store
// cannot answer and Failure is FailClosed, every call is refused.
func (l *Limiter) Allow(ctx context.Context) (bool, time.Duration) {
	d := l.decide(ctx)
	return d.ok, d.wait
}

func (l *Limiter) check(ctx context.Context, fullMethod string) error {
	d := l.decide(ctx)
	if d.ok {
		return nil
	}
	code, msg, reason, auditReason := codes.ResourceExhausted, "rate limit exceeded", "RATE_LIMITED", "rate_limited"
	if d.unavailable {
		// Not ResourceExhausted: the caller exceeded nothing, and Unavailable is the code clients
		// already retry with back-off.
		code, msg, reason, auditReason = codes.Unavailable, "rate limit unavailable", "RATE_LIMIT_UNAVAILABLE", "rate_limit_unavailable"
	}
	// A refusal because the store is away is no decision about the caller: it is counted and
	// logged (storeErrors), not audited, so a Redis outage in closed mode does not turn into an
	// audit write for every rpc.
	if l.cfg.Recorder != nil && !d.unavailable {
		p, _ := auth.FromContext(ctx)
		rec := auth.NewRecord(ctx, p, l.cfg.Now())
		rec.Action, rec.RecordType, rec.Outcome, rec.ReasonCode = fullMethod, "rpc", auth.OutcomeDenied, auditReason
		if err := l.cfg.Recorder.RecordDecision(ctx, rec); err != nil {
			slog.WarnContext(ctx, "record rate-limit refusal failed", slog.String("error", err.Error()))
		}
	}
	st := status.New(code, msg)
	if det, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: usererr.Domain},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(d.wait.Round(time.Millisecond))}); err == nil {
		st = det
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
