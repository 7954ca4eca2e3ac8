package wire_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/adapters/clamd"
	"github.com/securemsg/securemsg/services/attachment/internal/adapters/messagingclient"
	"github.com/securemsg/securemsg/services/attachment/internal/adapters/s3store"
	"github.com/securemsg/securemsg/services/attachment/internal/app"
	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/attachment/internal/wire"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/config"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver/grpctest"
	"github.com/securemsg/securemsg/services/internal/platform/keys"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

// markerPrefix starts every PHI marker the tests put into file names and file bytes. TestMain
// fails the run if any reaches the captured logs; tests grep rows, objects and events for them.
const markerPrefix = "PHIMARKER"

// logs holds everything the services under test logged (daemon loggers write to stderr).
var logs testkit.LogCapture

func TestMain(m *testing.M) { testkit.RunCapturingLogs(m, &logs, markerPrefix) }

// marker returns unique PHI-looking text for one test.
func marker(what string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return markerPrefix + "-" + what + "-" + hex.EncodeToString(b)
}

// eicar is the antivirus test file, assembled at run time so no source file is flagged.
func eicar() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")
}

// switchScanner lets a test take the scanner down and bring it back.
type switchScanner struct{ cur atomic.Pointer[clamd.Client] }

func (s *switchScanner) Scan(ctx context.Context, r io.Reader) (domain.Verdict, error) {
	return s.cur.Load().Scan(ctx, r)
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// env is an attachment service under test with a stub messaging service.
type env struct {
	h       *servicetest.Harness
	svc     *app.Service
	api     attachmentv1.AttachmentServiceClient
	stub    *messagingStub
	store   *s3store.Store
	scanner *switchScanner
	clamd   string
	cfg     wire.Config
	access  *messagingclient.Client
}

// envOptions tune an env.
type envOptions struct {
	tune  func(*wire.Config)
	s3    *wire.S3 // another object store (a scratch MinIO)
	vault *testkit.TransitServer
}

func newEnv(t testing.TB, opts envOptions) *env {
	t.Helper()
	stack := testkit.LoadStack()
	testkit.RequireTCP(t, "postgres", "127.0.0.1:5432")
	testkit.RequireTCP(t, "clamd", stack.ClamdAddr)
	e := &env{stub: startMessagingStub(t), scanner: &switchScanner{}, clamd: stack.ClamdAddr}
	e.scanner.cur.Store(clamd.New(stack.ClamdAddr))
	// The service's own sections at their defaults (the shared ones come from the harness).
	var defaults struct {
		Clamd      wire.Clamd
		Attachment wire.Settings
	}
	if err := config.Load(&defaults, config.WithEnvironment(map[string]string{})); err != nil {
		t.Fatalf("config.Load(defaults) = %v", err)
	}
	cfg := wire.Config{Clamd: defaults.Clamd, Attachment: defaults.Attachment}
	cfg.Attachment.TransitKey = testkit.UniqueName(t, "securemsg-attachment-", 60)
	cfg.Attachment.RescanInterval = time.Hour // tests run the jobs themselves
	cfg.Attachment.CleanupInterval = time.Hour
	cfg.S3 = wire.S3{Endpoint: stack.S3Endpoint, AccessKey: config.Secret(stack.S3AccessKey), SecretKey: config.Secret(stack.S3SecretKey),
		Bucket: stack.S3Bucket, Prefix: testkit.UniqueName(t, "test-attachment-", 60) + "/", PartSize: 5 << 20}
	if opts.s3 != nil {
		cfg.S3 = *opts.s3
	} else {
		testkit.RequireTCP(t, "minio", stack.S3Endpoint)
	}
	if opts.tune != nil {
		opts.tune(&cfg)
	}
	e.cfg = cfg
	vault := config.Vault{Addr: stack.VaultAddr, Token: config.Secret(stack.VaultToken), TransitMount: "transit"}
	if opts.vault != nil {
		vault = config.Vault{Addr: "http://" + opts.vault.Addr(), Token: config.Secret(opts.vault.Token()), TransitMount: "transit"}
	} else {
		testkit.RequireTCP(t, "vault (transit)", strings.TrimPrefix(stack.VaultAddr, "http://"))
	}
	transit, err := keys.OpenTransit(t.Context(), keys.ConfigFrom(vault), cfg.Attachment.TransitKey)
	if err != nil {
		testkit.Unavailable(t, "vault transit", err)
	}
	ring, err := keys.NewKeyring(transit, keys.KeyringOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.store, err = wire.NewStore(t.Context(), cfg.S3)
	if err != nil {
		testkit.Unavailable(t, "minio", err)
	}
	t.Cleanup(func() { e.emptyStore(t) })
	conn, err := grpcserver.Dial(e.stub.clientConfig)
	if err != nil {
		t.Fatalf("grpcserver.Dial(stub) = %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	e.access = messagingclient.New(conn, 100, 30*time.Second)
	e.h = servicetest.Start(t, wire.Spec(), servicetest.Options{}, func(p *daemon.Process) error {
		e.svc, err = wire.Register(p, cfg.Attachment, wire.Deps{Keys: ring, Objects: e.store, Scanner: e.scanner, Access: e.access})
		return err
	})
	e.api = attachmentv1.NewAttachmentServiceClient(e.h.Portal)
	return e
}

// emptyStore removes every object the test left under its prefix.
func (e *env) emptyStore(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := e.store.Client()
	for o := range c.ListObjects(ctx, e.store.Bucket(), minio.ListObjectsOptions{Prefix: e.store.Key(""), Recursive: true}) {
		if o.Err == nil {
			_ = c.RemoveObject(ctx, e.store.Bucket(), o.Key, minio.RemoveObjectOptions{})
		}
	}
}

// objects returns the raw bytes of every object under the test's prefix, by key.
func (e *env) objects(t testing.TB) map[string][]byte {
	t.Helper()
	c := e.store.Client()
	out := map[string][]byte{}
	for o := range c.ListObjects(t.Context(), e.store.Bucket(), minio.ListObjectsOptions{Prefix: e.store.Key(""), Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list objects: %v", o.Err)
		}
		obj, err := c.GetObject(t.Context(), e.store.Bucket(), o.Key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(obj)
		_ = obj.Close() // read-only; ReadAll's error is the one that matters
		if err != nil {
			t.Fatal(err)
		}
		out[o.Key] = b
	}
	return out
}

func (e *env) as(t testing.TB, p servicetest.Persona) context.Context {
	return e.h.As(t, t.Context(), p)
}

// asService returns a client presenting the identity of service name over mTLS.
func (e *env) asService(t testing.TB, name string) attachmentv1.AttachmentServiceClient {
	return attachmentv1.NewAttachmentServiceClient(e.h.ServiceConn(t, name))
}

// upload sends data in chunks of chunk bytes (0: 256 KiB) with md; it returns the stored
// attachment or the rpc's error.
func upload(ctx context.Context, api attachmentv1.AttachmentServiceClient, md *attachmentv1.UploadMetadata, data []byte, chunk int) (*attachmentv1.Attachment, error) {
	if chunk == 0 {
		chunk = 256 << 10
	}
	if md.DeclaredSizeBytes == 0 {
		md.DeclaredSizeBytes = int64(len(data))
	}
	stream, err := api.UploadAttachment(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&attachmentv1.UploadAttachmentRequest{Payload: &attachmentv1.UploadAttachmentRequest_Metadata{Metadata: md}}); err != nil {
		return nil, err
	}
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		if err := stream.Send(&attachmentv1.UploadAttachmentRequest{Payload: &attachmentv1.UploadAttachmentRequest_Chunk{Chunk: data[off:end]}}); err != nil {
			break // the server ended the stream; CloseAndRecv has its status
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, err
	}
	return resp.GetAttachment(), nil
}

// mustUpload uploads and fails the test on error.
func (e *env) mustUpload(t testing.TB, p servicetest.Persona, md *attachmentv1.UploadMetadata, data []byte) *attachmentv1.Attachment {
	t.Helper()
	a, err := upload(e.as(t, p), e.api, md, data, 0)
	if err != nil {
		t.Fatalf("UploadAttachment(as %s, %d bytes) = %v", p.Subject, len(data), err)
	}
	return a
}

// download reads [off, off+n) and returns the bytes received before any error.
func download(ctx context.Context, api attachmentv1.AttachmentServiceClient, id string, off, n int64) ([]byte, *attachmentv1.Attachment, error) {
	stream, err := api.DownloadAttachment(ctx, &attachmentv1.DownloadAttachmentRequest{AttachmentId: id, Offset: off, Length: n})
	if err != nil {
		return nil, nil, err
	}
	var got []byte
	var meta *attachmentv1.Attachment
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return got, meta, nil
		}
		if err != nil {
			return got, meta, err
		}
		if msg.GetAttachment() != nil {
			meta = msg.GetAttachment()
			continue
		}
		if want := off + int64(len(got)); msg.GetOffset() != want {
			return got, meta, fmt.Errorf("chunk offset %d, want %d", msg.GetOffset(), want)
		}
		got = append(got, msg.GetChunk()...)
	}
}

// textFile returns n bytes of text containing the marker, so it sniffs as text/plain.
func textFile(mark string, n int) []byte {
	line := []byte("patient note " + mark + " lorem ipsum dolor sit amet\n")
	var b bytes.Buffer
	for b.Len() < n {
		b.Write(line)
	}
	return b.Bytes()[:n]
}

// auditRecords decodes the audit records in the outbox.
func (e *env) auditRecords(t testing.TB) []*eventsv1.AuditRecord {
	return outboxMessages(t, e, e.h.Topology.AuditSubject+".attachment", func() *eventsv1.AuditRecord { return &eventsv1.AuditRecord{} })
}

// scannedEvents decodes the AttachmentScanned events in the outbox.
func (e *env) scannedEvents(t testing.TB) []*eventsv1.AttachmentScanned {
	return outboxMessages(t, e, e.h.Topology.EventsSubject+".attachment.scanned", func() *eventsv1.AttachmentScanned { return &eventsv1.AttachmentScanned{} })
}

// outboxMessages decodes the outbox rows on subject, in write order, into messages newMsg makes.
func outboxMessages[M proto.Message](t testing.TB, e *env, subject string, newMsg func() M) []M {
	t.Helper()
	rows, err := e.h.Proc.Pool.Query(t.Context(), `SELECT payload FROM outbox WHERE subject = $1 ORDER BY seq`, subject)
	if err != nil {
		t.Fatalf("query outbox: %v", err)
	}
	msgs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (M, error) {
		var payload []byte
		m := newMsg()
		if err := row.Scan(&payload); err != nil {
			return m, err
		}
		return m, proto.Unmarshal(payload, m)
	})
	if err != nil {
		t.Fatalf("read the outbox's %s rows: %v", subject, err)
	}
	return msgs
}

// findAudit returns the records for recordID with action.
func findAudit(recs []*eventsv1.AuditRecord, action eventsv1.Action, recordID string) []*eventsv1.AuditRecord {
	var out []*eventsv1.AuditRecord
	for _, r := range recs {
		if r.GetAction() == action && r.GetRecordId() == recordID {
			out = append(out, r)
		}
	}
	return out
}

// rowState returns the attachment's state, or "" when the row is gone.
func (e *env) rowState(t testing.TB, id string) string {
	t.Helper()
	var s string
	err := e.h.Proc.Pool.QueryRow(t.Context(), `SELECT state FROM attachments WHERE id = $1::uuid`, id).Scan(&s)
	if errors.Is(err, pgx.ErrNoRows) {
		return ""
	}
	if err != nil {
		t.Fatalf("row state: %v", err)
	}
	return s
}

// wantState checks the attachment's state ("" for a row that is gone).
func (e *env) wantState(t testing.TB, what, id, want string) {
	t.Helper()
	if s := e.rowState(t, id); s != want {
		t.Errorf("%s: state = %q, want %q", what, s, want)
	}
}

// dump returns every row of the service's tables and outbox as text, to grep for markers.
func (e *env) dump(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{
		`SELECT row_to_json(a)::text FROM attachments a`,
		`SELECT row_to_json(o)::text || encode(o.payload, 'escape') FROM outbox o`,
	} {
		rows, err := e.h.Proc.Pool.Query(t.Context(), q)
		if err != nil {
			t.Fatalf("dump: %v", err)
		}
		texts, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("dump: %v", err)
		}
		for _, s := range texts {
			b.WriteString(s)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func wantCode(t testing.TB, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("%s = %v, want %v", what, err, want)
	}
}

// messagingStub is a real gRPC MessagingService over mTLS that answers CheckMessageAccess
// from rules the test sets, and counts calls (to test the cache).
type messagingStub struct {
	messagingv1.UnimplementedMessagingServiceServer
	clientConfig config.Client

	mu sync.Mutex
	// rules maps target (message or thread id) → subject → answer; a target missing entirely is
	// NOT_FOUND, a subject missing is a denial.
	rules map[string]map[string]*messagingv1.CheckMessageAccessResponse
	calls atomic.Int64
	// callers records the service identities that called.
	callers []string
}

func startMessagingStub(t testing.TB) *messagingStub {
	t.Helper()
	pki := grpctest.NewPKI(t)
	serverCert, _, _ := pki.IssueService(t, "messaging")
	_, clientCert, clientKey := pki.IssueService(t, "attachment")
	s := &messagingStub{rules: map[string]map[string]*messagingv1.CheckMessageAccessResponse{}}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{serverCert}, ClientCAs: pki.CAPool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
	})))
	messagingv1.RegisterMessagingServiceServer(srv, s)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	s.clientConfig = config.Client{Addr: l.Addr().String(), CertFile: clientCert, KeyFile: clientKey, CAFile: pki.CAFile, ServerName: grpctest.ServerName}
	return s
}

// allow lets subject act on target (a message or thread) of patient in pool.
func (s *messagingStub) allow(target, subject, patient string) {
	s.set(target, subject, &messagingv1.CheckMessageAccessResponse{Allowed: true, ReasonCode: "own_thread", PatientId: patient, PoolId: "pool-cardiology"})
}

func (s *messagingStub) set(target, subject string, r *messagingv1.CheckMessageAccessResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rules[target] == nil {
		s.rules[target] = map[string]*messagingv1.CheckMessageAccessResponse{}
	}
	s.rules[target][subject] = r
}

func (s *messagingStub) CheckMessageAccess(ctx context.Context, req *messagingv1.CheckMessageAccessRequest) (*messagingv1.CheckMessageAccessResponse, error) {
	s.calls.Add(1)
	if svc, ok := auth.PeerService(ctx); ok {
		s.mu.Lock()
		s.callers = append(s.callers, svc)
		s.mu.Unlock()
	}
	target := req.GetMessageId() + req.GetThreadId()
	s.mu.Lock()
	defer s.mu.Unlock()
	subjects, ok := s.rules[target]
	if !ok {
		return nil, status.Error(codes.NotFound, "message not found")
	}
	if r, ok := subjects[req.GetPrincipal().GetSubject()]; ok {
		return r, nil
	}
	return &messagingv1.CheckMessageAccessResponse{Allowed: false, ReasonCode: "no_grant"}, nil
}

// wireS3 is the stack's bucket under prefix.
func wireS3(st testkit.Stack, prefix string) wire.S3 {
	return wire.S3{Endpoint: st.S3Endpoint, AccessKey: config.Secret(st.S3AccessKey), SecretKey: config.Secret(st.S3SecretKey),
		Bucket: st.S3Bucket, Prefix: prefix, PartSize: 5 << 20}
}

// newStoreNoTest opens a store outside a test's lifetime (clean-up).
func newStoreNoTest(cfg wire.S3) (*s3store.Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return wire.NewStore(ctx, cfg)
}
