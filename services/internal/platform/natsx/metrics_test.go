package natsx_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/securemsg/securemsg/services/internal/platform/natsx"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

func TestConsumerLagCollector(t *testing.T) {
	t.Parallel()
	nc := testkit.StartNATS(t, nil).Connect(t)
	js, top := ensureTestStreams(t, nc)
	if _, err := js.CreateOrUpdateConsumer(t.Context(), top.EventsStream, jetstream.ConsumerConfig{
		Durable: "lagging", AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := js.Publish(t.Context(), top.EventsSubject+".message.created.p1", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	c := natsx.NewConsumerLagCollector(js, time.Second,
		natsx.ConsumerRef{Stream: top.EventsStream, Durable: "lagging"},
		natsx.ConsumerRef{Stream: top.EventsStream, Durable: "missing"})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)

	want := strings.NewReplacer("STREAM", top.EventsStream).Replace(`
# HELP securemsg_nats_consumer_info_up 1 when the last scrape could read the consumer's info from the server, else 0.
# TYPE securemsg_nats_consumer_info_up gauge
securemsg_nats_consumer_info_up{durable="lagging",stream="STREAM"} 1
securemsg_nats_consumer_info_up{durable="missing",stream="STREAM"} 0
# HELP securemsg_nats_consumer_num_pending Messages on the stream matching the consumer's filter not yet delivered to it (its lag).
# TYPE securemsg_nats_consumer_num_pending gauge
securemsg_nats_consumer_num_pending{durable="lagging",stream="STREAM"} 3
`)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"securemsg_nats_consumer_info_up", "securemsg_nats_consumer_num_pending"); err != nil {
		t.Errorf("GatherAndCompare() = %v", err)
	}
}
