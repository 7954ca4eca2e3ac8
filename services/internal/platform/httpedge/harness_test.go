package httpedge_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/securemsg/securemsg/gen/openapi"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver/grpctest"
	"github.com/securemsg/securemsg/services/internal/platform/httpedge"
	"github.com/securemsg/securemsg/services/internal/platform/logging"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// Thread ids the stub answers: a readable thread, a closed one (a usererr refusal) and one whose
// read blocks until released (for shutdown).
const (
	openThread    = "0b4f3c9e-5d7a-4c1e-9b2f-3a6d8e1f2c40"
	closedThread  = "7c2e9a14-3b5f-4d8e-a1c6-9f0b2d4e6a81"
	blockedThread = "e1d2c3b4-a596-4877-8899-aabbccddeeff"
	// allowedOrigin is the portal the edge under test lists.
	allowedOrigin = "https://portal.example.org"
)

// stubMessaging answers GetThread and WatchInbox; CheckMessageAccess (off the browser surface)
// counts the calls that reach it, which must stay zero over HTTP.
type stubMessaging struct {
	messagingv1.UnimplementedMessagingServiceServer
	checks  sync.Map // method → calls
	started chan struct{}
	release chan struct{}
}

func (s *stubMessaging) GetThread(ctx context.Context, req *messagingv1.GetThreadRequest) (*messagingv1.GetThreadResponse, error) {
	switch req.GetThreadId() {
	case closedThread:
		return nil, usererr.New(usererr.FailedPrecondition, "THREAD_CLOSED", "the thread is closed")
	case blockedThread:
		s.started <- struct{}{}
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &messagingv1.GetThreadResponse{Thread: &messagingv1.Thread{ThreadId: req.GetThreadId(), PoolId: "pool-cardiology"}}, nil
}

func (s *stubMessaging) CheckMessageAccess(context.Context, *messagingv1.CheckMessageAccessRequest) (*messagingv1.CheckMessageAccessResponse, error) {
	n, _ := s.checks.LoadOrStore("CheckMessageAccess", new(int))
	*n.(*int)++
	return &messagingv1.CheckMessageAccessResponse{}, nil
}

func (s *stubMessaging) WatchInbox(_ *messagingv1.WatchInboxRequest, stream grpc.ServerStreamingServer[messagingv1.WatchInboxResponse]) error {
	for range 3 {
		if err := stream.Send(&messagingv1.WatchInboxResponse{Notice: &messagingv1.WatchInboxResponse_Heartbeat{Heartbeat: &messagingv1.Heartbeat{}}}); err != nil {
			return err
		}
	}
	return nil
}

// seen is what the guard chain saw of one call.
type seen struct {
	Method, Authorization, SourceIP, RequestID string
	// Service is the mTLS service identity of the peer ("" for every HTTP call).
	Service string
}

// recordingGuard stands where the access guards stand in the chain and records each call.
type recordingGuard struct {
	mu    sync.Mutex
	calls []seen
}

func (g *recordingGuard) record(ctx context.Context, method string) {
	md, _ := metadata.FromIncomingContext(ctx)
	ri := auth.RequestInfoFrom(ctx)
	svc, _ := auth.PeerService(ctx)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, seen{Method: method, Authorization: strings.Join(md.Get("authorization"), ","),
		SourceIP: ri.SourceIP, RequestID: ri.RequestID, Service: svc})
}

func (g *recordingGuard) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		g.record(ctx, info.FullMethod)
		return handler(ctx, req)
	}
}

func (g *recordingGuard) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		g.record(ss.Context(), info.FullMethod)
		return handler(srv, ss)
	}
}

// byRequestID returns what the guard saw of the call with request id id.
func (g *recordingGuard) byRequestID(id string) (seen, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.calls {
		if c.RequestID == id {
			return c, true
		}
	}
	return seen{}, false
}

func (g *recordingGuard) methods() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for _, c := range g.calls {
		out = append(out, c.Method)
	}
	return out
}

// syncBuffer collects log output written from server goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is a grpcserver.Server with the stub messaging service, served natively and through the
// edge, as daemon runs them: the edge shuts down first (BeforeStop).
type env struct {
	base  string // https://127.0.0.1:port of the edge
	h2    *http.Client
	h1    *http.Client
	grpc  *grpc.ClientConn
	pki   *grpctest.PKI
	guard *recordingGuard
	stub  *stubMessaging
	logs  *syncBuffer
	stop  context.CancelFunc
	done  chan error
}

func startEdge(t testing.TB) *env { t.Helper(); return startEdgeWith(t, nil) }

// startEdgeWith is startEdge with the edge's options changed by tune.
func startEdgeWith(t testing.TB, tune func(*httpedge.Options)) *env {
	t.Helper()
	e := &env{pki: grpctest.NewPKI(t), guard: &recordingGuard{}, logs: &syncBuffer{}, done: make(chan error, 2),
		stub: &stubMessaging{started: make(chan struct{}, 4), release: make(chan struct{})}}
	cfg := e.pki.ServerConfig(false)
	cfg.TLSClientCAFile = e.pki.CAFile // as deployed: gRPC verifies a client certificate when one is given
	logger := logging.New(e.logs, slog.LevelDebug)
	srv, err := grpcserver.New(cfg, grpcserver.WithLogger(logger), grpcserver.WithGuards(e.guard))
	if err != nil {
		t.Fatalf("grpcserver.New = %v", err)
	}
	messagingv1.RegisterMessagingServiceServer(srv.GRPC(), e.stub)
	opts := httpedge.Options{
		TLS: srv.EdgeTLSConfig(), AllowedOrigins: []string{allowedOrigin},
		MaxMessageBytes: cfg.MaxRecvMsgBytes, MaxConcurrentStreams: cfg.MaxConcurrentStreams,
		OpenAPI: openapi.Document, Logger: logger,
	}
	if tune != nil {
		tune(&opts)
	}
	edge, err := httpedge.New(srv.GRPC(), opts)
	if err != nil {
		t.Fatalf("httpedge.New = %v", err)
	}
	srv.BeforeStop(edge.Shutdown)
	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.base = "https://" + hlis.Addr().String()
	ctx, stop := context.WithCancel(context.Background())
	e.stop = stop
	done := e.done
	go func() { done <- srv.Serve(ctx, glis) }()
	go func() { done <- edge.Serve(hlis) }()
	t.Cleanup(func() { e.shutdown(t) })

	h2 := &http.Transport{TLSClientConfig: e.pki.ClientTLS(false), ForceAttemptHTTP2: true}
	h1 := &http.Transport{TLSClientConfig: e.pki.ClientTLS(false), Protocols: new(http.Protocols)}
	h1.Protocols.SetHTTP1(true)
	e.h2, e.h1 = &http.Client{Transport: h2}, &http.Client{Transport: h1}
	t.Cleanup(h2.CloseIdleConnections)
	t.Cleanup(h1.CloseIdleConnections)
	conn, err := grpc.NewClient(glis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(e.pki.ClientTLS(false))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	e.grpc = conn
	return e
}

// shutdown stops both listeners (once) and waits for them.
func (e *env) shutdown(t testing.TB) {
	t.Helper()
	if e.done == nil {
		return
	}
	e.stop()
	done := e.done
	e.done = nil
	for range 2 {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve after shutdown = %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("servers did not stop within 15s")
		}
	}
}

// result is one call's outcome, the same shape for every protocol.
type result struct {
	ThreadID string
	// Code is the gRPC code name ("OK", "FailedPrecondition", ...) and Reason the ErrorInfo
	// reason, both "" or "OK" on success.
	Code, Reason string
}

// connectResult reads a connect-go call's outcome.
func connectResult(resp *connect.Response[messagingv1.GetThreadResponse], err error) result {
	if err != nil {
		return result{Code: grpcCodeName(connect.CodeOf(err)), Reason: connectReason(err)}
	}
	return result{ThreadID: resp.Msg.GetThread().GetThreadId(), Code: "OK"}
}

func connectReason(err error) string {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return ""
	}
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if info, ok := v.(*errdetails.ErrorInfo); ok {
				return info.GetReason()
			}
		}
	}
	return ""
}

// grpcCodeName names a Connect code as gRPC does (they share the numbers).
func grpcCodeName(c connect.Code) string {
	names := map[connect.Code]string{
		connect.CodeUnauthenticated: "Unauthenticated", connect.CodePermissionDenied: "PermissionDenied",
		connect.CodeFailedPrecondition: "FailedPrecondition", connect.CodeNotFound: "NotFound",
		connect.CodeUnimplemented: "Unimplemented", connect.CodeInvalidArgument: "InvalidArgument",
		connect.CodeResourceExhausted: "ResourceExhausted", connect.CodeInternal: "Internal",
	}
	if n, ok := names[c]; ok {
		return n
	}
	return c.String()
}

// restResult reads a REST response: the message on 200, a google.rpc.Status otherwise.
func restResult(t *testing.T, resp *http.Response) result {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatalf("read REST body: %v", err)
	}
	if resp.StatusCode == http.StatusOK {
		out := &messagingv1.GetThreadResponse{}
		if err := protojson.Unmarshal(body, out); err != nil {
			t.Fatalf("REST body %q: %v", body, err)
		}
		return result{ThreadID: out.GetThread().GetThreadId(), Code: "OK"}
	}
	st := &spb.Status{}
	if err := protojson.Unmarshal(body, st); err != nil {
		t.Fatalf("REST error body %q (HTTP %d): %v", body, resp.StatusCode, err)
	}
	r := result{Code: grpcCodeName(connect.Code(st.GetCode()))}
	for _, d := range st.GetDetails() {
		info := &errdetails.ErrorInfo{}
		if d.MessageIs(info) && d.UnmarshalTo(info) == nil {
			r.Reason = info.GetReason()
		}
	}
	return r
}
