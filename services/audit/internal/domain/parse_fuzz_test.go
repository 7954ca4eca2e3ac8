package domain_test

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
)

// validRecord is a record as a producer emits it.
func validRecord() *eventsv1.AuditRecord {
	return &eventsv1.AuditRecord{
		Meta: &eventsv1.EventMeta{EventId: "0b7c1c2e-4c1e-4f47-9a52-4a0f0cf0a001", OccurredAt: timestamppb.New(t0),
			Producer: commonv1.Component_COMPONENT_MESSAGING, RequestId: "req-1", TraceId: "0123456789abcdef0123456789abcdef"},
		Actor:  &eventsv1.AuditActor{Subject: "user-1", Role: commonv1.Role_ROLE_CLINICIAN, OrganisationId: "org-1"},
		Action: eventsv1.Action_ACTION_READ, Outcome: eventsv1.Outcome_OUTCOME_SUCCESS, RecordType: eventsv1.RecordType_RECORD_TYPE_THREAD,
		RecordId: "thread-1", PatientId: "patient-1", PoolId: "pool-a", ReasonCode: "pool_member",
		Severity: eventsv1.Severity_SEVERITY_LOW, Sensitivity: commonv1.Sensitivity_SENSITIVITY_NORMAL,
	}
}

// FuzzParseIncoming feeds arbitrary NATS payloads to the ingest decoder: it must never panic,
// every rejection must be ErrUndecodable (so the consumer terminates instead of retrying), and
// an accepted payload must be kept byte-for-byte with a record that passes validation.
func FuzzParseIncoming(f *testing.F) {
	mustMarshal := func(rec *eventsv1.AuditRecord) []byte {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	valid := mustMarshal(validRecord())
	f.Add(valid)
	noActor := validRecord()
	noActor.Actor = nil
	f.Add(mustMarshal(noActor))
	freeText := validRecord()
	freeText.PatientId = "Jane Doe, born 1970"
	f.Add(mustMarshal(freeText))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Add(valid[:len(valid)/2])
	f.Add(append(append([]byte{}, valid...), 0x0a, 0x05))
	f.Add([]byte(`{"meta":{"event_id":"x"}}`))

	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := domain.ParseIncoming(b)
		if err != nil {
			if !errors.Is(err, domain.ErrUndecodable) {
				t.Fatalf("ParseIncoming error = %v, want ErrUndecodable", err)
			}
			if in.Record != nil || in.Bytes != nil || in.EventID != "" {
				t.Fatalf("ParseIncoming returned a half-parsed record with error %v", err)
			}
			return
		}
		if in.Record == nil || string(in.Bytes) != string(b) {
			t.Fatal("ParseIncoming accepted a payload but did not keep its exact bytes and record")
		}
		if in.EventID == "" || in.EventID != in.Record.GetMeta().GetEventId() {
			t.Fatalf("ParseIncoming EventID = %q, want the record's non-empty event id", in.EventID)
		}
		if err := auditlog.Validate(in.Record); err != nil {
			t.Fatalf("ParseIncoming accepted a record that fails validation: %v", err)
		}
		// Re-encoding and decoding again must give the same record (what the log stores is
		// the original bytes, but the projection is computed from the decoded form).
		again, err := domain.ParseIncoming(mustMarshalT(t, in.Record))
		if err != nil || !proto.Equal(again.Record, in.Record) {
			t.Fatalf("ParseIncoming(Marshal(rec)) = %v, want the same record", err)
		}
		if !domain.Project(again.Record).Equal(domain.Project(in.Record)) {
			t.Fatal("Project differs after a re-encode round trip")
		}
	})
}

func mustMarshalT(t *testing.T, rec *eventsv1.AuditRecord) []byte {
	t.Helper()
	b, err := proto.Marshal(rec)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	return b
}
