package wire_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/audit/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/audit/internal/adapters/repotest"
	"github.com/securemsg/securemsg/services/audit/internal/app"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/audit/internal/ports"
	"github.com/securemsg/securemsg/services/audit/migrations"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog/tlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/migrate"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// fixture is one test's audit log: a migrated throw-away schema, the Postgres store, the use
// cases and their gRPC handler (called in-process, so the tests see what a client sees).
type fixture struct {
	pool   *pgxpool.Pool
	schema string
	store  *pgstore.Store
	svc    *app.Service
	api    *ports.GRPC
	pub    ed25519.PublicKey
	signer *tlog.Signer
	msgEm  *auditlog.Emitter // a producer's emitter, to make realistic record bytes
}

func newFixture(t testing.TB, cfg app.Config) *fixture {
	t.Helper()
	admin := testkit.Postgres(t)
	schema := testkit.NewSchema(t, admin)
	ctx := context.Background()
	if err := migrate.Up(ctx, admin, schema, migrations.FS, nil); err != nil {
		t.Fatalf("migrate.Up() error = %v", err)
	}
	pool, err := pg.NewPool(ctx, pg.Config{URL: testkit.LoadStack().PostgresURL, Schema: schema, MaxConns: 6})
	if err != nil {
		t.Fatalf("NewPool() error = %v", err)
	}
	t.Cleanup(pool.Close)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer := tlog.NewSigner(priv)
	store := pgstore.NewStore(pool)
	svc := newService(t, store, signer, cfg)
	if err := svc.Maintain(ctx); err != nil {
		t.Fatalf("Maintain() error = %v", err)
	}
	msgEm, _ := auditlog.NewEmitter(commonv1.Component_COMPONENT_MESSAGING)
	return &fixture{pool: pool, schema: schema, store: store, svc: svc, api: ports.NewGRPC(svc), pub: pub, signer: signer, msgEm: msgEm}
}

// newService builds the use cases over store with the audit service's own emitter, as
// wire.Register does.
func newService(t testing.TB, store *pgstore.Store, signer *tlog.Signer, cfg app.Config) *app.Service {
	t.Helper()
	em, err := auditlog.NewEmitter(commonv1.Component_COMPONENT_AUDIT)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := app.New(cfg, app.Deps{Log: store, Checkpoints: store, Marks: store, Alerts: store, Outbox: store, Signer: signer, Audit: em})
	if err != nil {
		t.Fatalf("app.New() error = %v", err)
	}
	return svc
}

// checkpoint signs a checkpoint of the log's head (the checkpointer's job) and returns it as
// the API gives it out.
func (f *fixture) checkpoint(t testing.TB, ctx context.Context) (*auditv1.Checkpoint, error) {
	t.Helper()
	signed, err := f.svc.Checkpoint(ctx, false)
	if err != nil {
		return nil, err
	}
	resp, err := f.api.GetLatestCheckpoint(ctx, &auditv1.GetLatestCheckpointRequest{})
	if err != nil {
		return nil, err
	}
	if resp.Checkpoint.GetTreeSize() != signed.TreeSize {
		t.Fatalf("GetLatestCheckpoint() = size %d right after signing size %d", resp.Checkpoint.GetTreeSize(), signed.TreeSize)
	}
	return resp.Checkpoint, nil
}

// export runs ExportAuditEvents through the gRPC handler and returns the file and its summary.
func export(ctx context.Context, api *ports.GRPC, req *auditv1.ExportAuditEventsRequest) ([]byte, *auditv1.ExportSummary, error) {
	s := &exportStream{ctx: ctx}
	err := api.ExportAuditEvents(req, s)
	return s.file.Bytes(), s.summary, err
}

// exportStream collects what ExportAuditEvents sends.
type exportStream struct {
	grpc.ServerStream
	ctx     context.Context
	file    bytes.Buffer
	summary *auditv1.ExportSummary
}

func (s *exportStream) Context() context.Context { return s.ctx }

func (s *exportStream) Send(r *auditv1.ExportAuditEventsResponse) error {
	s.file.Write(r.GetChunk())
	if r.GetSummary() != nil {
		s.summary = r.GetSummary()
	}
	return nil
}

var base = repotest.Base

// rec builds a clinician's read of patient p's thread, at base + i seconds.
func rec(i int, actor, patient string) *eventsv1.AuditRecord {
	return repotest.RecordProto(i, actor, patient)
}

// incoming encodes records the way a producer's emitter does.
func (f *fixture) incoming(t testing.TB, recs ...*eventsv1.AuditRecord) []domain.Incoming {
	t.Helper()
	out := make([]domain.Incoming, len(recs))
	for i, r := range recs {
		ev, err := f.msgEm.Event(context.Background(), r)
		if err != nil {
			t.Fatalf("Event() error = %v", err)
		}
		in, err := domain.ParseIncoming(ev.Payload)
		if err != nil {
			t.Fatalf("ParseIncoming() error = %v", err)
		}
		out[i] = in
	}
	return out
}

// fill appends n reads by a few actors about a few patients.
func (f *fixture) fill(t testing.TB, from, n int) {
	t.Helper()
	var recs []*eventsv1.AuditRecord
	for i := from; i < from+n; i++ {
		recs = append(recs, rec(i, fmt.Sprintf("clin-%d", i%3), fmt.Sprintf("patient-%d", i%5)))
	}
	for len(recs) > 0 {
		k := min(len(recs), 200)
		if _, err := f.svc.Ingest(context.Background(), f.incoming(t, recs[:k]...)); err != nil {
			t.Fatalf("Ingest() error = %v", err)
		}
		recs = recs[k:]
	}
}

func auditorCtx(ctx context.Context) context.Context {
	return auth.WithPrincipal(ctx, &auth.Principal{Kind: auth.KindUser, Subject: "auditor-1", Roles: []auth.Role{auth.RoleAuditor}, ClientID: "audit-console"})
}

// superuserExec runs SQL on the fixture's schema with triggers disabled, as an attacker with
// superuser rights could.
func (f *fixture) superuserExec(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := f.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET session_replication_role = replica"); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = conn.Exec(ctx, "SET session_replication_role = origin") }()
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("tamper %q: %v", sql, err)
	}
}
