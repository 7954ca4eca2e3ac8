// Package repotest is the contract of the audit service's repositories: one suite per domain
// interface (RunLog, RunCheckpoints, RunReconcileMarks, RunOutbox), each taking a factory of
// fresh, empty repositories, run against every implementation — adapters/pgstore on Postgres and
// adapters/memstore — so that the fake the use-case tests rely on behaves as the real store does.
package repotest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
)

// Written reads back the events an implementation's outbox holds, in the order written.
type Written func(t *testing.T) []outbox.Event

// LogUnderTest is a fresh, empty log and a reader of its outbox (Append's effects go there).
type LogUnderTest struct {
	Log     domain.Log
	Written Written
}

// MarksUnderTest is a fresh, empty store's reconciliation marks and the log they answer for.
type MarksUnderTest struct {
	Marks domain.ReconcileMarks
	Log   domain.Log
}

// OutboxUnderTest is a fresh, empty outbox and a reader of it.
type OutboxUnderTest struct {
	Outbox  domain.Outbox
	Written Written
}

// Base is the time the suites' records occurred at (record i at Base + i seconds).
var Base = time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)

// RecordProto is a valid audit record as a producer builds it: a clinician's read, from the
// care-team app, of thread-i of patient, occurred Base + i seconds, with event id
// "evt-<actor>-<i>".
func RecordProto(i int, actor, patient string) *eventsv1.AuditRecord {
	return &eventsv1.AuditRecord{
		Meta: &eventsv1.EventMeta{EventId: fmt.Sprintf("evt-%s-%d", actor, i), OccurredAt: timestamppb.New(Base.Add(time.Duration(i) * time.Second)),
			Producer: commonv1.Component_COMPONENT_MESSAGING},
		Actor:        &eventsv1.AuditActor{Subject: actor, Role: commonv1.Role_ROLE_CLINICIAN, OrganisationId: "org-1"},
		Action:       eventsv1.Action_ACTION_READ,
		RecordType:   eventsv1.RecordType_RECORD_TYPE_THREAD,
		RecordId:     fmt.Sprintf("thread-%d", i),
		PatientId:    patient,
		Outcome:      eventsv1.Outcome_OUTCOME_SUCCESS,
		ReasonCode:   "pool_member",
		SourceIp:     "10.1.2.3",
		ClientApp:    "careteam-app",
		Operation:    "/securemsg.messaging.v1.MessagingService/GetThread",
		PoolId:       "pool-a",
		Sensitivity:  commonv1.Sensitivity_SENSITIVITY_NORMAL,
		PurposeOfUse: commonv1.PurposeOfUse_PURPOSE_OF_USE_TREATMENT,
	}
}

// Record is RecordProto encoded and parsed as the consumer receives it.
func Record(t testing.TB, i int, actor, patient string) domain.Incoming {
	t.Helper()
	return parse(t, RecordProto(i, actor, patient))
}

// parse encodes rec deterministically and parses it as the consumer does.
func parse(t testing.TB, rec *eventsv1.AuditRecord) domain.Incoming {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	in, err := domain.ParseIncoming(b)
	if err != nil {
		t.Fatalf("ParseIncoming() error = %v", err)
	}
	return in
}

// Records returns n records i = from..from+n-1 by three actors about five patients.
func Records(t testing.TB, from, n int) []domain.Incoming {
	t.Helper()
	out := make([]domain.Incoming, 0, n)
	for i := from; i < from+n; i++ {
		out = append(out, Record(t, i, fmt.Sprintf("clin-%d", i%3), fmt.Sprintf("patient-%d", i%5)))
	}
	return out
}

// appendAll appends recs at now in batches, with the month's partition made first.
func appendAll(t *testing.T, log domain.Log, now time.Time, recs []domain.Incoming) []domain.Entry {
	t.Helper()
	ctx := context.Background()
	if err := log.EnsurePartitions(ctx, now, 0); err != nil {
		t.Fatalf("EnsurePartitions() error = %v", err)
	}
	var out []domain.Entry
	for len(recs) > 0 {
		k := min(len(recs), 200)
		got, err := log.Append(ctx, recs[:k], now, nil)
		if err != nil {
			t.Fatalf("Append() error = %v", err)
		}
		out = append(out, got...)
		recs = recs[k:]
	}
	return out
}

// event is a valid outbox event with a fresh id.
func event(subject string, payload string) outbox.Event {
	return outbox.Event{ID: outbox.NewID(), Subject: subject, Payload: []byte(payload)}
}
