package ratelimit_test

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/auth/authtest"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver/grpctest"
	"github.com/securemsg/securemsg/services/internal/platform/logging"
	"github.com/securemsg/securemsg/services/internal/platform/ratelimit"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

const pingMethod = "/securemsg.test.v1.Ping/Ping"

// pingDesc is a service whose one rpc does nothing: what is measured is the guard chain.
var pingDesc = grpc.ServiceDesc{
	ServiceName: "securemsg.test.v1.Ping",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Ping",
		Handler: func(_ any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := &emptypb.Empty{}
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(context.Context, any) (any, error) { return &emptypb.Empty{}, nil }
			return interceptor(ctx, in, &grpc.UnaryServerInfo{FullMethod: pingMethod}, h)
		},
	}},
}

// replica is one server of a service, built as daemon builds one: a grpcserver with TLS, the
// authentication guard and then the rate limiter, on its own listener.
func replica(t *testing.T, pki *grpctest.PKI, verifier auth.TokenVerifier, limits ratelimit.Config) *grpc.ClientConn {
	t.Helper()
	limiter := newLimiter(t, limits)
	srv, err := grpcserver.New(pki.ServerConfig(false),
		grpcserver.WithLogger(logging.New(&grpctest.LogBuffer{}, slog.LevelInfo)),
		grpcserver.WithGuards(auth.NewGuard(verifier), limiter))
	if err != nil {
		t.Fatal(err)
	}
	srv.GRPC().RegisterService(&pingDesc, struct{}{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The server outlives t.Context(), which ends before cleanups run.
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		stop()
		if err := testkit.Receive(t, served, 10*time.Second, "Serve() to return after cancel"); err != nil {
			t.Errorf("Serve() after cancel = %v, want nil", err)
		}
	})
	tlsConf := pki.ClientTLS(false)
	tlsConf.ServerName = grpctest.ServerName
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(tlsConf)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// hammer calls every replica from two goroutines each, until perReplica calls were made to each
// or window has passed, and counts the admitted calls per replica. Any refusal but the limit's
// fails the test.
func hammer(t *testing.T, token string, replicas []*grpc.ClientConn, perReplica int, window time.Duration) (admitted []int64, elapsed time.Duration) {
	t.Helper()
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+token)
	admitted = make([]int64, len(replicas))
	made := make([]atomic.Int64, len(replicas))
	var wg sync.WaitGroup
	began := time.Now()
	for i, conn := range replicas {
		for range 2 {
			wg.Go(func() {
				for time.Since(began) < window && made[i].Add(1) <= int64(perReplica) {
					err := conn.Invoke(ctx, pingMethod, &emptypb.Empty{}, &emptypb.Empty{})
					switch status.Code(err) {
					case codes.OK:
						atomic.AddInt64(&admitted[i], 1)
					case codes.ResourceExhausted:
					default:
						t.Errorf("replica %d: call = %v, want OK or ResourceExhausted", i, err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	return admitted, time.Since(began)
}

// TestSharedLimitAcrossReplicas runs two replicas of one service against one limit: with Redis
// the sum of the calls they admit is held to the limit; with per-process buckets (the control,
// and the behaviour before Redis) each admits the whole limit, twice it in all.
func TestSharedLimitAcrossReplicas(t *testing.T) {
	t.Parallel()
	iss := authtest.NewIssuer(t)
	verifier, err := auth.NewVerifier(t.Context(), auth.VerifierConfig{Issuer: iss.URL, Audience: authtest.Audience})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = verifier.Close(context.Background()) })
	token := iss.Mint(t, iss.Claims("u-pat-1", "patient"))
	pki := grpctest.NewPKI(t)

	t.Run("burst", func(t *testing.T) {
		t.Parallel()
		// One token per 100s: only the burst can be admitted while the test runs.
		const burst, perReplica = 10, 30
		tests := []struct {
			name   string
			shared bool
			want   int64
		}{
			{"redis: the sum is held to the burst", true, burst},
			{"per process: each replica admits the burst", false, 2 * burst},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				limits := ratelimit.Config{PerPrincipal: ratelimit.Limit{Rate: 0.01, Burst: burst}}
				if tt.shared {
					limits.RedisURL, limits.Scope = redisURL(t), uniqueScope(t)
					limits = reliable(limits)
				}
				replicas := []*grpc.ClientConn{replica(t, pki, verifier, limits), replica(t, pki, verifier, limits)}
				admitted, _ := hammer(t, token, replicas, perReplica, 10*time.Second)
				total := admitted[0] + admitted[1]
				t.Logf("admitted %d + %d = %d of %d calls; burst %d", admitted[0], admitted[1], total, 2*perReplica, burst)
				if total != tt.want {
					t.Errorf("admitted %d calls across two replicas, want %d", total, tt.want)
				}
			})
		}
	})

	t.Run("redis: the sum is held to the rate", func(t *testing.T) {
		t.Parallel()
		const rate, burst = 40, 5
		limits := reliable(ratelimit.Config{PerPrincipal: ratelimit.Limit{Rate: rate, Burst: burst}, RedisURL: redisURL(t), Scope: uniqueScope(t)})
		replicas := []*grpc.ClientConn{replica(t, pki, verifier, limits), replica(t, pki, verifier, limits)}
		admitted, elapsed := hammer(t, token, replicas, 2000, 700*time.Millisecond)
		total := admitted[0] + admitted[1]
		limit := burst + rate*elapsed.Seconds()
		t.Logf("admitted %d + %d = %d calls in %s; limit %.1f (burst %d + %d/s)", admitted[0], admitted[1], total, elapsed.Round(time.Millisecond), limit, burst, rate)
		// Above the limit (+1: a token may fall due as the window closes) is the failure this
		// test is for; below it only a loaded machine stalling the callers, so the floor is the
		// burst and half the refill.
		if float64(total) > limit+1 || float64(total) < burst+rate*elapsed.Seconds()/2 {
			t.Errorf("admitted %d calls across two replicas in %s, want at most %.1f (burst + rate × time), not twice it", total, elapsed, limit)
		}
		if admitted[0] == 0 || admitted[1] == 0 {
			t.Errorf("admitted %v per replica, want both to admit calls", admitted)
		}
	})
}
