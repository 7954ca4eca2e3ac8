package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Leader runs the audit log's ingest on one replica at a time, with a Postgres session-level
// advisory lock. Appends take turns anyway (the
// log head is locked per batch), so a single ingester costs no throughput; what it buys is one
// anomaly detector that sees every record, so the counting rules (bulk_read,
// repeated_denials, ...) count an actor's records whichever replica a message would have
// reached. The others wait, and take over within RetryEvery of the leader's end: its session
// ends, and Postgres releases the session-level advisory lock it held.
type Leader struct {
	// Pool is the audit schema's pool; one of its connections holds the lock while leading.
	Pool *pgxpool.Pool
	// RetryEvery is how often a waiting replica tries the lock, and how often the leader checks
	// its connection (default 2s).
	RetryEvery time.Duration
	// OnAcquire runs each time this replica becomes the ingester, before work (the detector's
	// windows are rebuilt from the log there: the previous leader appended since).
	OnAcquire func(context.Context) error
	// Leading, when set, is told whether this replica ingests (a gauge).
	Leading func(bool)
	Log     *slog.Logger
}

// ingestLockClass is the first key of the advisory lock; the second is the schema's hash, so
// test schemas in one database do not contend.
const ingestLockClass = 0x61756469 // "audi"

// Run takes turns at leading until ctx ends: while it holds the lock it runs work with a
// context that ends when ctx does or the lock's connection fails.
func (l *Leader) Run(ctx context.Context, work func(context.Context) error) error {
	every := l.RetryEvery
	if every <= 0 {
		every = 2 * time.Second
	}
	log := l.Log
	if log == nil {
		log = slog.Default()
	}
	for ctx.Err() == nil {
		led, err := l.lead(ctx, every, work)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			log.Warn("audit ingest leadership ended", "error", err)
		case led:
			log.Info("audit ingest leadership ended")
		}
		if !led || err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(every):
			}
		}
	}
	return nil
}

// lead tries the lock once; holding it, it runs work until work returns, ctx ends or the
// connection fails, then gives the lock up. It reports whether it led.
func (l *Leader) lead(ctx context.Context, every time.Duration, work func(context.Context) error) (bool, error) {
	conn, err := l.Pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("acquire a connection for the ingest lock: %w", err)
	}
	defer conn.Release()
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext(current_schema()))`, ingestLockClass).Scan(&got); err != nil {
		return false, fmt.Errorf("try the ingest lock: %w", err)
	}
	if !got {
		return false, nil
	}
	defer func() {
		// Given up explicitly so a successor need not wait for the session to end; if the
		// connection is broken the session's end releases it anyway, and the connection is
		// closed rather than returned to the pool.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1, hashtext(current_schema()))`, ingestLockClass); err != nil {
			_ = conn.Conn().Close(uctx)
		}
	}()
	if l.Leading != nil {
		l.Leading(true)
		defer l.Leading(false)
	}
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if l.OnAcquire != nil {
		if err := l.OnAcquire(wctx); err != nil {
			return true, fmt.Errorf("prepare to ingest: %w", err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- work(wctx) }()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return true, err
		case <-tick.C:
			pctx, pcancel := context.WithTimeout(ctx, every)
			err := conn.Ping(pctx)
			pcancel()
			if err != nil && ctx.Err() == nil {
				// The lock may be gone with the session: stop ingesting before another replica
				// starts.
				cancel(errLockLost)
				// work ends because of the loss; its own error (a cancelled context) adds nothing.
				if werr := <-done; werr != nil && !errors.Is(werr, context.Canceled) {
					return true, errors.Join(fmt.Errorf("%w: %v", errLockLost, err), werr)
				}
				return true, fmt.Errorf("%w: %v", errLockLost, err)
			}
		}
	}
}

var errLockLost = errors.New("the ingest lock's connection failed")
