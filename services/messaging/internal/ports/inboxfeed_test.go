package ports

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

const feedPrefix = "test.events"

func encode(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDecodeInboxChange: every thread and message event messaging publishes becomes the change
// it reports, with its ids; other subjects are ignored; broken events are errors.
func TestDecodeInboxChange(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	meta := &eventsv1.EventMeta{EventId: "ev-1", OccurredAt: timestamppb.New(at)}
	base := domain.InboxChange{EventID: "ev-1", ThreadID: "th-1", OccurredAt: at}
	with := func(kind domain.ChangeKind, message, onlyFor string) domain.InboxChange {
		c := base
		c.Kind, c.MessageID, c.OnlyFor = kind, message, onlyFor
		return c
	}
	for _, tc := range []struct {
		name    string
		subject string
		event   proto.Message
		want    domain.InboxChange
		ok      bool
		wantErr bool
	}{
		{"thread created", ".thread.created.pool-a", &eventsv1.ThreadCreated{Meta: meta, ThreadId: "th-1", FirstMessageId: "m-1", PatientId: "p-1"},
			with(domain.ChangeThreadCreated, "m-1", ""), true, false},
		{"message created", ".message.created.pool-a", &eventsv1.MessageCreated{Meta: meta, ThreadId: "th-1", MessageId: "m-2"},
			with(domain.ChangeMessageCreated, "m-2", ""), true, false},
		{"read mark, the reader's alone", ".message.read.pool-a", &eventsv1.MessageRead{Meta: meta, ThreadId: "th-1", UpToMessageId: "m-2", ReaderSubject: "user-1"},
			with(domain.ChangeMessageRead, "m-2", "user-1"), true, false},
		{"retracted", ".message.retracted.pool-a", &eventsv1.MessageRetracted{Meta: meta, ThreadId: "th-1", MessageId: "m-2"},
			with(domain.ChangeMessageRetracted, "m-2", ""), true, false},
		{"assigned", ".thread.assigned.pool-a", &eventsv1.ThreadAssigned{Meta: meta, ThreadId: "th-1"}, with(domain.ChangeThreadAssigned, "", ""), true, false},
		{"transferred", ".thread.transferred.pool-b", &eventsv1.ThreadTransferred{Meta: meta, ThreadId: "th-1"}, with(domain.ChangeThreadTransferred, "", ""), true, false},
		{"closed", ".thread.closed.pool-a", &eventsv1.ThreadClosed{Meta: meta, ThreadId: "th-1"}, with(domain.ChangeThreadClosed, "", ""), true, false},
		{"reopened", ".thread.reopened.pool-a", &eventsv1.ThreadReopened{Meta: meta, ThreadId: "th-1"}, with(domain.ChangeThreadReopened, "", ""), true, false},
		{"no occurred_at", ".thread.closed.pool-a", &eventsv1.ThreadClosed{Meta: &eventsv1.EventMeta{EventId: "ev-1"}, ThreadId: "th-1"},
			domain.InboxChange{EventID: "ev-1", ThreadID: "th-1", Kind: domain.ChangeThreadClosed}, true, false},
		{"another service's event", ".attachment.scanned", &eventsv1.ThreadClosed{Meta: meta, ThreadId: "th-1"}, domain.InboxChange{}, false, false},
		{"another prefix", "x.thread.closed.pool-a", &eventsv1.ThreadClosed{Meta: meta, ThreadId: "th-1"}, domain.InboxChange{}, false, false},
		{"unknown kind", ".thread.archived.pool-a", &eventsv1.ThreadClosed{Meta: meta, ThreadId: "th-1"}, domain.InboxChange{}, false, false},
		{"no thread id", ".thread.closed.pool-a", &eventsv1.ThreadClosed{Meta: meta}, domain.InboxChange{}, false, true},
		{"no event id", ".thread.closed.pool-a", &eventsv1.ThreadClosed{ThreadId: "th-1"}, domain.InboxChange{}, false, true},
		{"read mark without reader", ".message.read.pool-a", &eventsv1.MessageRead{Meta: meta, ThreadId: "th-1"}, domain.InboxChange{}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			subject := tc.subject
			if subject[0] == '.' {
				subject = feedPrefix + subject
			}
			got, ok, err := decodeInboxChange(feedPrefix, subject, encode(t, tc.event))
			if (err != nil) != tc.wantErr || ok != tc.ok {
				t.Fatalf("decodeInboxChange(%s) = ok %v, err %v; want ok %v, error %v", subject, ok, err, tc.ok, tc.wantErr)
			}
			if ok {
				if d := cmp.Diff(tc.want, got); d != "" {
					t.Errorf("decodeInboxChange(%s) (-want +got):\n%s", subject, d)
				}
			}
		})
	}
	if _, ok, err := decodeInboxChange(feedPrefix, feedPrefix+".message.created.pool-a", []byte{0xff, 0xff}); ok || err == nil {
		t.Errorf("decodeInboxChange(garbage) = ok %v, err %v; want an error", ok, err)
	}
}

// FuzzDecodeInboxChange: whatever bytes arrive on whatever subject, decoding neither panics nor
// reports a change without its thread and event ids.
func FuzzDecodeInboxChange(f *testing.F) {
	f.Add("message.created.pool-a", encode(f, &eventsv1.MessageCreated{Meta: &eventsv1.EventMeta{EventId: "e"}, ThreadId: "t", MessageId: "m"}))
	f.Add("message.read.pool-a", encode(f, &eventsv1.MessageRead{Meta: &eventsv1.EventMeta{EventId: "e"}, ThreadId: "t", ReaderSubject: "u"}))
	f.Add("thread.transferred.pool-b", []byte{0x0a, 0x00})
	f.Fuzz(func(t *testing.T, kind string, data []byte) {
		c, ok, err := decodeInboxChange(feedPrefix, feedPrefix+"."+kind, data)
		if ok && (err != nil || c.ThreadID == "" || c.EventID == "" || c.Kind == 0) {
			t.Fatalf("decodeInboxChange(%q) = %+v, ok, %v: a change without ids", kind, c, err)
		}
	})
}
