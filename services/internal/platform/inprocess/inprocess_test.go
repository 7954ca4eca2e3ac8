package inprocess_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/securemsg/securemsg/services/internal/platform/inprocess"
)

const (
	check = "/grpc.health.v1.Health/Check"
	watch = "/grpc.health.v1.Health/Watch"
)

// seen is what the server's interceptors saw of the last call.
type seen struct {
	mu   sync.Mutex
	md   metadata.MD
	peer *peer.Peer
}

func (s *seen) record(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.md, _ = metadata.FromIncomingContext(ctx)
	s.peer, _ = peer.FromContext(ctx)
}

func (s *seen) get() (metadata.MD, *peer.Peer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.md, s.peer
}

// newServer is a *grpc.Server with the health service (service "messaging" SERVING) whose
// interceptors record the metadata and peer of each call, as the real chain's guards read them.
func newServer(t *testing.T) (*grpc.Server, *seen) {
	t.Helper()
	s := &seen{}
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
			s.record(ctx)
			return next(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, next grpc.StreamHandler) error {
			s.record(ss.Context())
			return next(srv, ss)
		}),
	)
	hs := health.NewServer()
	hs.SetServingStatus("messaging", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	t.Cleanup(srv.Stop)
	return srv, s
}

// incoming is an HTTP request as a route receives it, from a client at 203.0.113.7 over TLS.
func incoming() *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://svc.example/v1/anything", nil)
	r.RemoteAddr = "203.0.113.7:41000"
	r.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: true}
	r.Header.Set("Authorization", "Bearer token-1")
	r.Header.Set("X-Request-Id", "req-1")
	r.Header.Set("X-Forwarded-For", "198.51.100.9")
	r.Header.Set("Content-Length", "12")
	r.Header.Set("Content-Type", "text/plain")
	r.Header.Set("Connection", "keep-alive")
	r.Header.Set("Accept-Encoding", "gzip")
	r.Header.Set("Grpc-Timeout", "1n")
	r.Header.Set("Connect-Protocol-Version", "1")
	r.Header.Set("Range", "bytes=0-1")
	return r
}

func TestUnaryForwardsMetadataAndPeer(t *testing.T) {
	t.Parallel()
	srv, s := newServer(t)
	r := incoming()
	res, err := inprocess.Unary[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](
		inprocess.WithOrigin(t.Context(), r), srv, check, r.Header, &healthpb.HealthCheckRequest{Service: "messaging"})
	if err != nil {
		t.Fatalf("Unary(Check) = %v, want no error", err)
	}
	if got, want := res.GetStatus(), healthpb.HealthCheckResponse_SERVING; got != want {
		t.Errorf("Unary(Check).Status = %v, want %v", got, want)
	}
	md, p := s.get()
	for key, want := range map[string]string{
		"authorization": "Bearer token-1", "x-request-id": "req-1", "x-forwarded-for": "198.51.100.9", "range": "bytes=0-1",
	} {
		if got := md.Get(key); len(got) != 1 || got[0] != want {
			t.Errorf("metadata[%q] = %q, want [%q]", key, got, want)
		}
	}
	// The caller's framing must not describe the rpc's message, nor its protocol headers the call.
	for _, key := range []string{"content-length", "content-type", "connection", "accept-encoding", "connect-protocol-version"} {
		if got := md.Get(key); slices.Contains(got, r.Header.Get(key)) {
			t.Errorf("metadata[%q] = %q, want the incoming %q left out", key, got, r.Header.Get(key))
		}
	}
	// A forwarded grpc-timeout of 1ns would have failed the call with DeadlineExceeded.
	if p == nil || p.Addr.String() != "203.0.113.7:41000" {
		t.Errorf("peer = %v, want the incoming request's 203.0.113.7:41000", p)
	}
	if info, ok := p.AuthInfo.(credentials.TLSInfo); !ok || info.State.Version != tls.VersionTLS13 {
		t.Errorf("peer.AuthInfo = %#v, want the incoming request's TLS state", p.AuthInfo)
	}
}

func TestUnaryReturnsStatusCode(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t)
	_, err := inprocess.Unary[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](
		t.Context(), srv, check, nil, &healthpb.HealthCheckRequest{Service: "no-such-service"})
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		t.Fatalf("Unary(Check unknown) = %v, want a *connect.Error", err)
	}
	if got, want := cerr.Code(), connect.CodeNotFound; got != want {
		t.Errorf("Unary(Check unknown) code = %v, want %v", got, want)
	}

	_, err = inprocess.Unary[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](
		t.Context(), srv, "/grpc.health.v1.Health/NoSuchMethod", nil, &healthpb.HealthCheckRequest{})
	if got, want := connect.CodeOf(err), connect.CodeUnimplemented; got != want {
		t.Errorf("Unary(unknown method) code = %v, want %v", got, want)
	}
}

// TestUnaryConcurrent runs calls on two servers at once through the shared cached client: each
// call must reach its own server (go test -race checks the cache).
func TestUnaryConcurrent(t *testing.T) {
	t.Parallel()
	a, _ := newServer(t)
	b := grpc.NewServer()
	t.Cleanup(b.Stop)
	hb := health.NewServer()
	hb.SetServingStatus("messaging", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(b, hb)

	var wg sync.WaitGroup
	for i := range 16 {
		srv, want := http.Handler(a), healthpb.HealthCheckResponse_SERVING
		if i%2 == 1 {
			srv, want = b, healthpb.HealthCheckResponse_NOT_SERVING
		}
		wg.Go(func() {
			res, err := inprocess.Unary[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](
				t.Context(), srv, check, nil, &healthpb.HealthCheckRequest{Service: "messaging"})
			if err != nil {
				t.Errorf("Unary(Check) = %v, want no error", err)
				return
			}
			if got := res.GetStatus(); got != want {
				t.Errorf("Unary(Check).Status = %v, want %v", got, want)
			}
		})
	}
	wg.Wait()
}

// TestTransportStreams reads the first message of a server stream that never ends: the
// transport must hand over bytes as the handler writes them, not when it returns.
func TestTransportStreams(t *testing.T) {
	t.Parallel()
	srv, s := newServer(t)
	r := incoming()
	c := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](
		&http.Client{Transport: inprocess.Transport(srv)}, "http://in-process"+watch, connect.WithGRPC())
	ctx, cancel := context.WithCancel(inprocess.WithOrigin(t.Context(), r))
	defer cancel()
	req := connect.NewRequest(&healthpb.HealthCheckRequest{Service: "messaging"})
	inprocess.ForwardMetadata(req.Header(), r.Header, "Range")
	stream, err := c.CallServerStream(ctx, req)
	if err != nil {
		t.Fatalf("CallServerStream(Watch) = %v", err)
	}
	defer func() { _ = stream.Close() }()
	if !stream.Receive() {
		t.Fatalf("Watch: no first message: %v", stream.Err())
	}
	if got, want := stream.Msg().GetStatus(), healthpb.HealthCheckResponse_SERVING; got != want {
		t.Errorf("Watch first status = %v, want %v", got, want)
	}
	md, p := s.get()
	if got := md.Get("range"); len(got) != 0 {
		t.Errorf("metadata[range] = %q, want none (excepted)", got)
	}
	if got := md.Get("authorization"); len(got) != 1 {
		t.Errorf("metadata[authorization] = %q, want the incoming request's", got)
	}
	if p == nil || p.Addr.String() != r.RemoteAddr {
		t.Errorf("peer = %v, want %s", p, r.RemoteAddr)
	}
}

func TestForwardMetadataCopies(t *testing.T) {
	t.Parallel()
	src := http.Header{"X-Request-Id": {"a"}, "authorization": {"Bearer t"}}
	dst := http.Header{}
	inprocess.ForwardMetadata(dst, src)
	dst["X-Request-Id"][0] = "changed"
	if got := src["X-Request-Id"][0]; got != "a" {
		t.Errorf("src[X-Request-Id] = %q after changing dst, want %q", got, "a")
	}
	if got := dst.Get("Authorization"); got != "Bearer t" {
		t.Errorf("dst.Get(Authorization) = %q, want %q (keys canonicalised)", got, "Bearer t")
	}
}
