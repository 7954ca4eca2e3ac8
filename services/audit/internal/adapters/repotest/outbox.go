package repotest

import (
	"bytes"
	"testing"

	"github.com/securemsg/securemsg/services/internal/platform/outbox"
)

// RunOutbox holds an implementation of domain.Outbox to its contract; newOutbox returns a
// fresh, empty outbox for each subtest.
func RunOutbox(t *testing.T, newOutbox func(t *testing.T) OutboxUnderTest) {
	t.Run("events are written in order", func(t *testing.T) {
		t.Parallel()
		u := newOutbox(t)
		a, b := event("securemsg.audit.audit", "a"), event("securemsg.audit.audit", "b")
		if err := u.Outbox.WriteEvents(t.Context(), a, b); err != nil {
			t.Fatalf("WriteEvents() error = %v", err)
		}
		if err := u.Outbox.WriteEvents(t.Context()); err != nil {
			t.Fatalf("WriteEvents(nothing) error = %v", err)
		}
		got := u.Written(t)
		if len(got) != 2 || !sameEvent(got[0], a) || !sameEvent(got[1], b) {
			t.Errorf("outbox = %v, want %v then %v", got, a, b)
		}
	})
	t.Run("a batch with an event the outbox refuses writes nothing", func(t *testing.T) {
		t.Parallel()
		u := newOutbox(t)
		ok := event("securemsg.audit.audit", "a")
		// A subject with a space, a wildcard subject, an id written twice in one batch.
		for _, bad := range []outbox.Event{event("bad subject", "x"), event("securemsg.audit.>", "x"), ok} {
			if err := u.Outbox.WriteEvents(t.Context(), ok, bad); err == nil {
				t.Errorf("WriteEvents(%q) = nil error, want a refusal", bad.Subject)
			}
		}
		if got := u.Written(t); len(got) != 0 {
			t.Errorf("outbox after refused writes = %v, want empty", got)
		}
	})
}

func sameEvent(a, b outbox.Event) bool {
	return a.ID == b.ID && a.Subject == b.Subject && bytes.Equal(a.Payload, b.Payload)
}
