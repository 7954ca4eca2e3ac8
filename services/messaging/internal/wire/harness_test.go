package wire_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/config"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver/grpctest"
	"github.com/securemsg/securemsg/services/internal/platform/keys"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
	"github.com/securemsg/securemsg/services/messaging/internal/adapters/attachmentclient"
	"github.com/securemsg/securemsg/services/messaging/internal/app"
	"github.com/securemsg/securemsg/services/messaging/internal/wire"
)

// markerPrefix starts every PHI marker the tests write into subjects and bodies. TestMain
// fails the run if any of them reaches the captured logs.
const markerPrefix = "PHIMARKER"

// logs holds everything the services under test logged (daemon loggers write to stderr).
var logs testkit.LogCapture

func TestMain(m *testing.M) { testkit.RunCapturingLogs(m, &logs, markerPrefix) }

// marker returns unique PHI-looking text for one test.
func marker(t testing.TB, what string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return markerPrefix + "-" + what + "-" + hex.EncodeToString(b)
}

// env is a messaging service under test with a stub attachment service.
type env struct {
	h       *servicetest.Harness
	svc     *app.Service
	api     messagingv1.MessagingServiceClient
	stub    *attachmentStub
	transit *keys.Transit
	keyName string
	// settings and deps are what the service was registered with (a second replica reuses them).
	settings wire.Settings
	deps     wire.Deps
	// edgeURL is the HTTP edge's base URL ("https://127.0.0.1:port") when the env serves it.
	edgeURL string
}

// envOptions are what an env starts with beyond the defaults.
type envOptions struct {
	settings *wire.Settings
	// edge serves the service's HTTP edge (Connect, gRPC-Web, REST) on a port of its own.
	edge bool
}

// envOption adjusts an env before it starts.
type envOption func(*envOptions)

// tuned changes the service's settings.
func tuned(f func(*wire.Settings)) envOption { return func(o *envOptions) { f(o.settings) } }

// withEdge serves the HTTP edge too (env.edgeURL).
func withEdge(o *envOptions) { o.edge = true }

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	stack := testkit.LoadStack()
	testkit.RequireTCP(t, "postgres", "127.0.0.1:5432")
	testkit.RequireTCP(t, "vault (transit)", strings.TrimPrefix(strings.TrimPrefix(stack.VaultAddr, "http://"), "https://"))
	e := &env{keyName: testkit.UniqueName(t, "securemsg-messaging-", 60), stub: startAttachmentStub(t)}
	var err error
	e.transit, err = keys.OpenTransit(t.Context(), keys.Config{Addr: stack.VaultAddr, Token: stack.VaultToken, TransitMount: "transit"}, e.keyName)
	if err != nil {
		testkit.Unavailable(t, "vault transit", err)
	}
	settings := wire.Settings{
		TransitKey: e.keyName,
		Retention: map[string]string{"GENERAL": "30d", "CLINICAL_QUESTION": "30d", "PRESCRIPTION": "30d", "TEST_RESULTS": "30d",
			"APPOINTMENT": "30d", "BILLING": "30d", "ADMINISTRATIVE": "30d"},
		RetractWindow: 15 * time.Minute, DEKCacheEntries: 1000, DEKCacheTTL: 10 * time.Minute,
		DirectoryBootstrap: servicetest.DirectorySeedFile(t, append(slices.Clone(servicetest.Predefined), TwoPoolClinician)...),
	}
	o := envOptions{settings: &settings}
	for _, f := range opts {
		f(&o)
	}
	var edge net.Listener
	if o.edge {
		if edge, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatalf("listen: %v", err)
		}
		e.edgeURL = "https://" + edge.Addr().String()
	}
	att, err := attachmentclient.Dial(e.stub.clientConfig)
	if err != nil {
		t.Fatalf("attachmentclient.Dial = %v", err)
	}
	t.Cleanup(func() { _ = att.Close() })
	e.settings, e.deps = settings, wire.Deps{Transit: e.transit, Attachments: att}
	e.h = servicetest.Start(t, wire.Spec(), servicetest.Options{}, func(p *daemon.Process) error {
		if edge != nil {
			p.ServeHTTPOn(edge)
		}
		e.svc, err = wire.Register(p, e.settings, e.deps)
		return err
	})
	e.api = messagingv1.NewMessagingServiceClient(e.h.Portal)
	return e
}

func (e *env) as(t testing.TB, p servicetest.Persona) context.Context {
	return e.h.As(t, t.Context(), p)
}

// Personas beyond servicetest's.
var (
	// TwoPoolClinician works in cardiology and dermatology (may transfer between them).
	TwoPoolClinician = servicetest.Persona{Subject: "user-clinician-3", Roles: []string{"clinician"}, Pools: []string{"pool-cardiology", "pool-dermatology"}}
	// StrangerProxy holds a grant, but for another patient.
	StrangerProxy = servicetest.Persona{Subject: "user-proxy-3", Roles: []string{"proxy"}, Grants: map[string][]string{"p-9999": {"read", "write"}}}
	// ReadOnlyProxy may read p-1001's threads but not write.
	ReadOnlyProxy = servicetest.Persona{Subject: "user-proxy-ro", Roles: []string{"proxy"}, Grants: map[string][]string{"p-1001": {"read"}}}
)

// createThread starts a thread as persona and returns the response.
func (e *env) createThread(t testing.TB, p servicetest.Persona, req *messagingv1.CreateThreadRequest) *messagingv1.CreateThreadResponse {
	t.Helper()
	if req.ClientRequestId == "" {
		req.ClientRequestId = uuid.NewString()
	}
	if req.PoolId == "" {
		req.PoolId = "pool-cardiology"
	}
	if req.Category == 0 {
		req.Category = commonv1.ThreadCategory_THREAD_CATEGORY_CLINICAL_QUESTION
	}
	if req.Sensitivity == 0 {
		req.Sensitivity = commonv1.Sensitivity_SENSITIVITY_NORMAL
	}
	resp, err := e.api.CreateThread(e.as(t, p), req)
	if err != nil {
		t.Fatalf("CreateThread(as %s) = %v", p.Subject, err)
	}
	return resp
}

// auditRecords decodes the audit records in the outbox.
func (e *env) auditRecords(t testing.TB) []*eventsv1.AuditRecord {
	t.Helper()
	rows, err := e.h.Proc.Pool.Query(t.Context(), `SELECT payload FROM outbox WHERE subject = $1 ORDER BY seq`, e.h.Topology.AuditSubject+".messaging")
	if err != nil {
		t.Fatalf("query outbox: %v", err)
	}
	payloads, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatalf("collect outbox: %v", err)
	}
	var out []*eventsv1.AuditRecord
	for _, p := range payloads {
		rec := &eventsv1.AuditRecord{}
		if err := proto.Unmarshal(p, rec); err != nil {
			t.Fatalf("decode audit record: %v", err)
		}
		out = append(out, rec)
	}
	return out
}

// findAudit returns the first audit record matching the filter.
func findAudit(recs []*eventsv1.AuditRecord, action eventsv1.Action, recordID, actor string) *eventsv1.AuditRecord {
	for _, r := range recs {
		if r.GetAction() == action && (recordID == "" || r.GetRecordId() == recordID) && (actor == "" || r.GetActor().GetSubject() == actor) {
			return r
		}
	}
	return nil
}

// eventSubjects lists the subjects of the domain events written to the outbox.
func (e *env) eventSubjects(t testing.TB) []string {
	t.Helper()
	rows, err := e.h.Proc.Pool.Query(t.Context(), `SELECT subject FROM outbox WHERE subject LIKE $1 ORDER BY seq`, e.h.Topology.EventsSubject+".%")
	if err != nil {
		t.Fatalf("query outbox: %v", err)
	}
	subs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("collect outbox: %v", err)
	}
	return subs
}

// rawRowsContain reports whether any column of any messaging table, as text, holds s.
func (e *env) rawRowsContain(t testing.TB, s string) []string {
	t.Helper()
	var hits []string
	for _, table := range []string{"threads", "messages", "viewer_state", "break_glass_access", "pool_settings", "patient_holds", "people", "outbox"} {
		var n int
		err := e.h.Proc.Pool.QueryRow(t.Context(), `SELECT count(*) FROM `+table+` x WHERE strpos(x::text, $1) > 0`, s).Scan(&n)
		if err != nil {
			t.Fatalf("search %s: %v", table, err)
		}
		if n > 0 {
			hits = append(hits, table)
		}
	}
	// bytea columns (sealed fields, outbox payloads) are searched as bytes.
	for _, q := range []string{
		`SELECT count(*) FROM threads WHERE position($1::bytea in subject_sealed) > 0 OR position($1::bytea in coalesce(transfer_note_sealed, ''::bytea)) > 0`,
		`SELECT count(*) FROM messages WHERE position($1::bytea in body_sealed) > 0 OR position($1::bytea in coalesce(request_fp_sealed, ''::bytea)) > 0`,
		`SELECT count(*) FROM break_glass_access WHERE position($1::bytea in reason_sealed) > 0`,
		`SELECT count(*) FROM outbox WHERE position($1::bytea in payload) > 0`,
		`SELECT count(*) FROM people WHERE position($1::bytea in coalesce(display_name_sealed, ''::bytea)) > 0`,
	} {
		var n int
		if err := e.h.Proc.Pool.QueryRow(t.Context(), q, []byte(s)).Scan(&n); err != nil {
			t.Fatalf("search bytes: %v", err)
		}
		if n > 0 {
			hits = append(hits, q[:40])
		}
	}
	return hits
}

// publishedContain waits until the relay has published the outbox and reports whether any
// published event or audit record holds s.
func (e *env) publishedContain(t testing.TB, s string) bool {
	t.Helper()
	testkit.WaitFor(t, 20*time.Second, "outbox relayed", func() bool {
		var n int
		_ = e.h.Proc.Pool.QueryRow(t.Context(), `SELECT count(*) FROM outbox WHERE published_at IS NULL`).Scan(&n)
		return n == 0
	})
	for _, stream := range []string{e.h.Topology.EventsStream, e.h.Topology.AuditStream} {
		c, err := e.h.JS.OrderedConsumer(t.Context(), stream, jetstream.OrderedConsumerConfig{})
		if err != nil {
			t.Fatalf("ordered consumer on %s: %v", stream, err)
		}
		for {
			batch, err := c.FetchNoWait(500)
			if err != nil {
				t.Fatalf("fetch %s: %v", stream, err)
			}
			n := 0
			for m := range batch.Messages() {
				n++
				if bytes.Contains(m.Data(), []byte(s)) {
					return true
				}
			}
			if n == 0 {
				break
			}
		}
	}
	return false
}

func wantCode(t testing.TB, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("%s = %v (%v), want %v", what, got, err, want)
	}
}

// attachmentStub is a real gRPC AttachmentService over mTLS that accepts only the messaging
// service's identity; tests decide each attachment's owner and scan state.
type attachmentStub struct {
	attachmentv1.UnimplementedAttachmentServiceServer
	clientConfig config.Client

	mu      sync.Mutex
	files   map[string]*attachmentv1.Attachment
	purged  []string
	callers []string
	down    bool
}

func startAttachmentStub(t testing.TB) *attachmentStub {
	t.Helper()
	pki := grpctest.NewPKI(t)
	s := &attachmentStub{files: map[string]*attachmentv1.Attachment{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{pki.ServerCert}, ClientCAs: pki.CAPool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
	})))
	attachmentv1.RegisterAttachmentServiceServer(srv, s)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	_, certFile, keyFile := pki.IssueService(t, "messaging")
	s.clientConfig = config.Client{Addr: lis.Addr().String(), CertFile: certFile, KeyFile: keyFile, CAFile: pki.CAFile, ServerName: grpctest.ServerName}
	return s
}

// add registers an uploaded attachment and returns its id.
func (s *attachmentStub) add(uploader string, state attachmentv1.ScanState) string {
	id := uuid.NewString()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[id] = &attachmentv1.Attachment{AttachmentId: id, UploaderSubject: uploader, ScanState: state}
	return id
}

func (s *attachmentStub) caller(ctx context.Context) error {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 {
		return status.Error(codes.Unauthenticated, "no verified client certificate")
	}
	name, ok := auth.ServiceIdentity(ti.State.VerifiedChains[0][0])
	s.callers = append(s.callers, name)
	if !ok || name != "messaging" {
		return status.Error(codes.PermissionDenied, "not the messaging service")
	}
	return nil
}

// admit lets in the messaging service while the stub is up. Callers hold mu.
func (s *attachmentStub) admit(ctx context.Context) error {
	if err := s.caller(ctx); err != nil {
		return err
	}
	if s.down {
		return status.Error(codes.Unavailable, "down")
	}
	return nil
}

func (s *attachmentStub) BindAttachment(ctx context.Context, req *attachmentv1.BindAttachmentRequest) (*attachmentv1.BindAttachmentResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.admit(ctx); err != nil {
		return nil, err
	}
	a, ok := s.files[req.GetAttachmentId()]
	if !ok || a.GetUploaderSubject() != req.GetUploaderSubject() {
		return nil, status.Error(codes.NotFound, "attachment not found")
	}
	switch {
	case a.GetScanState() == attachmentv1.ScanState_SCAN_STATE_INFECTED || a.GetScanState() == attachmentv1.ScanState_SCAN_STATE_FAILED:
		return nil, status.Error(codes.FailedPrecondition, "not clean")
	case a.GetMessageId() != "" && a.GetMessageId() != req.GetMessageId():
		return nil, status.Error(codes.FailedPrecondition, "bound elsewhere")
	}
	a.ThreadId, a.MessageId = req.GetThreadId(), req.GetMessageId()
	return &attachmentv1.BindAttachmentResponse{Attachment: proto.Clone(a).(*attachmentv1.Attachment)}, nil
}

func (s *attachmentStub) PurgeAttachments(ctx context.Context, req *attachmentv1.PurgeAttachmentsRequest) (*attachmentv1.PurgeAttachmentsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.admit(ctx); err != nil {
		return nil, err
	}
	var n int64
	for _, id := range req.GetThreadIds() {
		s.purged = append(s.purged, id)
		for k, a := range s.files {
			if a.GetThreadId() == id {
				delete(s.files, k)
				n++
			}
		}
	}
	return &attachmentv1.PurgeAttachmentsResponse{AttachmentsPurged: n}, nil
}

func codesOf(err error) codes.Code { return status.Code(err) }
