package outbox

import (
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the relay's Prometheus families; the only label is the schema (never a subject
// with ids in it, never anything from a payload).
type metrics struct {
	published *prometheus.CounterVec
	failed    *prometheus.CounterVec
	backlog   *prometheus.GaugeVec
	oldestAge *prometheus.GaugeVec
}

type schemaMetrics struct {
	published prometheus.Counter
	failed    prometheus.Counter
	backlog   prometheus.Gauge
	oldestAge prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, log *slog.Logger) *metrics {
	labels := []string{"schema"}
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "securemsg", Subsystem: "outbox", Name: "published_total",
			Help: "Outbox events acknowledged by JetStream and marked published.",
		}, labels),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "securemsg", Subsystem: "outbox", Name: "publish_failures_total",
			Help: "Outbox publish attempts that failed (the event is retried).",
		}, labels),
		backlog: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "securemsg", Subsystem: "outbox", Name: "backlog",
			Help: "Outbox events not yet published.",
		}, labels),
		oldestAge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "securemsg", Subsystem: "outbox", Name: "oldest_unsent_age_seconds",
			Help: "Age of the oldest unpublished outbox event (0 when none).",
		}, labels),
	}
	m.published = register(reg, log, m.published)
	m.failed = register(reg, log, m.failed)
	m.backlog = register(reg, log, m.backlog)
	m.oldestAge = register(reg, log, m.oldestAge)
	return m
}

// register registers c, or returns the collector already registered under the same name so
// several relays in one process (one per schema, or tests) share a family.
func register[C prometheus.Collector](reg prometheus.Registerer, log *slog.Logger, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	log.Warn("outbox metrics not registered", "error", err)
	return c
}

func (m *metrics) forSchema(schema string) *schemaMetrics {
	return &schemaMetrics{
		published: m.published.WithLabelValues(schema),
		failed:    m.failed.WithLabelValues(schema),
		backlog:   m.backlog.WithLabelValues(schema),
		oldestAge: m.oldestAge.WithLabelValues(schema),
	}
}
