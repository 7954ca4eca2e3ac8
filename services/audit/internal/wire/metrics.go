package wire

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/natsx"
)

// checkpointScrapeTimeout bounds the checkpoint query one scrape makes.
const checkpointScrapeTimeout = 2 * time.Second

// checkpointCollector reports the newest signed checkpoint, read from the database when
// scraped (one indexed single-row query, bounded by checkpointScrapeTimeout). On scrape rather
// than remembered by this replica's checkpointer, because any replica may sign: the database is
// the only place that knows the newest. It exports the timestamp, not an age, so the age
// (time() - value) stays right even when scrapes fail. A failed query leaves the series out.
type checkpointCollector struct {
	latest          func(context.Context) (domain.Checkpoint, error)
	log             *slog.Logger
	timestamp, size *prometheus.Desc
}

func newCheckpointCollector(latest func(context.Context) (domain.Checkpoint, error), log *slog.Logger) *checkpointCollector {
	return &checkpointCollector{
		latest: latest, log: log,
		timestamp: prometheus.NewDesc("securemsg_audit_last_checkpoint_timestamp_seconds",
			"Unix time the newest signed checkpoint was made (0 until the first one).", nil, nil),
		size: prometheus.NewDesc("securemsg_audit_last_checkpoint_tree_size",
			"Entries covered by the newest signed checkpoint.", nil, nil),
	}
}

func (c *checkpointCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.timestamp
	ch <- c.size
}

func (c *checkpointCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), checkpointScrapeTimeout)
	defer cancel()
	cp, err := c.latest(ctx)
	switch {
	case errors.Is(err, domain.ErrNoCheckpoint):
		// An empty log has none yet: both series read 0 (alerts on the age require a size > 0).
		ch <- prometheus.MustNewConstMetric(c.timestamp, prometheus.GaugeValue, 0)
		ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, 0)
		return
	case err != nil:
		c.log.Debug("latest checkpoint query failed", "error", err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.timestamp, prometheus.GaugeValue, float64(cp.CreatedAt.UnixMilli())/1e3)
	ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(cp.TreeSize))
}

// registerMetrics adds the audit service's metrics to reg: the append-lag histogram (returned,
// for the ingest consumer), the newest checkpoint and the ingest consumer's lag.
func registerMetrics(reg prometheus.Registerer, latest func(context.Context) (domain.Checkpoint, error),
	lag *natsx.ConsumerLagCollector, log *slog.Logger) (func(time.Duration), error) {
	appendLag := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "securemsg_audit_append_lag_seconds",
		Help: "Time from an audited action (meta.occurred_at) to its record's append to the log.",
		// Normally well under a second (outbox relay, stream, one batch); minutes mean the
		// relay, NATS or the ingest consumer is stuck.
		Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900},
	})
	for _, c := range []prometheus.Collector{appendLag, newCheckpointCollector(latest, log), lag} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register audit metrics: %w", err)
		}
	}
	return func(d time.Duration) { appendLag.Observe(d.Seconds()) }, nil
}
