package wire

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/securemsg/securemsg/services/internal/platform/natsx"
	"github.com/securemsg/securemsg/services/notification/internal/app"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

// deliveryOutcomes exposes app.Service.DeliveryOutcomes as
// securemsg_notification_delivery_attempts_total{channel, outcome}. Both labels come from
// fixed sets (the four channels; sent, retrying, dead_lettered, suppressed): never a
// recipient, address or delivery id.
type deliveryOutcomes struct {
	svc  *app.Service
	desc *prometheus.Desc
}

func newDeliveryOutcomes(svc *app.Service) *deliveryOutcomes {
	return &deliveryOutcomes{svc: svc, desc: prometheus.NewDesc("securemsg_notification_delivery_attempts_total",
		"Delivery attempts recorded, by channel and outcome: sent, retrying (will be tried again), "+
			"dead_lettered (failed for good: permanent error, retries exhausted or outcome unknown) and suppressed.",
		[]string{"channel", "outcome"}, nil)}
}

// outcomeLabel is the metric's name for a recorded status.
func outcomeLabel(st domain.Status) string {
	switch st {
	case domain.StatusSent:
		return "sent"
	case domain.StatusRetrying:
		return "retrying"
	case domain.StatusFailed:
		return "dead_lettered"
	case domain.StatusSuppressed:
		return "suppressed"
	}
	return "other"
}

func (d *deliveryOutcomes) Describe(ch chan<- *prometheus.Desc) { ch <- d.desc }

func (d *deliveryOutcomes) Collect(ch chan<- prometheus.Metric) {
	for _, o := range d.svc.DeliveryOutcomes() {
		ch <- prometheus.MustNewConstMetric(d.desc, prometheus.CounterValue, float64(o.Count), o.Channel.String(), outcomeLabel(o.Status))
	}
}

// registerMetrics adds the service's own metrics to reg: delivery outcomes and the lag of the
// durable consumer of message events.
func registerMetrics(reg prometheus.Registerer, svc *app.Service, js natsx.ConsumerRef, lag *natsx.ConsumerLagCollector) error {
	for _, c := range []prometheus.Collector{newDeliveryOutcomes(svc), lag} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register notification metrics (consumer %s): %w", js.Durable, err)
		}
	}
	return nil
}
