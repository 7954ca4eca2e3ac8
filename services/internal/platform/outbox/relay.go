package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/backoff"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// lockClass is the first key of the relay's advisory lock (the second is the schema's hash);
// it keeps the relay's locks apart from any other two-key advisory lock.
const lockClass = 0x0B0C

// Options tunes a Relay. Zero values take the defaults named on each field.
type Options struct {
	// Logger receives relay events (counts, ids, NATS errors; never payloads). Default slog.Default().
	Logger *slog.Logger
	// BatchSize is the most rows one transaction publishes (default 200).
	BatchSize int
	// Commits, the CommitWatch traced on the pool, wakes the relay as soon as this process has
	// committed outbox rows. Without it the relay only polls.
	Commits *CommitWatch
	// PollInterval is how often the relay looks for rows nobody woke it for: rows written by
	// another replica or outside the service (default 1s).
	PollInterval time.Duration
	// PublishTimeout bounds the wait for one batch's PubAcks (default 5s); it is also how long
	// the batch's transaction can stay open.
	PublishTimeout time.Duration
	// MinBackoff and MaxBackoff bound the exponential wait between failed batches, e.g. while
	// NATS is down (defaults 100ms and 30s).
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// Retention is how long published rows stay before the purge deletes them (default 24h).
	Retention time.Duration
	// PurgeInterval is how often the purge runs (default 5m).
	PurgeInterval time.Duration
	// Registerer receives the relay's metrics (default prometheus.DefaultRegisterer). Relays
	// sharing a registerer share the metric families, told apart by the schema label.
	Registerer prometheus.Registerer
}

func (o Options) withDefaults() Options {
	o.Logger = orDefault(o.Logger, slog.Default())
	o.BatchSize = orDefault(o.BatchSize, 200)
	o.PollInterval = orDefault(o.PollInterval, time.Second)
	o.PublishTimeout = orDefault(o.PublishTimeout, 5*time.Second)
	o.MinBackoff = orDefault(o.MinBackoff, 100*time.Millisecond)
	o.MaxBackoff = max(orDefault(o.MaxBackoff, 30*time.Second), o.MinBackoff)
	o.Retention = orDefault(o.Retention, 24*time.Hour)
	o.PurgeInterval = orDefault(o.PurgeInterval, 5*time.Minute)
	o.Registerer = orDefault(o.Registerer, prometheus.DefaultRegisterer)
	return o
}

// Relay publishes a schema's outbox rows to JetStream. The schema is the pool's search_path.
// Run one per service replica; see the package documentation for how replicas share the work.
type Relay struct {
	pool    *pgxpool.Pool
	js      jetstream.JetStream
	opts    Options
	log     *slog.Logger
	metrics *metrics

	// beforeMark runs after a batch was acknowledged and before it is marked published; tests
	// use it to simulate a crash between publish and mark.
	beforeMark func() error
}

// NewRelay returns a relay for the outbox table of pool's schema, publishing through js's
// connection. Start it with Run.
func NewRelay(pool *pgxpool.Pool, js jetstream.JetStream, opts Options) *Relay {
	opts = opts.withDefaults()
	return &Relay{
		pool: pool, js: js, opts: opts,
		log:     opts.Logger.With("component", "outbox-relay"),
		metrics: newMetrics(opts.Registerer, opts.Logger),
	}
}

// errNATSDown is returned by a batch attempted while the NATS connection is not up: nothing
// was published, the relay only backs off.
var errNATSDown = errors.New("outbox: nats connection is not connected")

// errContended is returned by a batch that found another replica publishing this schema's rows.
var errContended = errors.New("outbox: another replica holds the schema's relay lock")

// contendedRetry is the wait before trying again after errContended: a batch holds the lock
// for a few milliseconds.
const contendedRetry = 20 * time.Millisecond

// Run publishes until ctx is cancelled, then returns nil. It returns an error only if it
// cannot start (the publisher cannot be built); database and NATS failures are retried.
func (r *Relay) Run(ctx context.Context) error {
	// A publisher of our own with an ack timeout, so that an ack lost in an outage frees its
	// slot instead of stalling later publishes.
	pub, err := jetstream.New(r.js.Conn(),
		jetstream.WithPublishAsyncTimeout(r.opts.PublishTimeout),
		jetstream.WithPublishAsyncMaxPending(2*r.opts.BatchSize))
	if err != nil {
		return fmt.Errorf("outbox: publisher: %w", err)
	}

	schema, err := r.schema(ctx)
	if err != nil {
		return nil // ctx was cancelled while waiting for the database
	}
	log := r.log.With("schema", schema)
	m := r.metrics.forSchema(schema)

	var wake <-chan struct{} // nil: never ready
	if r.opts.Commits != nil {
		wake = r.opts.Commits.C()
	}

	// A reconnect ends the backoff at once: events written during an outage go out as soon as
	// NATS is back, not when the (up to MaxBackoff) wait runs out.
	reconnected := pub.Conn().StatusChanged(nats.CONNECTED)
	defer pub.Conn().RemoveStatusListener(reconnected)

	poll := time.NewTicker(r.opts.PollInterval)
	defer poll.Stop()
	var failures, contended int
	var lastGauge, lastPurge time.Time
	for {
		n, err := r.publishBatch(ctx, pub, m)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errContended) {
			// Another replica is publishing a batch that began before our rows committed. Try
			// again shortly, for up to a poll interval, rather than leave them to the poll.
			if contended++; time.Duration(contended)*contendedRetry < r.opts.PollInterval {
				if !sleep(ctx, contendedRetry) {
					return nil
				}
				continue
			}
			err, contended = nil, 0
		} else {
			contended = 0
		}
		if err != nil {
			failures++
			delay := r.backoff().Delay(failures)
			if failures == 1 || failures%20 == 0 {
				log.Warn("outbox publish failed; retrying", "error", err, "failures", failures, "retry_in", delay)
			}
			r.refreshGauges(ctx, m, log, &lastGauge)
			if !sleepUnless(ctx, delay, reconnected) {
				return nil
			}
			continue
		}
		if failures > 0 {
			log.Info("outbox publishing recovered", "after_failures", failures)
			failures = 0
		}
		if n == r.opts.BatchSize {
			continue // more is probably waiting
		}
		r.refreshGauges(ctx, m, log, &lastGauge)
		if time.Since(lastPurge) >= r.opts.PurgeInterval {
			lastPurge = time.Now()
			if _, err := r.Purge(ctx); err != nil && ctx.Err() == nil {
				log.Warn("outbox purge failed", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-poll.C:
		}
	}
}

// schema asks Postgres which schema the pool writes to, retrying until it answers.
func (r *Relay) schema(ctx context.Context) (string, error) {
	for attempt := 1; ; attempt++ {
		var schema *string
		err := r.pool.QueryRow(ctx, "SELECT current_schema()").Scan(&schema)
		if err == nil && schema != nil {
			return *schema, nil
		}
		if err == nil {
			err = errors.New("search_path names no existing schema")
		}
		r.log.Warn("outbox relay cannot read its schema; retrying", "error", err)
		if !sleep(ctx, r.backoff().Delay(attempt)) {
			return "", ctx.Err()
		}
	}
}

type row struct {
	seq     int64
	id      string
	subject string
	payload []byte
	headers map[string]string
}

type pending struct {
	row  row
	ack  jetstream.PubAckFuture
	err  error
	span trace.Span // the publish's span; nil for an event written outside any trace
}

// publishBatch publishes up to BatchSize unsent rows in one short transaction holding the
// schema's advisory lock. It returns how many rows it marked published.
func (r *Relay) publishBatch(ctx context.Context, pub jetstream.JetStream, m *schemaMetrics) (int, error) {
	if st := pub.Conn().Status(); st != nats.CONNECTED {
		return 0, fmt.Errorf("%w (status %v)", errNATSDown, st)
	}
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("outbox: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	// The marks need no flush of their own before the relay goes on: if Postgres crashes and
	// loses them, the rows are published again with the same Nats-Msg-Id, which JetStream drops
	// (an asynchronous commit is at most a few hundred milliseconds behind, far inside the
	// duplicate window). Not waiting keeps the relay's commits from queueing behind, and adding
	// to, the fsyncs of the transactions that write events.
	var leader bool
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1, hashtext(current_schema()))
		FROM set_config('synchronous_commit', 'off', true)`, lockClass).Scan(&leader); err != nil {
		return 0, fmt.Errorf("outbox: advisory lock: %w", err)
	}
	if !leader {
		return 0, errContended
	}
	rows, err := tx.Query(ctx, `SELECT seq, id, subject, payload, headers FROM outbox
		WHERE published_at IS NULL ORDER BY seq LIMIT $1`, r.opts.BatchSize)
	if err != nil {
		return 0, fmt.Errorf("outbox: select unsent: %w", err)
	}
	batch, err := pgx.CollectRows(rows, func(cr pgx.CollectableRow) (row, error) {
		var rw row
		var hj []byte
		if err := cr.Scan(&rw.seq, &rw.id, &rw.subject, &rw.payload, &hj); err != nil {
			return rw, err
		}
		if err := json.Unmarshal(hj, &rw.headers); err != nil {
			return rw, fmt.Errorf("headers of event %s: %w", rw.id, err)
		}
		return rw, nil
	})
	if err != nil {
		return 0, fmt.Errorf("outbox: read unsent: %w", err)
	}
	if len(batch) == 0 {
		return 0, tx.Commit(ctx)
	}

	// Publish the whole batch pipelined, in seq order, then collect the acks.
	inflight := make([]pending, len(batch))
	for i, rw := range batch {
		msg := nats.NewMsg(rw.subject)
		for k, v := range rw.headers {
			msg.Header.Set(k, v)
		}
		msg.Header.Set(jetstream.MsgIDHeader, rw.id)
		msg.Data = rw.payload
		inflight[i].row = rw
		inflight[i].span = publishSpan(ctx, rw.headers, msg.Header)
		inflight[i].ack, inflight[i].err = pub.PublishMsgAsync(msg)
	}
	defer func() {
		// Spans of publishes a shutdown left unanswered end here (endPublishSpan clears them).
		for i := range inflight {
			endPublishSpan(inflight[i].span, context.Canceled)
			inflight[i].span = nil
		}
	}()
	// The publisher's own ack timeout normally fires first; this bounds the wait regardless.
	waitCtx, cancelWait := context.WithTimeout(ctx, r.opts.PublishTimeout+time.Second)
	defer cancelWait()
	var acked []int64
	var failedSeqs []int64
	var failedErrs []string
	var firstErr error
	for i := range inflight {
		p := &inflight[i]
		if p.err == nil {
			select {
			case <-p.ack.Ok():
			case p.err = <-p.ack.Err():
			case <-waitCtx.Done():
				if ctx.Err() != nil {
					return 0, ctx.Err()
				}
				p.err = jetstream.ErrAsyncPublishTimeout
			}
		}
		endPublishSpan(p.span, p.err)
		p.span = nil
		if p.err != nil {
			failedSeqs = append(failedSeqs, p.row.seq)
			failedErrs = append(failedErrs, truncate(p.err.Error(), 500))
			if firstErr == nil {
				firstErr = fmt.Errorf("outbox: publish event %s to %s: %w", p.row.id, p.row.subject, p.err)
			}
			continue
		}
		acked = append(acked, p.row.seq)
	}

	if len(acked) > 0 && r.beforeMark != nil {
		if err := r.beforeMark(); err != nil {
			return 0, fmt.Errorf("outbox: before mark: %w", err)
		}
	}
	if len(acked) > 0 {
		if _, err := tx.Exec(ctx, `UPDATE outbox SET published_at = now(), attempts = attempts + 1, last_error = NULL
			WHERE seq = ANY($1)`, acked); err != nil {
			return 0, fmt.Errorf("outbox: mark published: %w", err)
		}
	}
	if len(failedSeqs) > 0 {
		if _, err := tx.Exec(ctx, `UPDATE outbox o SET attempts = o.attempts + 1, last_error = f.err
			FROM unnest($1::bigint[], $2::text[]) AS f(seq, err) WHERE o.seq = f.seq`, failedSeqs, failedErrs); err != nil {
			return 0, fmt.Errorf("outbox: record failures: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("outbox: commit batch: %w", err)
	}
	m.published.Add(float64(len(acked)))
	m.failed.Add(float64(len(failedSeqs)))
	return len(acked), firstErr
}

// Purge deletes rows published longer than Retention ago, in chunks so no single statement
// holds many row locks, and returns how many it deleted.
func (r *Relay) Purge(ctx context.Context) (int64, error) {
	const chunk = 1000
	var total int64
	cutoff := time.Now().Add(-r.opts.Retention)
	for {
		tag, err := r.pool.Exec(ctx, `DELETE FROM outbox WHERE seq IN (
			SELECT seq FROM outbox WHERE published_at IS NOT NULL AND published_at < $1 LIMIT $2)`, cutoff, chunk)
		if err != nil {
			return total, fmt.Errorf("outbox: purge: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < chunk {
			return total, nil
		}
	}
}

// refreshGauges updates backlog and oldest-unsent age, at most once per PollInterval.
func (r *Relay) refreshGauges(ctx context.Context, m *schemaMetrics, log *slog.Logger, last *time.Time) {
	if time.Since(*last) < r.opts.PollInterval {
		return
	}
	*last = time.Now()
	var backlog int64
	var age float64
	err := r.pool.QueryRow(ctx, `SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
		FROM outbox WHERE published_at IS NULL`).Scan(&backlog, &age)
	if err != nil {
		if ctx.Err() == nil {
			log.Debug("outbox backlog query failed", "error", err)
		}
		return
	}
	m.backlog.Set(float64(backlog))
	m.oldestAge.Set(age)
}

// backoff is the wait between failed batches: up to 20 % jitter so replicas spread out.
func (r *Relay) backoff() backoff.Exponential {
	return backoff.Exponential{Floor: r.opts.MinBackoff, Ceiling: r.opts.MaxBackoff, Jitter: 0.2}
}

// sleep waits d or until ctx is done; it reports whether the full wait happened.
func sleep(ctx context.Context, d time.Duration) bool {
	return sleepUnless[struct{}](ctx, d, nil)
}

// sleepUnless waits d, or less when wake delivers; false when ctx ended.
func sleepUnless[T any](ctx context.Context, d time.Duration, wake <-chan T) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	case <-wake:
		return true
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
