// This test of platform/daemon lives in the servicetest module, which runs a real daemon: in the
// platform module it would make the platform require servicetest, and servicetest the platform.
package servicetest_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

type stubMessaging struct {
	messagingv1.UnimplementedMessagingServiceServer
}

type stubAudit struct {
	auditv1.UnimplementedAuditServiceServer
}

// TestProcess starts a service process against the real Postgres and NATS and checks the parts
// every service inherits: gRPC health over TLS, the outbox relay, the access guards, and that
// refusals are audited through the outbox.
func TestProcess(t *testing.T) {
	h := servicetest.Start(t, daemon.Spec{Name: "messaging", Component: commonv1.Component_COMPONENT_MESSAGING}, servicetest.Options{},
		func(p *daemon.Process) error {
			messagingv1.RegisterMessagingServiceServer(p.Server.GRPC(), stubMessaging{})
			auditv1.RegisterAuditServiceServer(p.Server.GRPC(), stubAudit{})
			return nil
		})
	ctx := t.Context()

	t.Run("health over TLS", func(t *testing.T) {
		testkit.WaitFor(t, 15*time.Second, "health SERVING", func() bool {
			resp, err := healthpb.NewHealthClient(h.Portal).Check(ctx, &healthpb.HealthCheckRequest{})
			return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
		})
	})

	t.Run("outbox relayed", func(t *testing.T) {
		event := outbox.Event{ID: outbox.NewID(), Subject: h.Topology.EventsSubject + ".thread.created.pool-a", Payload: []byte{1}}
		if err := pg.WithTx(ctx, h.Proc.Pool, func(tx pgx.Tx) error { return outbox.Add(ctx, tx, event) }); err != nil {
			t.Fatalf("outbox.Add() = %v", err)
		}
		testkit.WaitFor(t, 15*time.Second, "event in the events stream", func() bool {
			return streamMsgs(ctx, h.JS, h.Topology.EventsStream) == 1
		})
	})

	t.Run("guards refuse and audit", func(t *testing.T) {
		client := messagingv1.NewMessagingServiceClient(h.Portal)
		_, err := client.GetThread(ctx, &messagingv1.GetThreadRequest{ThreadId: "t-1"})
		if got := status.Code(err); got != codes.Unauthenticated {
			t.Errorf("GetThread without a token = %v, want Unauthenticated", got)
		}
		auditClient := auditv1.NewAuditServiceClient(h.Portal)
		_, err = auditClient.QueryAuditEvents(h.As(t, ctx, servicetest.Patient), &auditv1.QueryAuditEventsRequest{})
		if got := status.Code(err); got != codes.PermissionDenied {
			t.Errorf("QueryAuditEvents as a patient = %v, want PermissionDenied", got)
		}
		var denials int
		testkit.WaitFor(t, 15*time.Second, "two DENY audit records", func() bool {
			denials = 0
			for _, rec := range auditRecords(t, ctx, h.JS, h.Topology.AuditStream) {
				if rec.GetAction() == eventsv1.Action_ACTION_DENY && rec.GetOutcome() == eventsv1.Outcome_OUTCOME_DENIED {
					denials++
				}
			}
			return denials == 2
		})
	})
}

func streamMsgs(ctx context.Context, js jetstream.JetStream, name string) uint64 {
	stream, err := js.Stream(ctx, name)
	if err != nil {
		return 0
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

func auditRecords(t *testing.T, ctx context.Context, js jetstream.JetStream, name string) []*eventsv1.AuditRecord {
	t.Helper()
	n := streamMsgs(ctx, js, name)
	stream, err := js.Stream(ctx, name)
	if err != nil || n == 0 {
		return nil
	}
	var out []*eventsv1.AuditRecord
	for seq := uint64(1); seq <= n; seq++ {
		msg, err := stream.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		rec := &eventsv1.AuditRecord{}
		if err := proto.Unmarshal(msg.Data, rec); err != nil {
			t.Fatalf("audit payload is not an AuditRecord: %v", err)
		}
		out = append(out, rec)
	}
	return out
}
