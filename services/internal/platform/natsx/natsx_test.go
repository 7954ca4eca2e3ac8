package natsx_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/securemsg/securemsg/services/internal/platform/natsx"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// backends runs a test against an embedded server and against the dev stack's NATS.
var backends = []struct {
	name    string
	connect func(t *testing.T) *nats.Conn
}{
	{"embedded", func(t *testing.T) *nats.Conn { return testkit.StartNATS(t, nil).Connect(t) }},
	{"stack", func(t *testing.T) *nats.Conn { return testkit.NATS(t) }},
}

func testTopology(t *testing.T, nc *nats.Conn) natsx.Topology {
	names := testkit.UniqueNATSNames(t, nc)
	top := natsx.DefaultTopology()
	top.EventsStream = names.StreamPrefix + "EVENTS"
	top.EventsSubject = names.SubjectPrefix + ".events"
	top.AuditStream = names.StreamPrefix + "AUDIT"
	top.AuditSubject = names.SubjectPrefix + ".audit"
	top.MaxAge = time.Hour
	top.DuplicateWindow = 2 * time.Minute
	return top
}

// ensureTestStreams creates a test topology's streams on nc and returns JetStream with it.
func ensureTestStreams(t *testing.T, nc *nats.Conn) (jetstream.JetStream, natsx.Topology) {
	t.Helper()
	js, err := natsx.JetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	top := testTopology(t, nc)
	if err := natsx.EnsureStreams(t.Context(), js, top); err != nil {
		t.Fatalf("EnsureStreams() error = %v", err)
	}
	return js, top
}

func TestEnsureStreams(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			js, top := ensureTestStreams(t, b.connect(t))
			// A changed limit converges on the next start.
			top.MaxAge = 2 * time.Hour
			if err := natsx.EnsureStreams(t.Context(), js, top); err != nil {
				t.Fatalf("EnsureStreams() second call error = %v", err)
			}
			for _, name := range []string{top.EventsStream, top.AuditStream} {
				s, err := js.Stream(t.Context(), name)
				if err != nil {
					t.Fatalf("Stream(%s) error = %v", name, err)
				}
				cfg := s.CachedInfo().Config
				if cfg.MaxAge != 2*time.Hour || cfg.Duplicates != 2*time.Minute || cfg.Storage != jetstream.FileStorage {
					t.Errorf("stream %s config = MaxAge %v Duplicates %v Storage %v, want 2h, 2m, file", name, cfg.MaxAge, cfg.Duplicates, cfg.Storage)
				}
			}
			// Duplicate window: the same Nats-Msg-Id is stored once.
			for range 2 {
				if _, err := js.Publish(t.Context(), top.EventsSubject+".thread.created", []byte("x"), jetstream.WithMsgID("evt-1")); err != nil {
					t.Fatalf("Publish() error = %v", err)
				}
			}
			s, _ := js.Stream(t.Context(), top.EventsStream)
			info, err := s.Info(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if info.State.Msgs != 1 {
				t.Errorf("messages after publishing one id twice = %d, want 1", info.State.Msgs)
			}
		})
	}
}

func TestConsumeAckAndRedelivery(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			js, top := ensureTestStreams(t, b.connect(t))

			const n = 20
			// Message i: "fail-once" fails on its first delivery, "poison" fails permanently,
			// everything else succeeds at once.
			kind := func(i int) string {
				switch {
				case i%5 == 0:
					return "fail-once"
				case i == 7:
					return "poison"
				default:
					return "ok"
				}
			}
			var mu sync.Mutex
			deliveries := map[string]int{}
			acked := map[string]bool{}
			handler := func(_ context.Context, msg jetstream.Msg) error {
				id := msg.Headers().Get(jetstream.MsgIDHeader)
				mu.Lock()
				defer mu.Unlock()
				deliveries[id]++
				switch string(msg.Data()) {
				case "fail-once":
					if deliveries[id] == 1 {
						return errors.New("transient failure")
					}
				case "poison":
					return natsx.Permanent(errors.New("cannot decode"))
				}
				acked[id] = true
				return nil
			}

			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() {
				done <- natsx.Consume(ctx, js, natsx.ConsumerConfig{
					Stream:     top.EventsStream,
					Durable:    "test-consumer",
					AckWait:    5 * time.Second,
					MaxDeliver: 5,
					BackOff:    []time.Duration{50 * time.Millisecond},
				}, handler)
			}()
			for i := range n {
				if _, err := js.Publish(t.Context(), top.EventsSubject+".message.created", []byte(kind(i)),
					jetstream.WithMsgID(fmt.Sprintf("evt-%d", i))); err != nil {
					t.Fatalf("Publish(%d) error = %v", i, err)
				}
			}
			wantAcked := n - 1
			testkit.WaitFor(t, 15*time.Second, "all good messages acked", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(acked) == wantAcked
			})
			// The server agrees: nothing pending, nothing waiting for an ack.
			cons, err := js.Consumer(t.Context(), top.EventsStream, "test-consumer")
			if err != nil {
				t.Fatal(err)
			}
			testkit.WaitFor(t, 10*time.Second, "consumer to settle", func() bool {
				info, err := cons.Info(t.Context())
				return err == nil && info.NumPending == 0 && info.NumAckPending == 0
			})
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Consume() error = %v, want nil after cancel", err)
			}

			mu.Lock()
			defer mu.Unlock()
			for i := range n {
				id := fmt.Sprintf("evt-%d", i)
				want := map[string]int{"ok": 1, "fail-once": 2, "poison": 1}[kind(i)]
				if deliveries[id] != want {
					t.Errorf("deliveries of %s (%s) = %d, want %d", id, kind(i), deliveries[id], want)
				}
			}
		})
	}
}

func TestReconnectDelay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		attempts int
		min, max time.Duration
	}{
		{"first", 1, 100 * time.Millisecond, 120 * time.Millisecond},
		{"third doubles twice", 3, 400 * time.Millisecond, 480 * time.Millisecond},
		{"capped", 50, time.Second, 1200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := natsx.ReconnectDelay(tt.attempts, 100*time.Millisecond, time.Second)
			if got < tt.min || got > tt.max {
				t.Errorf("ReconnectDelay(%d) = %v, want in [%v, %v]", tt.attempts, got, tt.min, tt.max)
			}
		})
	}
}
