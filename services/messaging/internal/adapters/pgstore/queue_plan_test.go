package pgstore_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/securemsg/securemsg/services/internal/testkit/benchkit"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
	"github.com/securemsg/securemsg/services/messaging/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
	"github.com/securemsg/securemsg/services/messaging/migrations"
)

const (
	queuePool  = "pool-queue"
	queueNurse = "user-queue-nurse"
)

// seedQueue fills pool-queue with n threads (nine in ten open: a third of those assigned, a
// fifth of those to queueNurse; the rest closed) and a quieter pool with n/4 more, with read
// marks for queueNurse on a tenth of them, then ANALYZEs, as a busy clinic's database would be.
func seedQueue(tb testing.TB, pool *pgxpool.Pool, n int) {
	tb.Helper()
	_, err := pool.Exec(tb.Context(), `
		INSERT INTO threads (id, pool_id, patient_id, category, sensitivity, status, subject_sealed,
			created_by_subject, created_by_role, assignee_subject, created_at, updated_at, last_message_at, message_count)
		SELECT gen_random_uuid(), CASE WHEN i % 5 = 0 THEN 'pool-quiet' ELSE $1 END, 'p-' || (i % 9973), 1 + i % 7, 1,
			CASE WHEN i % 10 = 9 THEN 3 WHEN i % 3 = 0 THEN 2 ELSE 1 END, '\x00',
			'user-p-' || (i % 9973), 1,
			CASE WHEN i % 10 <> 9 AND i % 3 = 0 THEN CASE WHEN i % 21 = 0 THEN $2 ELSE 'user-clin-' || (i % 40) END ELSE '' END,
			now() - (i || ' minutes')::interval, now(), now() - (i || ' minutes')::interval, 1 + i % 4
		FROM generate_series(1, $3::int) AS i`, queuePool, queueNurse, n+n/4)
	if err != nil {
		tb.Fatalf("seed threads: %v", err)
	}
	if _, err := pool.Exec(tb.Context(), `INSERT INTO viewer_state (thread_id, subject, read_seq)
		SELECT id, $1, message_count FROM threads WHERE random() < 0.1`, queueNurse); err != nil {
		tb.Fatalf("seed read marks: %v", err)
	}
	if _, err := pool.Exec(tb.Context(), `ANALYZE threads; ANALYZE viewer_state`); err != nil {
		tb.Fatalf("analyze: %v", err)
	}
}

// queueQueries are the queries a care-team app sends working pool-queue: its queues' first
// pages and their counts.
func queueQueries() map[string]domain.ListQuery {
	open := []domain.Status{domain.StatusOpen, domain.StatusAssigned}
	base := domain.ListQuery{Viewer: queueNurse, PoolIDs: []string{queuePool, "pool-quiet"}, FilterPoolIDs: []string{queuePool},
		Box: domain.BoxInbox, Statuses: open, Limit: 51}
	with := func(edit func(*domain.ListQuery)) domain.ListQuery { q := base; edit(&q); return q }
	return map[string]domain.ListQuery{
		"open":       base,
		"unassigned": with(func(q *domain.ListQuery) { q.Assignee = domain.AssigneeUnassigned }),
		"mine":       with(func(q *domain.ListQuery) { q.Assignee = domain.AssigneeMe }),
		"colleague":  with(func(q *domain.ListQuery) { q.Assignee, q.AssigneeSubject = domain.AssigneeMember, "user-clin-7" }),
		"unread":     with(func(q *domain.ListQuery) { q.UnreadOnly = true }),
	}
}

// plan is EXPLAIN's tree, as much of it as the checks read.
type plan struct {
	NodeType  string `json:"Node Type"`
	Relation  string `json:"Relation Name"`
	IndexName string `json:"Index Name"`
	Plans     []plan `json:"Plans"`
}

func (p plan) walk(visit func(plan)) {
	visit(p)
	for _, c := range p.Plans {
		c.walk(visit)
	}
}

func explain(tb testing.TB, pool *pgxpool.Pool, opts, sql string, args []any) string {
	tb.Helper()
	var out strings.Builder
	rows, err := pool.Query(tb.Context(), "EXPLAIN ("+opts+") "+sql, args...)
	if err != nil {
		tb.Fatalf("EXPLAIN: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			tb.Fatalf("EXPLAIN: %v", err)
		}
		out.WriteString(line + "\n")
	}
	return out.String()
}

// TestPoolQueuePlans: each queue's first page is read in activity order from an index and
// stops after the page: no sort of the pool and no sequential scan of threads, so the page
// costs the same at 5,000 threads as at 50,000 (make bench: BenchmarkPoolQueue).
func TestPoolQueuePlans(t *testing.T) {
	t.Parallel()
	pool := servicetest.MigratedPool(t, migrations.FS)
	seedQueue(t, pool, 5000)
	for name, q := range queueQueries() {
		sql, args, _ := pgstore.ListThreadsSQL(q)
		var plans []struct {
			Plan plan `json:"Plan"`
		}
		if err := json.Unmarshal([]byte(explain(t, pool, "FORMAT JSON", sql, args)), &plans); err != nil || len(plans) != 1 {
			t.Fatalf("%s: EXPLAIN JSON: %v", name, err)
		}
		var indexes []string
		sorted := false
		plans[0].Plan.walk(func(p plan) {
			switch {
			case p.NodeType == "Sort" || p.NodeType == "Incremental Sort":
				sorted = true
			case p.Relation == "threads" && p.NodeType == "Seq Scan":
				t.Errorf("%s: threads is scanned sequentially:\n%s", name, explain(t, pool, "COSTS OFF", sql, args))
			case strings.HasPrefix(p.IndexName, "threads_"):
				indexes = append(indexes, p.IndexName)
			}
		})
		personal := q.Assignee == domain.AssigneeMe || q.Assignee == domain.AssigneeMember
		switch {
		case len(indexes) == 0:
			t.Errorf("%s: no index scan of threads:\n%s", name, explain(t, pool, "COSTS OFF", sql, args))
		case personal && !slices.ContainsFunc(indexes, func(ix string) bool { return strings.Contains(ix, "assignee") }):
			// One person's queue is found by an assignee index; sorting those few rows is fine.
			t.Errorf("%s: a person's queue is not found by its assignee:\n%s", name, explain(t, pool, "COSTS OFF", sql, args))
		case !personal && sorted:
			// A pool-wide queue must be read in activity order and stop after the page.
			t.Errorf("%s: the pool's queue is sorted, not read in index order:\n%s", name, explain(t, pool, "COSTS OFF", sql, args))
		}
	}
}

// BenchmarkPoolQueue reads the first page of each queue of a pool with 50,000 threads, and
// their counts, against a baseline of reading one thread by id in the same database. It logs
// each query's EXPLAIN ANALYZE (go test -bench PoolQueue -v shows them).
func BenchmarkPoolQueue(b *testing.B) {
	pool := servicetest.MigratedPool(b, migrations.FS)
	seedQueue(b, pool, 40000) // 40,000 + 10,000 quieter: 50,000 threads, 36,000 in pool-queue open
	store := pgstore.New(pool)
	var someID string
	if err := pool.QueryRow(b.Context(), `SELECT id::text FROM threads LIMIT 1`).Scan(&someID); err != nil {
		b.Fatal(err)
	}
	timeOf := func(n int, op func() error) float64 {
		start := time.Now()
		for range n {
			if err := op(); err != nil {
				b.Fatal(err)
			}
		}
		return float64(time.Since(start).Microseconds()) / float64(n)
	}
	const n = 200
	baseline := timeOf(n, func() error { _, err := store.Thread(b.Context(), someID); return err })
	type result struct {
		unit  string
		value float64
	}
	var results []result
	for name, q := range queueQueries() {
		sql, args, _ := pgstore.ListThreadsSQL(q)
		b.Logf("%s page:\n%s", name, explain(b, pool, "ANALYZE, BUFFERS", sql, args))
		results = append(results, result{name + "-page-µs", timeOf(n, func() error { _, err := store.ListThreads(b.Context(), q); return err })})
	}
	q := queueQueries()["open"]
	sql, args, _ := pgstore.CountThreadsSQL(q)
	b.Logf("counts:\n%s", explain(b, pool, "ANALYZE, BUFFERS", sql, args))
	results = append(results, result{"counts-µs", timeOf(n/4, func() error { _, err := store.CountThreads(b.Context(), q); return err })})
	unassigned := queueQueries()["unassigned"]
	for b.Loop() {
		if _, err := store.ListThreads(b.Context(), unassigned); err != nil {
			b.Fatal(err)
		}
	}
	// After the loop: b.Loop's first call resets the timer, which drops reported metrics.
	for _, r := range results {
		benchkit.Compare(b, r.value, baseline, r.unit)
	}
}
