package ports_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/audit/internal/adapters/memstore"
	"github.com/securemsg/securemsg/services/audit/internal/adapters/repotest"
	"github.com/securemsg/securemsg/services/audit/internal/app"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/audit/internal/ports"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog/tlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
)

// TestEnumsAreNumberedAsTheAPI: ports convert VerifyFailure and ExportFormat by value, so each
// domain value must be the API value of the same name, and the API may have no value the
// domain lacks.
func TestEnumsAreNumberedAsTheAPI(t *testing.T) {
	t.Parallel()
	failures := map[domain.VerifyFailure]auditv1.VerifyFailure{
		domain.VerifyOK:                         auditv1.VerifyFailure_VERIFY_FAILURE_UNSPECIFIED,
		domain.VerifyLeafHashMismatch:           auditv1.VerifyFailure_VERIFY_FAILURE_LEAF_HASH_MISMATCH,
		domain.VerifyChainBroken:                auditv1.VerifyFailure_VERIFY_FAILURE_CHAIN_BROKEN,
		domain.VerifySequenceGap:                auditv1.VerifyFailure_VERIFY_FAILURE_SEQUENCE_GAP,
		domain.VerifyCheckpointRootMismatch:     auditv1.VerifyFailure_VERIFY_FAILURE_CHECKPOINT_ROOT_MISMATCH,
		domain.VerifyCheckpointSignatureInvalid: auditv1.VerifyFailure_VERIFY_FAILURE_CHECKPOINT_SIGNATURE_INVALID,
		domain.VerifyRecordUndecodable:          auditv1.VerifyFailure_VERIFY_FAILURE_RECORD_UNDECODABLE,
	}
	sameNumbering(t, "VerifyFailure", failures, auditv1.VerifyFailure_name)
	formats := map[domain.ExportFormat]auditv1.ExportFormat{
		domain.ExportUnspecified:    auditv1.ExportFormat_EXPORT_FORMAT_UNSPECIFIED,
		domain.ExportJSONL:          auditv1.ExportFormat_EXPORT_FORMAT_JSONL,
		domain.ExportFHIRAuditEvent: auditv1.ExportFormat_EXPORT_FORMAT_FHIR_AUDIT_EVENT,
	}
	sameNumbering(t, "ExportFormat", formats, auditv1.ExportFormat_name)
}

// sameNumbering checks that each domain value of enum equals the API value it stands for and
// that the API's enum (apiNames) has no value left out.
func sameNumbering[D, A ~int32](t *testing.T, enum string, pairs map[D]A, apiNames map[int32]string) {
	t.Helper()
	for d, api := range pairs {
		if int32(d) != int32(api) {
			t.Errorf("domain %s %d stands for %s (%d)", enum, d, apiNames[int32(api)], api)
		}
	}
	if len(pairs) != len(apiNames) {
		t.Errorf("the API has %d %s values, the domain %d", len(apiNames), enum, len(pairs))
	}
}

// TestRefusalsReachClientsWithTheirCode: the handler returns the use cases' errors unchanged and
// the server's one error function (grpcserver.ToStatus, with no mapper) sends each with its
// code, its message and its reason in google.rpc.ErrorInfo.
func TestRefusalsReachClientsWithTheirCode(t *testing.T) {
	t.Parallel()
	store := memstore.New()
	em, err := auditlog.NewEmitter(commonv1.Component_COMPONENT_AUDIT)
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	svc, err := app.New(app.Config{ExportLimit: 2}, app.Deps{Log: store, Checkpoints: store, Marks: store, Alerts: store, Outbox: store, Signer: tlog.NewSigner(priv), Audit: em})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Maintain(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Ingest(t.Context(), repotest.Records(t, 0, 5)); err != nil {
		t.Fatal(err)
	}
	api := ports.NewGRPC(svc)
	auditor := auth.WithPrincipal(t.Context(), &auth.Principal{Subject: "auditor-1", Roles: []auth.Role{auth.RoleAuditor}})
	patient := auth.WithPrincipal(t.Context(), &auth.Principal{Subject: "pat", Roles: []auth.Role{auth.RolePatient}, PatientID: "patient-1"})
	tests := []struct {
		name   string
		call   func() error
		code   codes.Code
		reason string
	}{
		{"verify from 0", func() error {
			_, err := api.VerifyRange(auditor, &auditv1.VerifyRangeRequest{})
			return err
		}, codes.InvalidArgument, "INVALID_SEQUENCE_RANGE"},
		{"verify beyond the end", func() error {
			_, err := api.VerifyRange(auditor, &auditv1.VerifyRangeRequest{FromSequence: 1, ToSequence: 9})
			return err
		}, codes.OutOfRange, "BEYOND_LOG_END"},
		{"no checkpoint yet", func() error {
			_, err := api.GetLatestCheckpoint(auditor, &auditv1.GetLatestCheckpointRequest{})
			return err
		}, codes.NotFound, "NO_CHECKPOINT"},
		{"query as a patient", func() error {
			_, err := api.QueryAuditEvents(patient, &auditv1.QueryAuditEventsRequest{})
			return err
		}, codes.PermissionDenied, "ROLE_REQUIRED"},
		{"report of another patient", func() error {
			_, err := api.GetAccessReport(patient, &auditv1.GetAccessReportRequest{PatientId: "patient-2"})
			return err
		}, codes.PermissionDenied, "NOT_PATIENT_PROXY_OR_AUDITOR"},
		{"export too large", func() error {
			return api.ExportAuditEvents(&auditv1.ExportAuditEventsRequest{Format: auditv1.ExportFormat_EXPORT_FORMAT_JSONL}, discardStream{ctx: auditor})
		}, codes.ResourceExhausted, "EXPORT_TOO_LARGE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := status.Convert(grpcserver.ToStatus(t.Context(), tt.call()))
			if st.Code() != tt.code || st.Message() == "" {
				t.Fatalf("%s = %v %q, want %v with a message", tt.name, st.Code(), st.Message(), tt.code)
			}
			var reason string
			for _, d := range st.Details() {
				if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == "securemsg" {
					reason = info.GetReason()
				}
			}
			if reason != tt.reason {
				t.Errorf("%s ErrorInfo reason = %q, want %q", tt.name, reason, tt.reason)
			}
		})
	}
}

// discardStream is an export stream that drops what it is sent.
type discardStream struct {
	auditv1.AuditService_ExportAuditEventsServer
	ctx context.Context
}

func (s discardStream) Context() context.Context                    { return s.ctx }
func (discardStream) Send(*auditv1.ExportAuditEventsResponse) error { return nil }
