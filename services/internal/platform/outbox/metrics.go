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
	// Every family is securemsg_outbox_<name>, registered (or shared) as it is made.
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "securemsg", Subsystem: "outbox", Name: name, Help: help}
	}
	counter := func(name, help string) *prometheus.CounterVec {
		return register(reg, log, prometheus.NewCounterVec(prometheus.CounterOpts(opts(name, help)), labels))
	}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return register(reg, log, prometheus.NewGaugeVec(prometheus.GaugeOpts(opts(name, help)), labels))
	}
	return &metrics{
		published: counter("published_total", "Outbox events acknowledged by JetStream and marked published."),
		failed:    counter("publish_failures_total", "Outbox publish attempts that failed (the event is retried)."),
		backlog:   gauge("backlog", "Outbox events not yet published."),
		oldestAge: gauge("oldest_unsent_age_seconds", "Age of the oldest unpublished outbox event (0 when none)."),
	}
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
