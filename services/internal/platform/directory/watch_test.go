package directory_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	"github.com/securemsg/securemsg/services/internal/platform/directory"
	"github.com/securemsg/securemsg/services/internal/platform/natsx"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// TestWatchKeepsNewestAcrossHistory runs against the stack's NATS: an older version put after a
// newer one (an outbox re-publish) neither wins at start nor later, a deactivation put while
// watching is seen, and an undecodable value is skipped.
func TestWatchKeepsNewestAcrossHistory(t *testing.T) {
	nc := testkit.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	top := natsx.DefaultTopology()
	top.DirectoryBucket = testkit.UniqueNATSNames(t, nc).StreamPrefix + "DIRECTORY"
	kv, err := js.CreateOrUpdateKeyValue(t.Context(), top.DirectoryConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.DeleteKeyValue(context.Background(), top.DirectoryBucket) })
	put := func(key string, e *directoryv1.PersonEntry) {
		t.Helper()
		ev, err := directory.Put(top.DirectoryBucket, key, e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(t.Context(), key, ev.Payload); err != nil {
			t.Fatal(err)
		}
	}
	key := directory.PersonKey("user-1")
	put(key, &directoryv1.PersonEntry{Subject: "user-1", Status: directoryv1.PersonStatus_PERSON_STATUS_DEACTIVATED, Version: 7})
	put(key, &directoryv1.PersonEntry{Subject: "user-1", Status: directoryv1.PersonStatus_PERSON_STATUS_ACTIVE, Version: 6})
	if _, err := kv.Put(t.Context(), directory.PersonKey("user-2"), []byte{0xff, 0xff}); err != nil {
		t.Fatal(err)
	}

	snap := directory.NewSnapshot()
	loaded := make(chan struct{})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- directory.Watch(ctx, js, top.DirectoryBucket, snap, loaded, slog.New(slog.DiscardHandler))
	}()
	select {
	case <-loaded:
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not load")
	}
	if p, _ := snap.Person("user-1"); p.GetVersion() != 7 || p.GetStatus() != directoryv1.PersonStatus_PERSON_STATUS_DEACTIVATED {
		t.Fatalf("after load user-1 = %v, want version 7 (deactivated)", p)
	}
	put(key, &directoryv1.PersonEntry{Subject: "user-1", Status: directoryv1.PersonStatus_PERSON_STATUS_ACTIVE, Version: 8})
	testkit.WaitFor(t, 10*time.Second, "the reactivation reaches the snapshot", func() bool {
		p, _ := snap.Person("user-1")
		return p.GetVersion() == 8
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Watch = %v after cancel, want nil", err)
	}
}
