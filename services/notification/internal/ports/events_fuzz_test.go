package ports

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

const fuzzPrefix = "securemsg.events"

// FuzzDecodeEvent feeds arbitrary subjects and NATS payloads to the consumer's decode+validate
// step (no store, no side effects): it must never panic; an event it returns is of the type
// the subject names and passes the use case's checks (so a use case never sees half-parsed
// input); a rejected payload is never returned; and rejections leak no payload text.
func FuzzDecodeEvent(f *testing.F) {
	at := timestamppb.Now()
	created := &eventsv1.MessageCreated{
		Meta:     &eventsv1.EventMeta{EventId: "6f1c8a2e-1b0c-4d7e-9a3f-0c1d2e3f4a5b", OccurredAt: at, Producer: commonv1.Component_COMPONENT_MESSAGING},
		ThreadId: "0d9e8f7a-6b5c-4d3e-8f1a-2b3c4d5e6f70", MessageId: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
		PoolId: "pool-a", PatientId: "patient-1", SenderSubject: "clin-1", RecipientSubjects: []string{"patient-1", "proxy-1"},
		Sensitivity: commonv1.Sensitivity_SENSITIVITY_NORMAL,
	}
	read := &eventsv1.MessageRead{
		Meta:     &eventsv1.EventMeta{EventId: "7f1c8a2e-1b0c-4d7e-9a3f-0c1d2e3f4a5b", OccurredAt: at, Producer: commonv1.Component_COMPONENT_MESSAGING},
		ThreadId: created.ThreadId, PoolId: "pool-a", UpToMessageId: created.MessageId, ReaderSubject: "patient-1", UnreadCount: 2,
	}
	badPool := proto.Clone(created).(*eventsv1.MessageCreated)
	badPool.PoolId = "pool a.>"
	hugeSensitivity := proto.Clone(created).(*eventsv1.MessageCreated)
	hugeSensitivity.Sensitivity = commonv1.Sensitivity(1<<16 + int32(commonv1.Sensitivity_SENSITIVITY_ADOLESCENT_CONFIDENTIAL))
	noReader := proto.Clone(read).(*eventsv1.MessageRead)
	noReader.ReaderSubject = ""
	mustMarshal := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add(fuzzPrefix+".message.created.pool-a", mustMarshal(created))
	f.Add(fuzzPrefix+".message.read.pool-a", mustMarshal(read))
	f.Add(fuzzPrefix+".message.created.pool-a", mustMarshal(read)) // wrong type for the subject
	f.Add(fuzzPrefix+".message.created.pool-a", mustMarshal(badPool))
	f.Add(fuzzPrefix+".message.created.pool-a", mustMarshal(hugeSensitivity))
	f.Add(fuzzPrefix+".message.read.pool-a", mustMarshal(noReader))
	f.Add(fuzzPrefix+".message.read.pool-a", []byte{0x0a, 0xff})
	f.Add(fuzzPrefix+".message.retracted.pool-a", mustMarshal(created))
	f.Add(fuzzPrefix+".message.created.", []byte{})

	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		ev, err := decodeEvent(fuzzPrefix, subject, data)
		if err != nil {
			if ev != nil {
				t.Fatalf("decodeEvent returned an event with error %v", err)
			}
			if msg := err.Error(); msg != "undecodable MessageCreated" && msg != "undecodable MessageRead" && !errors.Is(err, domain.ErrMalformedEvent) {
				t.Fatalf("decodeEvent error = %q, want an undecodable or malformed-event error", msg)
			}
			return
		}
		rest := strings.TrimPrefix(subject, fuzzPrefix+".")
		switch ev := ev.(type) {
		case nil:
			if strings.HasPrefix(rest, "message.created.") || strings.HasPrefix(rest, "message.read.") {
				t.Fatalf("decodeEvent(%q) ignored a message event", subject)
			}
		case domain.MessageCreated:
			if !strings.HasPrefix(rest, "message.created.") {
				t.Fatalf("decodeEvent(%q) = MessageCreated", subject)
			}
			if ev.Check() != nil || !domain.IsUUID(ev.EventID) {
				t.Fatal("decodeEvent returned a MessageCreated that fails validation")
			}
		case domain.MessageRead:
			if !strings.HasPrefix(rest, "message.read.") {
				t.Fatalf("decodeEvent(%q) = MessageRead", subject)
			}
			if ev.Check() != nil || ev.ReaderSubject == "" {
				t.Fatal("decodeEvent returned a MessageRead that fails validation")
			}
		default:
			t.Fatalf("decodeEvent returned %T", ev)
		}
	})
}

// TestDecodeEventRefusesWhatNoInt16Holds: a sensitivity that narrowing to int16 would wrap onto
// a real one is a malformed event, never a guess.
func TestDecodeEventRefusesWhatNoInt16Holds(t *testing.T) {
	t.Parallel()
	ev := &eventsv1.MessageCreated{
		Meta:     &eventsv1.EventMeta{EventId: "6f1c8a2e-1b0c-4d7e-9a3f-0c1d2e3f4a5b"},
		ThreadId: "0d9e8f7a-6b5c-4d3e-8f1a-2b3c4d5e6f70", MessageId: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
		Sensitivity: commonv1.Sensitivity(1<<16 + int32(commonv1.Sensitivity_SENSITIVITY_NORMAL)),
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := decodeEvent(fuzzPrefix, fuzzPrefix+".message.created.pool-a", data); !errors.Is(err, domain.ErrMalformedEvent) || got != nil {
		t.Errorf("decodeEvent(sensitivity out of int16) = %v, %v; want ErrMalformedEvent", got, err)
	}
	ev.Sensitivity = commonv1.Sensitivity_SENSITIVITY_NORMAL
	data, _ = proto.Marshal(ev)
	if got, err := decodeEvent(fuzzPrefix, fuzzPrefix+".message.created.pool-a", data); err != nil || got.(domain.MessageCreated).Sensitivity != int16(commonv1.Sensitivity_SENSITIVITY_NORMAL) {
		t.Errorf("decodeEvent(normal) = %v, %v", got, err)
	}
}
