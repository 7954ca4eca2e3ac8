package ratelimit_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/ratelimit"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func ctxFor(t *testing.T, sub, client string) context.Context {
	return auth.WithPrincipal(t.Context(), &auth.Principal{Kind: auth.KindUser, Subject: sub, ClientID: client})
}

func call(ctx context.Context, l *ratelimit.Limiter) error {
	_, err := l.UnaryServerInterceptor()(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/securemsg.messaging.v1.MessagingService/GetThread"},
		func(context.Context, any) (any, error) { return nil, nil })
	return err
}

// TestLimiter runs the same calls against each store: the limits and refusals must not depend
// on where the buckets are. Rates are slow (one token per 100s) so that Redis's real clock
// refills nothing while a case runs.
func TestLimiter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		cfg   ratelimit.Config
		calls []struct{ sub, client string }
		want  []codes.Code
	}{
		{
			name:  "per principal burst then refused",
			cfg:   ratelimit.Config{PerPrincipal: ratelimit.Limit{Rate: 0.01, Burst: 2}},
			calls: []struct{ sub, client string }{{"a", "web"}, {"a", "web"}, {"a", "web"}, {"b", "web"}},
			want:  []codes.Code{codes.OK, codes.OK, codes.ResourceExhausted, codes.OK},
		},
		{
			name:  "per client app across users",
			cfg:   ratelimit.Config{PerPrincipal: ratelimit.Limit{Rate: 100, Burst: 100}, PerClient: ratelimit.Limit{Rate: 0.01, Burst: 2}},
			calls: []struct{ sub, client string }{{"a", "web"}, {"b", "web"}, {"c", "web"}, {"c", "mobile"}},
			want:  []codes.Code{codes.OK, codes.OK, codes.ResourceExhausted, codes.OK},
		},
		{
			name: "a refused call spends no principal token",
			cfg:  ratelimit.Config{PerPrincipal: ratelimit.Limit{Rate: 0.01, Burst: 2}, PerClient: ratelimit.Limit{Rate: 0.01, Burst: 1}},
			// a's second call is refused by the client bucket; a's own bucket keeps its token, so
			// a's call on another client succeeds.
			calls: []struct{ sub, client string }{{"a", "web"}, {"a", "web"}, {"a", "mobile"}},
			want:  []codes.Code{codes.OK, codes.ResourceExhausted, codes.OK},
		},
		{
			name:  "a disabled dimension never refuses",
			cfg:   ratelimit.Config{PerClient: ratelimit.Limit{Rate: 0.01, Burst: 1}},
			calls: []struct{ sub, client string }{{"a", ""}, {"a", ""}, {"a", ""}},
			want:  []codes.Code{codes.OK, codes.OK, codes.OK},
		},
	}
	for _, store := range stores(t) {
		for _, tt := range tests {
			t.Run(store.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				clk := &clock{t: time.Unix(1_700_000_000, 0)}
				cfg := store.configure(t, tt.cfg)
				cfg.Now = clk.now
				l := newLimiter(t, cfg)
				for i, c := range tt.calls {
					if got := status.Code(call(ctxFor(t, c.sub, c.client), l)); got != tt.want[i] {
						t.Errorf("call %d (%s/%s) = %v, want %v", i, c.sub, c.client, got, tt.want[i])
					}
				}
			})
		}
	}
}

// TestLimiterRetryHintIsTheLongestWait: a call both buckets refuse is told the longer wait, so
// that retrying then is not refused again by the other bucket; the same with either store.
func TestLimiterRetryHintIsTheLongestWait(t *testing.T) {
	t.Parallel()
	for _, store := range stores(t) {
		t.Run(store.name, func(t *testing.T) {
			t.Parallel()
			clk := &clock{t: time.Unix(1_700_000_000, 0)}
			cfg := store.configure(t, ratelimit.Config{
				PerPrincipal: ratelimit.Limit{Rate: 1, Burst: 1}, PerClient: ratelimit.Limit{Rate: 0.25, Burst: 1}, Now: clk.now,
			})
			l := newLimiter(t, cfg)
			if err := call(ctxFor(t, "a", "web"), l); err != nil {
				t.Fatalf("first call = %v, want nil", err)
			}
			// a's bucket refuses for 1s, web's for 4s.
			code, _, delay := refusal(call(ctxFor(t, "a", "web"), l))
			// Redis's clock moves on between the calls: a little less than 4s there.
			if code != codes.ResourceExhausted || delay <= 3500*time.Millisecond || delay > 4*time.Second {
				t.Errorf("second call = %v with retry %s, want ResourceExhausted with the client bucket's 4s", code, delay)
			}
		})
	}
}

func TestLimiterRetryHintAndRefill(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	var recs []auth.DecisionRecord
	l, err := ratelimit.New(ratelimit.Config{PerPrincipal: ratelimit.Limit{Rate: 0.5, Burst: 1}, Now: clk.now,
		Recorder: auth.RecorderFunc(func(_ context.Context, r auth.DecisionRecord) error { recs = append(recs, r); return nil })})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, "a", "web")
	if err := call(ctx, l); err != nil {
		t.Fatalf("first call = %v, want nil", err)
	}
	err = call(ctx, l)
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("second call = %v, want ResourceExhausted", err)
	}
	var hint *errdetails.RetryInfo
	reason := ""
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			hint = ri
		}
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reason = info.GetReason()
		}
	}
	if reason != "RATE_LIMITED" {
		t.Errorf("ErrorInfo reason = %q, want RATE_LIMITED", reason)
	}
	if hint == nil || hint.GetRetryDelay().AsDuration() != 2*time.Second {
		t.Fatalf("RetryInfo = %v, want retry delay 2s", hint)
	}
	if len(recs) != 1 || recs[0].ReasonCode != "rate_limited" || recs[0].ActorSubject != "a" {
		t.Errorf("records = %+v, want one rate_limited denial for a", recs)
	}
	clk.t = clk.t.Add(2 * time.Second)
	if err := call(ctx, l); err != nil {
		t.Errorf("call after the hinted delay = %v, want nil", err)
	}
}

func TestLimiterBoundedAndAnonymous(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	l, err := ratelimit.New(ratelimit.Config{PerPrincipal: ratelimit.Limit{Rate: 1, Burst: 1}, MaxKeys: 2, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	// Anonymous callers are keyed by peer IP.
	anon := peer.NewContext(t.Context(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("127.0.0.9"), Port: 5}})
	if err := call(anon, l); err != nil {
		t.Fatalf("anonymous first call = %v", err)
	}
	if got := status.Code(call(anon, l)); got != codes.ResourceExhausted {
		t.Fatalf("anonymous second call = %v, want ResourceExhausted", got)
	}
	// Bounded memory: many subjects never grow the map past MaxKeys (evicted keys restart full).
	for i := range 1000 {
		_ = call(ctxFor(t, string(rune('a'+i%26))+time.Duration(i).String(), ""), l)
	}
	if _, err := ratelimit.New(ratelimit.Config{PerPrincipal: ratelimit.Limit{Rate: 1}}); err == nil {
		t.Error("New(rate without burst) error = nil, want error")
	}
}
