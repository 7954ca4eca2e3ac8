package grpcserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/securemsg/securemsg/services/internal/platform/config"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver/grpctest"
	"github.com/securemsg/securemsg/services/internal/platform/logging"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// Markers that must never reach a client (secretMarker) or any log line (phiMarker).
const (
	secretMarker = "SECRET-MARKER-4a1f9c"
	phiMarker    = "PHI-MARKER-jane-doe-biopsy-77"
)

const (
	echoMethod   = "/securemsg.test.v1.Test/Echo"
	streamMethod = "/securemsg.test.v1.Test/EchoStream"
)

// checked is a request message with a Validate method, like generated code with validation.
type checked struct{ *wrapperspb.StringValue }

func (c *checked) Validate() error {
	if c.GetValue() == "" {
		return errors.New("value must not be empty")
	}
	return nil
}

// domainErr chooses its own status; its Error text holds internal detail.
type domainErr struct{}

func (domainErr) Error() string { return "thread " + secretMarker + " is closed" }

func (domainErr) GRPCStatus() *status.Status {
	return status.New(codes.FailedPrecondition, "thread is closed")
}

// testService answers according to the request value.
type testService struct {
	started chan struct{} // receives when a "block" call begins
	release chan struct{} // closed to let "block" calls return
}

func newTestService() *testService {
	return &testService{started: make(chan struct{}, 8), release: make(chan struct{})}
}

func (s *testService) echo(ctx context.Context, v string) (*wrapperspb.StringValue, error) {
	switch v {
	case "panic":
		panic("boom " + secretMarker)
	case "panic-runtime":
		var m map[string]int
		m["x"]++ //nolint:staticcheck // SA5000: the point: a runtime panic (assignment to entry in nil map) for the recovery interceptor
	case "internal":
		return nil, fmt.Errorf("query failed: password=%s", secretMarker)
	case "status-internal":
		return nil, status.Error(codes.Internal, "db says "+secretMarker)
	case "notfound":
		return nil, status.Error(codes.NotFound, "thread not found")
	case "wrapped-status":
		return nil, fmt.Errorf("load %s: %w", secretMarker, status.Error(codes.NotFound, "thread not found"))
	case "domain":
		return nil, fmt.Errorf("close: %w", domainErr{})
	case "usererr":
		return nil, fmt.Errorf("lookup: %w", usererr.Wrap(usererr.NotFound, "RECORD_NOT_FOUND", "no such record", errors.New(secretMarker)))
	case "unavailable":
		return nil, fmt.Errorf("load: %w", usererr.Wrap(usererr.Unavailable, "DATABASE_UNAVAILABLE", "the database is unavailable; try again", errors.New("dial: "+secretMarker)))
	case "canceled":
		return nil, fmt.Errorf("upstream: %w", context.Canceled)
	case "block":
		s.started <- struct{}{}
		select {
		case <-s.release:
			return wrapperspb.String("released"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return wrapperspb.String(logging.RequestID(ctx)), nil
}

var testDesc = grpc.ServiceDesc{
	ServiceName: "securemsg.test.v1.Test",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := &checked{&wrapperspb.StringValue{}}
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) {
				return srv.(*testService).echo(ctx, req.(*checked).GetValue())
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: echoMethod}, h)
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "EchoStream",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			for {
				in := &checked{&wrapperspb.StringValue{}}
				if err := stream.RecvMsg(in); errors.Is(err, io.EOF) {
					return nil
				} else if err != nil {
					return err
				}
				out, err := srv.(*testService).echo(stream.Context(), in.GetValue())
				if err != nil {
					return err
				}
				if err := stream.SendMsg(out); err != nil {
					return err
				}
			}
		},
	}},
}

// harness is a server on 127.0.0.1:0 with the test service, serving until the test ends.
type harness struct {
	srv    *grpcserver.Server
	svc    *testService
	pki    *grpctest.PKI
	addr   string
	logs   *grpctest.LogBuffer
	stop   context.CancelFunc
	served chan error
}

// startTLS starts a server with a fresh PKI and its TLS (not mTLS) test configuration.
func startTLS(t *testing.T, opts ...grpcserver.Option) *harness {
	t.Helper()
	return startTLSConfig(t, func(*config.Server) {}, opts...)
}

// startTLSConfig is startTLS with the configuration changed by edit first.
func startTLSConfig(t *testing.T, edit func(*config.Server), opts ...grpcserver.Option) *harness {
	t.Helper()
	pki := grpctest.NewPKI(t)
	cfg := pki.ServerConfig(false)
	edit(&cfg)
	return startServer(t, pki, cfg, opts...)
}

func startServer(t *testing.T, pki *grpctest.PKI, cfg config.Server, opts ...grpcserver.Option) *harness {
	t.Helper()
	return startServerWith(t, pki, cfg, nil, opts...)
}

// startServerWith is startServer with more services, which register adds before serving.
func startServerWith(t *testing.T, pki *grpctest.PKI, cfg config.Server, register func(*grpc.Server), opts ...grpcserver.Option) *harness {
	t.Helper()
	h := &harness{svc: newTestService(), pki: pki, logs: &grpctest.LogBuffer{}, served: make(chan error, 1)}
	opts = append([]grpcserver.Option{grpcserver.WithLogger(logging.New(h.logs, slog.LevelDebug))}, opts...)
	srv, err := grpcserver.New(cfg, opts...)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	h.srv = srv
	srv.GRPC().RegisterService(&testDesc, h.svc)
	if register != nil {
		register(srv.GRPC())
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	h.addr = lis.Addr().String()
	// The server outlives t.Context(), which ends before cleanups run.
	ctx, stop := context.WithCancel(context.Background())
	h.stop = stop
	go func() { h.served <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		stop()
		if err := testkit.Receive(t, h.served, 10*time.Second, "Serve() to return after cancel"); err != nil {
			t.Errorf("Serve() after cancel = %v, want nil", err)
		}
	})
	return h
}

// shutdown cancels Serve and returns its result.
func (h *harness) shutdown(t *testing.T, within time.Duration) error {
	t.Helper()
	h.stop()
	err := testkit.Receive(t, h.served, within, "Serve() to return after cancel")
	h.served <- err // for the cleanup
	return err
}

// dial connects with the client certificate through grpcserver.Dial.
func (h *harness) dial(t *testing.T) *grpc.ClientConn {
	t.Helper()
	conn, err := grpcserver.Dial(h.pki.ClientConfig(h.addr))
	if err != nil {
		t.Fatalf("Dial() = %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// echo makes one unary call and returns the reply, the x-request-id header and the error.
func echo(ctx context.Context, conn *grpc.ClientConn, v string, opts ...grpc.CallOption) (string, string, error) {
	var header metadata.MD
	out := &wrapperspb.StringValue{}
	err := conn.Invoke(ctx, echoMethod, wrapperspb.String(v), out, append(opts, grpc.Header(&header))...)
	return out.GetValue(), strings.Join(header.Get(grpcserver.RequestIDHeader), ","), err
}

// echoStream sends v on a bidi stream and returns the first reply or the stream's error.
func echoStream(ctx context.Context, conn *grpc.ClientConn, v string) (string, string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := conn.NewStream(ctx, &testDesc.Streams[0], streamMethod)
	if err != nil {
		return "", "", err
	}
	if err := st.SendMsg(wrapperspb.String(v)); err != nil && !errors.Is(err, io.EOF) {
		return "", "", err
	}
	_ = st.CloseSend()
	out := &wrapperspb.StringValue{}
	err = st.RecvMsg(out)
	header, _ := st.Header()
	return out.GetValue(), strings.Join(header.Get(grpcserver.RequestIDHeader), ","), err
}

// callKinds runs a test body against the unary and the streaming path.
var callKinds = []struct {
	name string
	call func(ctx context.Context, conn *grpc.ClientConn, v string) (string, string, error)
}{
	{"unary", func(ctx context.Context, conn *grpc.ClientConn, v string) (string, string, error) {
		return echo(ctx, conn, v)
	}},
	{"stream", echoStream},
}

// logLines parses the captured JSON log lines.
func logLines(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(logs), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// logLine waits for a captured log line that match selects and returns it.
func (h *harness) logLine(t *testing.T, what string, match func(line map[string]any) bool) map[string]any {
	t.Helper()
	var found map[string]any
	waitFor(t, what, func() bool {
		for _, line := range logLines(t, h.logs.String()) {
			if match(line) {
				found = line
				return true
			}
		}
		return false
	})
	return found
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}
