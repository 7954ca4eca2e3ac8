package natsx

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// ConsumerRef names a durable consumer on a stream.
type ConsumerRef struct {
	Stream, Durable string
}

// ConsumerLagCollector reports the server's view of durable consumers: messages not yet
// delivered (num_pending, the lag), delivered but not acknowledged, and redelivered. It asks
// the server on each scrape (one CONSUMER.INFO request per consumer, bounded by a short
// timeout) rather than sampling in the background: the figures are the server's, so a scrape
// is never staler than the scrape itself, and an idle service costs nothing between scrapes.
// Every replica of a service reports the same consumer; aggregate with max, not sum.
//
// Labels are the stream and durable names: fixed by the service's configuration, never ids.
type ConsumerLagCollector struct {
	js        jetstream.JetStream
	consumers []ConsumerRef
	timeout   time.Duration

	pending, ackPending, redelivered, up *prometheus.Desc
}

// NewConsumerLagCollector returns a collector for consumers through js; timeout bounds each
// scrape's requests together (default 2s).
func NewConsumerLagCollector(js jetstream.JetStream, timeout time.Duration, consumers ...ConsumerRef) *ConsumerLagCollector {
	labels := []string{"stream", "durable"}
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("securemsg_nats_consumer_"+name, help, labels, nil)
	}
	return &ConsumerLagCollector{
		js: js, consumers: consumers, timeout: orDefault(timeout, 2*time.Second),
		pending:     desc("num_pending", "Messages on the stream matching the consumer's filter not yet delivered to it (its lag)."),
		ackPending:  desc("num_ack_pending", "Messages delivered to the consumer and not yet acknowledged."),
		redelivered: desc("num_redelivered", "Messages delivered more than once and not yet acknowledged."),
		up:          desc("info_up", "1 when the last scrape could read the consumer's info from the server, else 0."),
	}
}

// Describe implements prometheus.Collector.
func (c *ConsumerLagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.ackPending
	ch <- c.redelivered
	ch <- c.up
}

// Collect implements prometheus.Collector. A consumer whose info cannot be read reports
// info_up 0 and no lag figures (an unknown lag is not a lag of zero).
func (c *ConsumerLagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	for _, ref := range c.consumers {
		info, err := c.info(ctx, ref)
		if err != nil {
			ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0, ref.Stream, ref.Durable)
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1, ref.Stream, ref.Durable)
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(info.NumPending), ref.Stream, ref.Durable)
		ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(info.NumAckPending), ref.Stream, ref.Durable)
		ch <- prometheus.MustNewConstMetric(c.redelivered, prometheus.GaugeValue, float64(info.NumRedelivered), ref.Stream, ref.Durable)
	}
}

func (c *ConsumerLagCollector) info(ctx context.Context, ref ConsumerRef) (*jetstream.ConsumerInfo, error) {
	cons, err := c.js.Consumer(ctx, ref.Stream, ref.Durable)
	if err != nil {
		return nil, err
	}
	// Consumer already fetched the info; CachedInfo avoids a second request.
	return cons.CachedInfo(), nil
}
