package testkit_test

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/securemsg/securemsg/services/internal/testkit"
)

func TestStartNATSRestartKeepsPortAndStreams(t *testing.T) {
	t.Parallel()
	ns := testkit.StartNATS(t, nil)
	url := ns.URL()
	nc := ns.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "KEEP", Subjects: []string{"keep.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatalf("CreateStream() error = %v", err)
	}
	if _, err := js.Publish(t.Context(), "keep.one", []byte("1")); err != nil {
		t.Fatalf("Publish() error = %v", err)
	}
	ns.Shutdown()
	if ns.Running() {
		t.Errorf("Running() after Shutdown = true, want false")
	}
	ns.Restart()
	if ns.URL() != url {
		t.Errorf("URL() after Restart = %s, want %s", ns.URL(), url)
	}
	// The old client reconnects by itself and sees the stored message.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		s, err := js.Stream(ctx, "KEEP")
		var msgs uint64
		if err == nil {
			if info, ierr := s.Info(ctx); ierr == nil {
				msgs = info.State.Msgs
			}
		}
		cancel()
		if msgs == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream KEEP after restart: err=%v msgs=%d, want 1 message", err, msgs)
		}
		select { // poll, do not spin
		case <-t.Context().Done():
			t.Fatal("test context done")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestNewSchema(t *testing.T) {
	t.Parallel()
	pool := testkit.Postgres(t)
	var schema string
	t.Run("create", func(t *testing.T) {
		schema = testkit.NewSchema(t, pool)
		if !regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`).MatchString(schema) {
			t.Errorf("NewSchema() = %q, want a plain lower-case identifier", schema)
		}
		var n int
		if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema).Scan(&n); err != nil || n != 1 {
			t.Errorf("schema %s exists = %d (%v), want 1", schema, n, err)
		}
	})
	// The subtest's cleanup dropped it.
	var n int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema).Scan(&n); err != nil || n != 0 {
		t.Errorf("schema %s after cleanup = %d (%v), want 0", schema, n, err)
	}
}

func TestUniqueName(t *testing.T) {
	t.Parallel()
	a, b := testkit.UniqueName(t, "t_", 30), testkit.UniqueName(t, "t_", 30)
	if a == b || len(a) > 30 {
		t.Errorf("UniqueName() = %q, %q; want two different names of at most 30 bytes", a, b)
	}
}
