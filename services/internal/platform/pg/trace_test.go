package pg_test

import (
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/securemsg/securemsg/services/internal/platform/tracing/tracingtest"
	"go.opentelemetry.io/otel/codes"
)

// TestStatementSpans runs statements on a real pool inside and outside a trace: inside, each
// becomes a client span named by its operation, with the schema and, on failure, the SQLSTATE
// — never the SQL text or its arguments; outside, there are no spans at all (the relay's polls
// must not start traces).
func TestStatementSpans(t *testing.T) {
	tp, mem := tracingtest.Record(t)

	pool, schema := schemaPool(t)
	const secret = "PHI-MARKER-0815"
	if _, err := pool.Exec(t.Context(), "INSERT INTO items VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if n := len(mem.GetSpans()); n != 0 {
		t.Fatalf("%d spans for a statement outside any trace; want none", n)
	}

	ctx, root := tp.Tracer("test").Start(t.Context(), "rpc")
	if _, err := pool.Exec(ctx, "INSERT INTO items VALUES ($1)", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "INSERT INTO items VALUES (1)"); err == nil {
		t.Fatal("a duplicate key was accepted")
	}
	var got string
	if err := pool.QueryRow(ctx, "  (SELECT $1::text)", secret).Scan(&got); err != nil {
		t.Fatal(err)
	}
	b := &pgx.Batch{}
	b.Queue("SELECT 1")
	b.Queue("SELECT 2")
	if err := pool.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	root.End()

	type seen struct {
		name, op, ns, state string
		failed              bool
	}
	var spans []seen
	for _, s := range mem.GetSpans() {
		if s.Name == "rpc" {
			continue
		}
		if s.Parent.SpanID() != root.SpanContext().SpanID() {
			t.Errorf("span %s has parent %s; want the rpc's span", s.Name, s.Parent.SpanID())
		}
		v := seen{name: s.Name, failed: s.Status.Code == codes.Error}
		for _, kv := range s.Attributes {
			switch kv.Key {
			case "db.operation.name":
				v.op = kv.Value.AsString()
			case "db.namespace":
				v.ns = kv.Value.AsString()
			case "db.response.status_code":
				v.state = kv.Value.AsString()
			case "db.system.name", "db.operation.batch.size":
			default:
				t.Errorf("span %s has attribute %s; want only the db conventions' names", s.Name, kv.Key)
			}
			if kv.Value.String() == secret || slices.Contains(kv.Value.AsStringSlice(), secret) {
				t.Errorf("span %s attribute %s holds the query argument", s.Name, kv.Key)
			}
		}
		spans = append(spans, v)
	}
	want := []seen{
		{name: "pg INSERT", op: "INSERT", ns: schema},
		{name: "pg INSERT", op: "INSERT", ns: schema, state: "23505", failed: true},
		{name: "pg SELECT", op: "SELECT", ns: schema},
		{name: "pg BATCH", op: "BATCH", ns: schema},
	}
	if !slices.Equal(spans, want) {
		t.Errorf("spans = %+v\nwant    %+v", spans, want)
	}
}
