package ratelimit_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver/grpctest"
	"github.com/securemsg/securemsg/services/internal/platform/ratelimit"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// The machine's Redis (a system service, like its Postgres). These tests own database
// testRedisDB of it: flushed once per test binary, and each test keeps to a Scope of its own.
// The dev stack uses database 7.
const (
	testRedisAddr = "127.0.0.1:6379"
	testRedisDB   = 15
)

var (
	flushRedis    sync.Once
	flushRedisErr error
)

// redisURL is the tests' Redis database, flushed at the first use. Without a Redis the test ends
// through testkit.Unavailable: a skip locally, a failure under CI=true.
func redisURL(t *testing.T) string {
	t.Helper()
	testkit.RequireTCP(t, "redis", testRedisAddr)
	flushRedis.Do(func() {
		c := redis.NewClient(&redis.Options{Addr: testRedisAddr, DB: testRedisDB})
		defer func() { _ = c.Close() }() // a probe client; its close error says nothing
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		flushRedisErr = c.FlushDB(ctx).Err()
	})
	if flushRedisErr != nil {
		testkit.Unavailable(t, "redis", flushRedisErr)
	}
	return fmt.Sprintf("redis://%s/%d", testRedisAddr, testRedisDB)
}

// testRedis is a client of the tests' database, for looking at the keys the limiter wrote.
func testRedis(t *testing.T) *redis.Client {
	t.Helper()
	redisURL(t)
	c := redis.NewClient(&redis.Options{Addr: testRedisAddr, DB: testRedisDB})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// uniqueScope keeps a test's buckets apart from every other test's (and every earlier run's).
func uniqueScope(t *testing.T) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return "test-" + hex.EncodeToString(b)
}

// reliable makes cfg's Redis store report failures instead of hiding them: the machine may be
// loaded (2 cores, other tests), so the timeout is long, and a failure refuses (Unavailable,
// which the tests do not expect) rather than falling back to per-process buckets that would
// quietly admit more.
func reliable(cfg ratelimit.Config) ratelimit.Config {
	cfg.StoreTimeout, cfg.Failure = time.Second, ratelimit.FailClosed
	return cfg
}

// limiterStore is one place a Limiter keeps its buckets.
type limiterStore struct {
	name      string
	configure func(*testing.T, ratelimit.Config) ratelimit.Config
}

// stores are the per-process store and the Redis store, for tests that must hold for both.
func stores(t *testing.T) []limiterStore {
	t.Helper()
	return []limiterStore{
		{"memory", func(_ *testing.T, c ratelimit.Config) ratelimit.Config { return c }},
		{"redis", func(t *testing.T, c ratelimit.Config) ratelimit.Config {
			c.RedisURL, c.Scope = redisURL(t), uniqueScope(t)
			return reliable(c)
		}},
	}
}

func newLimiter(t *testing.T, cfg ratelimit.Config) *ratelimit.Limiter {
	t.Helper()
	l, err := ratelimit.New(cfg)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// closedPortURL is a Redis URL where nothing listens: connections are refused at once.
func closedPortURL(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return "redis://" + addr + "/0"
}

// hangingURL is a Redis URL whose server accepts connections and never answers: a Redis too
// slow to be of use.
func hangingURL(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = lis.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return "redis://" + lis.Addr().String() + "/0"
}

// refusal reads a refused call's status: its code, ErrorInfo reason and RetryInfo delay.
func refusal(err error) (codes.Code, string, time.Duration) {
	st := status.Convert(err)
	reason, delay := "", time.Duration(-1)
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			reason = d.GetReason()
		case *errdetails.RetryInfo:
			delay = d.GetRetryDelay().AsDuration()
		}
	}
	return st.Code(), reason, delay
}

// records collects the decisions a Limiter records.
type records struct {
	mu   sync.Mutex
	recs []auth.DecisionRecord
}

func (r *records) RecordDecision(_ context.Context, rec auth.DecisionRecord) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}

func (r *records) reasons() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		out = append(out, rec.ReasonCode)
	}
	return out
}

func TestRedisLimiterRetryHint(t *testing.T) {
	t.Parallel()
	recs := &records{}
	l := newLimiter(t, reliable(ratelimit.Config{PerPrincipal: ratelimit.Limit{Rate: 0.5, Burst: 1}, Recorder: recs,
		RedisURL: redisURL(t), Scope: uniqueScope(t)}))
	ctx := ctxFor(t, "a", "web")
	if err := call(ctx, l); err != nil {
		t.Fatalf("first call = %v, want nil", err)
	}
	code, reason, delay := refusal(call(ctx, l))
	if code != codes.ResourceExhausted || reason != "RATE_LIMITED" {
		t.Fatalf("second call = %v %q, want ResourceExhausted RATE_LIMITED", code, reason)
	}
	// Redis's clock moved on between the calls (a little, unless the machine is busy): the hint
	// is 2s less that.
	if delay <= 1500*time.Millisecond || delay > 2*time.Second {
		t.Errorf("RetryInfo delay = %s, want just under 2s", delay)
	}
	if got := recs.reasons(); len(got) != 1 || got[0] != "rate_limited" {
		t.Errorf("recorded reasons = %q, want [rate_limited]", got)
	}
	if got := testutil.ToFloat64(l); got != 0 {
		t.Errorf("securemsg_ratelimit_store_errors_total = %v, want 0", got)
	}
}

// TestRedisLimiterRefill: after the hinted delay a refused caller is admitted again, not before.
func TestRedisLimiterRefill(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, reliable(ratelimit.Config{PerPrincipal: ratelimit.Limit{Rate: 5, Burst: 2}, RedisURL: redisURL(t), Scope: uniqueScope(t)}))
	ctx := ctxFor(t, "a", "web")
	for i := range 2 {
		if err := call(ctx, l); err != nil {
			t.Fatalf("burst call %d = %v, want nil", i, err)
		}
	}
	refused := time.Now()
	code, _, delay := refusal(call(ctx, l))
	if code != codes.ResourceExhausted || delay <= 0 || delay > 200*time.Millisecond {
		t.Fatalf("call after the burst = %v with delay %s, want ResourceExhausted within 200ms", code, delay)
	}
	var admitted time.Time
	testkit.WaitFor(t, 2*time.Second, "a call admitted after the hinted delay", func() bool {
		if call(ctx, l) == nil {
			admitted = time.Now()
			return true
		}
		return false
	})
	// 10ms of slack: the hint was computed on Redis's clock, a little after `refused`.
	if waited := admitted.Sub(refused); waited < delay-10*time.Millisecond {
		t.Errorf("admitted again after %s, before the hinted %s", waited, delay)
	}
}

// TestRedisLimiterHoldsRate: over a window, the calls admitted are at most the burst plus the
// rate times the window, however fast the caller calls; and tokens do come back at the rate.
func TestRedisLimiterHoldsRate(t *testing.T) {
	t.Parallel()
	const rate, burst = 20, 5
	l := newLimiter(t, reliable(ratelimit.Config{PerPrincipal: ratelimit.Limit{Rate: rate, Burst: burst}, RedisURL: redisURL(t), Scope: uniqueScope(t)}))
	ctx := ctxFor(t, "a", "web")
	began := time.Now()
	admitted, calls := 0, 0
	for time.Since(began) < 600*time.Millisecond && calls < 5000 {
		calls++
		if err := call(ctx, l); err == nil {
			admitted++
		} else if code := status.Code(err); code != codes.ResourceExhausted {
			t.Fatalf("call %d = %v, want OK or ResourceExhausted", calls, err)
		}
	}
	elapsed := time.Since(began).Seconds()
	limit := burst + rate*elapsed
	t.Logf("%d of %d calls admitted in %.3fs; limit %.1f (burst %d + %d/s)", admitted, calls, elapsed, limit, burst, rate)
	// Above the limit is the failure this test is for. Below it, only a refill that never
	// came: a loaded machine can stall the caller and leave tokens unused, so half of the
	// refill is enough.
	if float64(admitted) > limit+1 {
		t.Errorf("admitted %d calls in %.3fs, want at most %.1f", admitted, elapsed, limit+1)
	}
	if float64(admitted) < burst+rate*elapsed/2 {
		t.Errorf("admitted %d calls in %.3fs, want at least %.1f (the burst and half the refill)", admitted, elapsed, burst+rate*elapsed/2)
	}
}

// TestRedisKeysCarryNoSubject: the keys in Redis name the service and the client app, never the
// person: subjects (which may be an email address) and peer addresses are hashed.
func TestRedisKeysCarryNoSubject(t *testing.T) {
	t.Parallel()
	scope := uniqueScope(t)
	rdb := testRedis(t)
	l := newLimiter(t, reliable(ratelimit.Config{PerPrincipal: ratelimit.Limit{Rate: 1, Burst: 5}, PerClient: ratelimit.Limit{Rate: 1, Burst: 5},
		RedisURL: redisURL(t), Scope: scope}))
	const subject = "jane.doe@example.org"
	if err := call(ctxFor(t, subject, "portal-web"), l); err != nil {
		t.Fatal(err)
	}
	keys, err := rdb.Keys(t.Context(), "*"+scope+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var principal, client int
	for _, k := range keys {
		if strings.Contains(k, "jane") || strings.Contains(k, "example.org") {
			t.Errorf("key %q carries the subject", k)
		}
		switch {
		case strings.HasPrefix(k, "rate:securemsg:"+scope+":principal:"):
			principal++
		case k == "rate:securemsg:"+scope+":client:portal-web":
			client++
		}
	}
	if principal != 1 || client != 1 || len(keys) != 2 {
		t.Errorf("keys = %q, want one hashed principal key and one client key", keys)
	}
}

// TestRedisUnreachable: a Redis that refuses connections or never answers is decided by
// Failure, costs at most StoreTimeout on one call and then none while the store is skipped,
// is counted, and is logged once, not once per call.
func TestRedisUnreachable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		url     func(*testing.T) string
		failure ratelimit.FailureMode
		want    []codes.Code
	}{
		// Failing open falls back to per-process buckets of the same limit (burst 2), not to none.
		{"closed port, failing open", closedPortURL, ratelimit.FailOpen,
			[]codes.Code{codes.OK, codes.OK, codes.ResourceExhausted, codes.ResourceExhausted}},
		{"closed port, failing closed", closedPortURL, ratelimit.FailClosed,
			[]codes.Code{codes.Unavailable, codes.Unavailable, codes.Unavailable, codes.Unavailable}},
		{"no answer, failing open", hangingURL, ratelimit.FailOpen,
			[]codes.Code{codes.OK, codes.OK, codes.ResourceExhausted, codes.ResourceExhausted}},
		{"no answer, failing closed", hangingURL, ratelimit.FailClosed,
			[]codes.Code{codes.Unavailable, codes.Unavailable, codes.Unavailable, codes.Unavailable}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logs := &grpctest.LogBuffer{}
			recs := &records{}
			const timeout, backoff = 200 * time.Millisecond, 5 * time.Second
			l := newLimiter(t, ratelimit.Config{
				PerPrincipal: ratelimit.Limit{Rate: 0.01, Burst: 2}, Recorder: recs,
				RedisURL: tt.url(t), Scope: uniqueScope(t), Failure: tt.failure,
				StoreTimeout: timeout, StoreBackoff: backoff,
				Logger: slog.New(slog.NewJSONHandler(logs, nil)),
			})
			ctx := ctxFor(t, "patient-7", "portal-web")
			for i, want := range tt.want {
				began := time.Now()
				err := call(ctx, l)
				took := time.Since(began)
				code, reason, delay := refusal(err)
				if code != want {
					t.Errorf("call %d = %v, want %v", i, err, want)
				}
				// The first call waits out the timeout at most; later ones skip the store, so they
				// are quicker than the timeout (with a margin for a loaded machine).
				if limit := map[bool]time.Duration{true: timeout + 800*time.Millisecond, false: timeout * 3 / 4}[i == 0]; took > limit {
					t.Errorf("call %d took %s, want at most %s", i, took, limit)
				}
				if code == codes.Unavailable && (reason != "RATE_LIMIT_UNAVAILABLE" || delay <= 0 || delay > backoff) {
					t.Errorf("call %d refused with reason %q, retry %s; want RATE_LIMIT_UNAVAILABLE within %s", i, reason, delay, backoff)
				}
			}
			if got := testutil.ToFloat64(l); got != 1 {
				t.Errorf("securemsg_ratelimit_store_errors_total = %v, want 1 (later calls skip the store)", got)
			}
			out := logs.String()
			if n := strings.Count(out, "rate-limit store unavailable"); n != 1 {
				t.Errorf("store warnings = %d, want 1; log:\n%s", n, out)
			}
			if strings.Contains(out, "patient-7") {
				t.Errorf("the warning names the caller:\n%s", out)
			}
			// Refusals because the store is away are counted and logged, never audited: a
			// closed-mode outage must not cost an audit write per rpc.
			for _, r := range recs.reasons() {
				if r != "rate_limited" {
					t.Errorf("recorded reason %q, want only rate_limited refusals audited", r)
				}
			}
		})
	}
}

// TestRedisFailureWarningsAreSpaced: every failed call is counted, but an outage is warned about
// once per 10s with the number of failures since the last warning.
func TestRedisFailureWarningsAreSpaced(t *testing.T) {
	t.Parallel()
	logs := &grpctest.LogBuffer{}
	clk := &clock{t: time.Now()}
	l := newLimiter(t, ratelimit.Config{PerPrincipal: ratelimit.Limit{Rate: 100, Burst: 100},
		RedisURL: closedPortURL(t), Scope: uniqueScope(t), StoreBackoff: time.Millisecond, Now: clk.now,
		Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	ctx := ctxFor(t, "a", "web")
	for range 5 {
		clk.t = clk.t.Add(2 * time.Millisecond) // past the backoff: every call asks Redis
		if err := call(ctx, l); err != nil {
			t.Fatalf("call = %v, want nil (failing open)", err)
		}
	}
	if got := testutil.ToFloat64(l); got != 5 {
		t.Errorf("securemsg_ratelimit_store_errors_total = %v, want 5", got)
	}
	if n := strings.Count(logs.String(), "rate-limit store unavailable"); n != 1 {
		t.Errorf("warnings after 5 failures within 10s = %d, want 1", n)
	}
	clk.t = clk.t.Add(10 * time.Second)
	_ = call(ctx, l)
	out := logs.String()
	if n := strings.Count(out, "rate-limit store unavailable"); n != 2 || !strings.Contains(out, `"failures":5`) {
		t.Errorf("after 10s: %d warnings, want 2, the second for 5 failures; log:\n%s", n, out)
	}
}

// redisProxy forwards to the machine's Redis and can be cut off (connections refused and the
// open ones dropped), so a test can take its Redis away and give it back.
type redisProxy struct {
	addr  string
	mu    sync.Mutex
	down  bool
	conns []net.Conn
}

func newRedisProxy(t *testing.T) *redisProxy {
	t.Helper()
	redisURL(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &redisProxy{addr: lis.Addr().String()}
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			down := p.down
			p.mu.Unlock()
			if down {
				_ = c.Close()
				continue
			}
			up, err := net.Dial("tcp", testRedisAddr)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
			go func() { _, _ = io.Copy(c, up); _ = c.Close() }()
		}
	}()
	t.Cleanup(func() { _ = lis.Close(); p.setDown(true) })
	return p
}

func (p *redisProxy) url() string { return fmt.Sprintf("redis://%s/%d", p.addr, testRedisDB) }

func (p *redisProxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.conns = nil
	}
}

// TestRedisStoreRecovers: while Redis is away calls are decided by Failure; once the backoff has
// passed the limiter asks Redis again, and the buckets there are as they were.
func TestRedisStoreRecovers(t *testing.T) {
	t.Parallel()
	proxy := newRedisProxy(t)
	clk := &clock{t: time.Now()}
	l := newLimiter(t, ratelimit.Config{PerPrincipal: ratelimit.Limit{Rate: 0.01, Burst: 1}, RedisURL: proxy.url(), Scope: uniqueScope(t),
		Failure: ratelimit.FailClosed, StoreBackoff: time.Second, Now: clk.now})
	ctx := ctxFor(t, "a", "web")
	if err := call(ctx, l); err != nil {
		t.Fatalf("first call = %v, want nil", err)
	}
	proxy.setDown(true)
	if code, reason, _ := refusal(call(ctx, l)); code != codes.Unavailable || reason != "RATE_LIMIT_UNAVAILABLE" {
		t.Fatalf("call while Redis is away = %v %q, want Unavailable RATE_LIMIT_UNAVAILABLE", code, reason)
	}
	proxy.setDown(false)
	if code, _, _ := refusal(call(ctx, l)); code != codes.Unavailable {
		t.Errorf("call within the backoff = %v, want Unavailable (the store is skipped)", code)
	}
	clk.t = clk.t.Add(time.Second)
	// Redis remembers the first call's token: refused by the limit, no longer by the outage.
	if code, reason, _ := refusal(call(ctx, l)); code != codes.ResourceExhausted || reason != "RATE_LIMITED" {
		t.Errorf("call after the backoff = %v %q, want ResourceExhausted RATE_LIMITED from Redis", code, reason)
	}
	if got := testutil.ToFloat64(l); got != 1 {
		t.Errorf("securemsg_ratelimit_store_errors_total = %v, want 1", got)
	}
}

func TestNewRejectsBadStoreSettings(t *testing.T) {
	t.Parallel()
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	lim := ratelimit.Limit{Rate: 1, Burst: 1}
	tests := []struct {
		name string
		cfg  ratelimit.Config
	}{
		{"redis without a scope", ratelimit.Config{PerPrincipal: lim, RedisURL: "redis://127.0.0.1:6379/15"}},
		{"URL that does not parse", ratelimit.Config{PerPrincipal: lim, RedisURL: "http://:secret@127.0.0.1", Scope: "s"}},
		{"unknown failure mode", ratelimit.Config{PerPrincipal: lim, Failure: "ajar"}},
		{"rate too slow for redis", ratelimit.Config{PerPrincipal: ratelimit.Limit{Rate: 1e-9, Burst: 1}, RedisURL: "redis://127.0.0.1:6379/15", Scope: "s"}},
		{"CA file missing", ratelimit.Config{PerPrincipal: lim, RedisURL: "rediss://127.0.0.1:6379/15", RedisCACert: "/nonexistent/ca.pem", Scope: "s"}},
		{"CA file without certificates", ratelimit.Config{PerPrincipal: lim, RedisURL: "rediss://127.0.0.1:6379/15", RedisCACert: notPEM, Scope: "s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, err := ratelimit.New(tt.cfg)
			if err == nil {
				_ = l.Close()
				t.Fatal("New() error = nil, want an error")
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("New() error shows the URL's password: %v", err)
			}
		})
	}
}
