package auditlog_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/logging"
	"github.com/securemsg/securemsg/services/internal/platform/migrate"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

func schemaPool(t *testing.T, migrated bool) *pgxpool.Pool {
	t.Helper()
	admin := testkit.Postgres(t)
	schema := testkit.NewSchema(t, admin)
	if migrated {
		if err := migrate.Up(t.Context(), admin, schema, nil, nil); err != nil {
			t.Fatalf("migrate.Up() error = %v", err)
		}
	}
	pool, err := pg.NewPool(t.Context(), pg.Config{URL: testkit.LoadStack().PostgresURL, Schema: schema, MaxConns: 4})
	if err != nil {
		t.Fatalf("NewPool() error = %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func readRecord() *eventsv1.AuditRecord {
	return &eventsv1.AuditRecord{
		Actor:      &eventsv1.AuditActor{Subject: "clin-1", Role: commonv1.Role_ROLE_CLINICIAN},
		Action:     eventsv1.Action_ACTION_READ,
		RecordType: eventsv1.RecordType_RECORD_TYPE_THREAD,
		RecordId:   "thread-1",
		PatientId:  "patient-1",
		Outcome:    eventsv1.Outcome_OUTCOME_SUCCESS,
		ReasonCode: "pool_member",
		Operation:  "/securemsg.messaging.v1.MessagingService/GetThread",
	}
}

func TestEmitterRecordWritesOutboxRow(t *testing.T) {
	t.Parallel()
	pool := schemaPool(t, true)
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	em, err := auditlog.NewEmitter(commonv1.Component_COMPONENT_MESSAGING, auditlog.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	ctx := logging.WithRequestID(t.Context(), "req-42")
	var id string
	err = pg.WithTx(ctx, pool, func(tx pgx.Tx) error {
		id, err = em.Record(ctx, tx, readRecord())
		return err
	})
	if err != nil {
		t.Fatalf("Record() error = %v", err)
	}
	var subject string
	var payload []byte
	if err := pool.QueryRow(ctx, "SELECT subject, payload FROM outbox WHERE id = $1", id).Scan(&subject, &payload); err != nil {
		t.Fatalf("outbox row for %s: %v", id, err)
	}
	if subject != "securemsg.audit.messaging" {
		t.Errorf("subject = %q, want securemsg.audit.messaging", subject)
	}
	got := &eventsv1.AuditRecord{}
	if err := proto.Unmarshal(payload, got); err != nil {
		t.Fatal(err)
	}
	if got.Meta.EventId != id || got.Meta.RequestId != "req-42" || got.Meta.Producer != commonv1.Component_COMPONENT_MESSAGING ||
		!got.Meta.OccurredAt.AsTime().Equal(now) || got.Severity != eventsv1.Severity_SEVERITY_LOW {
		t.Errorf("record meta = %v severity %v, want id %s, req-42, messaging, %v, LOW", got.Meta, got.Severity, id, now)
	}
}

func TestEmitterRecordFailsClosed(t *testing.T) {
	t.Parallel()
	em, err := auditlog.NewEmitter(commonv1.Component_COMPONENT_ATTACHMENT)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("no outbox table", func(t *testing.T) {
		t.Parallel()
		pool := schemaPool(t, false)
		var changed bool
		err := pg.WithTx(t.Context(), pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(t.Context(), "CREATE TABLE phi_read (id int)"); err != nil {
				return err
			}
			changed = true
			_, err := em.Record(t.Context(), tx, readRecord())
			return err
		})
		if err == nil || !changed {
			t.Fatalf("Record() without outbox error = %v, want an error", err)
		}
		// The caller's transaction rolled back with it.
		var exists bool
		_ = pool.QueryRow(t.Context(), "SELECT to_regclass('phi_read') IS NOT NULL").Scan(&exists)
		if exists {
			t.Error("caller's change committed although its audit record failed")
		}
	})
	t.Run("duplicate event id", func(t *testing.T) {
		t.Parallel()
		pool := schemaPool(t, true)
		err := pg.WithTx(t.Context(), pool, func(tx pgx.Tx) error {
			r1, r2 := readRecord(), readRecord()
			r1.Meta = &eventsv1.EventMeta{EventId: "dup-1"}
			r2.Meta = &eventsv1.EventMeta{EventId: "dup-1"}
			if _, err := em.Record(t.Context(), tx, r1); err != nil {
				return err
			}
			_, err := em.Record(t.Context(), tx, r2)
			return err
		})
		if err == nil {
			t.Error("Record() twice with one event id error = nil, want unique violation")
		}
	})
}

func TestValidateRejectsFreeText(t *testing.T) {
	t.Parallel()
	em, _ := auditlog.NewEmitter(commonv1.Component_COMPONENT_MESSAGING)
	tests := []struct {
		name   string
		mutate func(r *eventsv1.AuditRecord)
		field  string
	}{
		{"reason sentence", func(r *eventsv1.AuditRecord) { r.ReasonCode = "patient asked about her HIV results" }, "reason_code"},
		{"reason upper case", func(r *eventsv1.AuditRecord) { r.ReasonCode = "Own_Thread" }, "reason_code"},
		{"record id with spaces", func(r *eventsv1.AuditRecord) { r.RecordId = "thread 1" }, "record_id"},
		{"missing actor", func(r *eventsv1.AuditRecord) { r.Actor = nil }, "actor.subject"},
		{"missing action", func(r *eventsv1.AuditRecord) { r.Action = 0 }, "action"},
		{"missing outcome", func(r *eventsv1.AuditRecord) { r.Outcome = 0 }, "outcome"},
		{"break glass low", func(r *eventsv1.AuditRecord) {
			r.Action = eventsv1.Action_ACTION_BREAK_GLASS
			r.Severity = eventsv1.Severity_SEVERITY_LOW
		}, "severity"},
		{"user agent newline", func(r *eventsv1.AuditRecord) { r.UserAgent = "a\nb" }, "user_agent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := readRecord()
			tt.mutate(r)
			_, err := em.Event(context.Background(), r)
			if !errors.Is(err, auditlog.ErrInvalidRecord) || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("Event(%s) error = %v, want ErrInvalidRecord naming %s", tt.name, err, tt.field)
			}
			if err != nil && strings.Contains(err.Error(), "HIV") {
				t.Errorf("error %q echoes the rejected value", err)
			}
		})
	}
	// Break-the-glass left unset gets HIGH.
	r := readRecord()
	r.Action = eventsv1.Action_ACTION_BREAK_GLASS
	if _, err := em.Event(context.Background(), r); err != nil || r.Severity != eventsv1.Severity_SEVERITY_HIGH {
		t.Errorf("Event(break glass) = %v severity %v, want nil, HIGH", err, r.Severity)
	}
}

func TestFromDecision(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		d      auth.DecisionRecord
		action eventsv1.Action
		out    eventsv1.Outcome
	}{
		{"denied", auth.DecisionRecord{ActorSubject: "u1", ActorRoles: []string{"proxy"}, Outcome: auth.OutcomeDenied, ReasonCode: "no_grant", RecordType: "Thread", Action: "messaging.GetThread"},
			eventsv1.Action_ACTION_DENY, eventsv1.Outcome_OUTCOME_DENIED},
		{"break glass", auth.DecisionRecord{ActorSubject: "u2", ActorRoles: []string{"clinician"}, Outcome: auth.OutcomeAllowed, BreakGlass: true, RecordType: "Thread"},
			eventsv1.Action_ACTION_BREAK_GLASS, eventsv1.Outcome_OUTCOME_SUCCESS},
		{"phi read", auth.DecisionRecord{ActorSubject: "u3", ActorRoles: []string{"patient"}, Outcome: auth.OutcomeAllowed, PHIRead: true, RecordType: "Message", ReasonCode: "Policy ID 7"},
			eventsv1.Action_ACTION_READ, eventsv1.Outcome_OUTCOME_SUCCESS},
	}
	em, _ := auditlog.NewEmitter(commonv1.Component_COMPONENT_MESSAGING)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := auditlog.FromDecision(tt.d)
			if r.Action != tt.action || r.Outcome != tt.out {
				t.Errorf("FromDecision() = %v/%v, want %v/%v", r.Action, r.Outcome, tt.action, tt.out)
			}
			if _, err := em.Event(context.Background(), r); err != nil {
				t.Errorf("Event(FromDecision(%s)) error = %v", tt.name, err)
			}
		})
	}
}
