package wire

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/securemsg/securemsg/services/attachment/internal/domain"
)

// scrapeTimeout bounds the database query and the clamd ping one scrape makes.
const scrapeTimeout = 2 * time.Second

// instrumentedScanner times every scan by outcome (clean, infected, error) as
// securemsg_attachment_scan_duration_seconds. The outcome is the only label: never a file name,
// attachment id or signature.
type instrumentedScanner struct {
	next    domain.Scanner
	seconds *prometheus.HistogramVec
}

func (s instrumentedScanner) Scan(ctx context.Context, r io.Reader) (domain.Verdict, error) {
	start := time.Now()
	v, err := s.next.Scan(ctx, r)
	outcome := "clean"
	switch {
	case err != nil:
		outcome = "error"
	case v.Infected:
		outcome = "infected"
	}
	s.seconds.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	return v, err
}

// pinger is the part of the clamd client the availability gauge needs; test scanners lack it.
type pinger interface {
	Ping(ctx context.Context) error
}

// scanCollector reports the scan backlog and clamd's availability, computed when scraped: one
// count over the partial index attachments_pending and one clamd PING, both bounded by
// scrapeTimeout. On-scrape rather than a background sampler because both are cheap, the figures
// are then as fresh as the scrape, and nothing runs while nobody scrapes. A query that fails
// leaves the backlog series out of that scrape (an unknown backlog is not an empty one).
type scanCollector struct {
	pool  *pgxpool.Pool
	clamd pinger // nil: no clamd_up series
	log   *slog.Logger
	descs struct{ pending, oldest, clamdUp *prometheus.Desc }
}

func newScanCollector(pool *pgxpool.Pool, scanner domain.Scanner, log *slog.Logger) *scanCollector {
	c := &scanCollector{pool: pool, log: log}
	if p, ok := scanner.(pinger); ok {
		c.clamd = p
	}
	c.descs.pending = prometheus.NewDesc("securemsg_attachment_scans_pending",
		"Attachments uploaded and waiting for a virus-scan verdict (state pending).", nil, nil)
	c.descs.oldest = prometheus.NewDesc("securemsg_attachment_scan_oldest_pending_age_seconds",
		"Age of the oldest attachment waiting for a scan verdict (0 when none).", nil, nil)
	c.descs.clamdUp = prometheus.NewDesc("securemsg_attachment_clamd_up",
		"1 when clamd answered PING within the scrape timeout, else 0.", nil, nil)
	return c
}

func (c *scanCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.descs.pending
	ch <- c.descs.oldest
	ch <- c.descs.clamdUp
}

func (c *scanCollector) Collect(ch chan<- prometheus.Metric) {
	c.collectBacklog(ch)
	if c.clamd != nil {
		// A budget of its own: a Postgres that hangs must not make clamd look down (and page).
		ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
		defer cancel()
		up := 1.0
		if err := c.clamd.Ping(ctx); err != nil {
			up = 0
		}
		ch <- prometheus.MustNewConstMetric(c.descs.clamdUp, prometheus.GaugeValue, up)
	}
}

func (c *scanCollector) collectBacklog(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	var pending int64
	var age float64
	err := c.pool.QueryRow(ctx, `SELECT count(*), coalesce(extract(epoch FROM now() - min(create_time)), 0)::float8
		FROM attachments WHERE state = 'pending'`).Scan(&pending, &age)
	if err != nil {
		c.log.Debug("scan backlog query failed", "error", err)
	} else {
		ch <- prometheus.MustNewConstMetric(c.descs.pending, prometheus.GaugeValue, float64(pending))
		ch <- prometheus.MustNewConstMetric(c.descs.oldest, prometheus.GaugeValue, age)
	}
}

// instrumentScanner registers the scan metrics in reg and returns scanner wrapped so that
// every scan is timed.
func instrumentScanner(reg prometheus.Registerer, pool *pgxpool.Pool, scanner domain.Scanner, log *slog.Logger) (domain.Scanner, error) {
	if scanner == nil {
		return nil, nil // app.New reports the missing scanner
	}
	seconds := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "securemsg_attachment_scan_duration_seconds",
		Help: "Virus scans by outcome (clean, infected, error) and how long clamd took.",
		// Small files scan in milliseconds; a 25 MiB file takes seconds; the clamd timeout is minutes.
		Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
	}, []string{"outcome"})
	if err := reg.Register(seconds); err != nil {
		return nil, fmt.Errorf("register scan metrics: %w", err)
	}
	for _, outcome := range []string{"clean", "infected", "error"} {
		seconds.WithLabelValues(outcome) // zeros from the start, not gaps
	}
	if err := reg.Register(newScanCollector(pool, scanner, log)); err != nil {
		return nil, fmt.Errorf("register scan metrics: %w", err)
	}
	return instrumentedScanner{next: scanner, seconds: seconds}, nil
}
