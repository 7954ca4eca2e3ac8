package grpcserver_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver/grpctest"
)

func TestValidation(t *testing.T) {
	t.Parallel()
	pki := grpctest.NewPKI(t)
	h := startServer(t, pki, pki.ServerConfig(false))
	conn := h.dial(t)
	tests := []struct {
		name     string
		value    string
		wantCode codes.Code
		wantMsg  string
	}{
		{"valid", "hello", codes.OK, ""},
		{"invalid", "", codes.InvalidArgument, "value must not be empty"},
	}
	for _, kind := range callKinds {
		for _, tt := range tests {
			t.Run(kind.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				_, _, err := kind.call(t.Context(), conn, tt.value)
				st := status.Convert(err)
				if st.Code() != tt.wantCode || st.Message() != tt.wantMsg {
					t.Errorf("Echo(%q) = %v %q, want %v %q", tt.value, st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
				}
			})
		}
	}
}

// threadService answers GetThread for requests that pass validation.
type threadService struct {
	messagingv1.UnimplementedMessagingServiceServer
}

func (threadService) GetThread(context.Context, *messagingv1.GetThreadRequest) (*messagingv1.GetThreadResponse, error) {
	return &messagingv1.GetThreadResponse{}, nil
}

// exportService answers ExportAuditEvents (a server stream: its one request arrives through
// RecvMsg, where the stream path validates) for requests that pass validation.
type exportService struct {
	auditv1.UnimplementedAuditServiceServer
}

func (exportService) ExportAuditEvents(_ *auditv1.ExportAuditEventsRequest, st grpc.ServerStreamingServer[auditv1.ExportAuditEventsResponse]) error {
	return st.Send(&auditv1.ExportAuditEventsResponse{Summary: &auditv1.ExportSummary{}})
}

// uploadService takes an UploadAttachment stream (a client stream: every message is validated
// as the handler receives it) when each of its messages passes validation.
type uploadService struct {
	attachmentv1.UnimplementedAttachmentServiceServer
}

func (uploadService) UploadAttachment(st grpc.ClientStreamingServer[attachmentv1.UploadAttachmentRequest, attachmentv1.UploadAttachmentResponse]) error {
	for {
		if _, err := st.Recv(); errors.Is(err, io.EOF) {
			return st.SendAndClose(&attachmentv1.UploadAttachmentResponse{})
		} else if err != nil {
			return err
		}
	}
}

func registerRuleServices(s *grpc.Server) {
	messagingv1.RegisterMessagingServiceServer(s, threadService{})
	auditv1.RegisterAuditServiceServer(s, exportService{})
	attachmentv1.RegisterAttachmentServiceServer(s, uploadService{})
}

// violation is one google.rpc.BadRequest field violation as a test expects it.
type violation struct{ field, reason string }

// TestValidationRules: the rules declared in the protos refuse a request before its handler,
// on the unary and the stream path, with InvalidArgument, ErrorInfo and one BadRequest field
// violation per broken rule — naming fields and rules, never echoing a value.
func TestValidationRules(t *testing.T) {
	t.Parallel()
	pki := grpctest.NewPKI(t)
	h := startServerWith(t, pki, pki.ServerConfig(false), registerRuleServices)
	threads := messagingv1.NewMessagingServiceClient(h.dial(t))
	audit := auditv1.NewAuditServiceClient(h.dial(t))
	files := attachmentv1.NewAttachmentServiceClient(h.dial(t))
	upload := func(ctx context.Context, msgs ...*attachmentv1.UploadAttachmentRequest) error {
		st, err := files.UploadAttachment(ctx)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if err := st.Send(m); err != nil {
				break // the server ended the stream; CloseAndRecv says why
			}
		}
		_, err = st.CloseAndRecv()
		return err
	}
	metadata := &attachmentv1.UploadAttachmentRequest{Payload: &attachmentv1.UploadAttachmentRequest_Metadata{
		Metadata: &attachmentv1.UploadMetadata{FileName: phiMarker + ".txt", DeclaredMediaType: "text/plain", DeclaredSizeBytes: 3}}}
	chunk := func(n int) *attachmentv1.UploadAttachmentRequest {
		return &attachmentv1.UploadAttachmentRequest{Payload: &attachmentv1.UploadAttachmentRequest_Chunk{Chunk: make([]byte, n)}}
	}
	export := func(ctx context.Context, req *auditv1.ExportAuditEventsRequest) error {
		st, err := audit.ExportAuditEvents(ctx, req)
		if err != nil {
			return err
		}
		_, err = st.Recv()
		return err
	}
	tests := []struct {
		name       string
		call       func(ctx context.Context) error
		wantReason string // ErrorInfo reason; "" for a request that passes
		want       []violation
	}{
		{"valid unary", func(ctx context.Context) error {
			_, err := threads.GetThread(ctx, &messagingv1.GetThreadRequest{ThreadId: uuid.NewString(), PageSize: 10})
			return err
		}, "", nil},
		{"missing id", func(ctx context.Context) error {
			_, err := threads.GetThread(ctx, &messagingv1.GetThreadRequest{})
			return err
		}, "FIELD_REQUIRED", []violation{{"thread_id", "FIELD_REQUIRED"}}},
		{"every broken rule", func(ctx context.Context) error {
			_, err := threads.GetThread(ctx, &messagingv1.GetThreadRequest{
				ThreadId: phiMarker, PageSize: -1, BreakGlassReason: strings.Repeat(phiMarker, 40)})
			return err
		}, "FIELD_MALFORMED", []violation{
			{"thread_id", "FIELD_MALFORMED"}, {"page_size", "FIELD_OUT_OF_RANGE"}, {"break_glass_reason", "FIELD_TOO_LONG"},
		}},
		{"valid stream", func(ctx context.Context) error {
			return export(ctx, &auditv1.ExportAuditEventsRequest{Format: auditv1.ExportFormat_EXPORT_FORMAT_JSONL})
		}, "", nil},
		{"stream without a required enum", func(ctx context.Context) error {
			return export(ctx, &auditv1.ExportAuditEventsRequest{})
		}, "FIELD_REQUIRED", []violation{{"format", "FIELD_REQUIRED"}}},
		{"valid client stream", func(ctx context.Context) error {
			return upload(ctx, metadata, chunk(3))
		}, "", nil},
		{"client stream, a later message breaks a rule", func(ctx context.Context) error {
			return upload(ctx, metadata, chunk(3), chunk(1<<20+1))
		}, "CHUNK_TOO_LARGE", []violation{{"chunk", "CHUNK_TOO_LARGE"}}},
		{"client stream, an empty message", func(ctx context.Context) error {
			return upload(ctx, metadata, &attachmentv1.UploadAttachmentRequest{})
		}, "FIELD_REQUIRED", []violation{{"payload", "FIELD_REQUIRED"}}},
		{"stream with a nested message rule", func(ctx context.Context) error {
			return export(ctx, &auditv1.ExportAuditEventsRequest{Format: auditv1.ExportFormat_EXPORT_FORMAT_JSONL,
				Filter: &auditv1.AuditEventFilter{FromSequence: 9, ToSequence: 3, PatientId: strings.Repeat(phiMarker, 4)}})
		}, "INVALID_SEQUENCE_RANGE", []violation{{"filter", "INVALID_SEQUENCE_RANGE"}, {"filter.patient_id", "FIELD_TOO_LONG"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.call(t.Context())
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("call = %v, want success", err)
				}
				return
			}
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "invalid request: ") {
				t.Fatalf("call = %v %q, want InvalidArgument \"invalid request: ...\"", st.Code(), st.Message())
			}
			var info *errdetails.ErrorInfo
			var got []violation
			for _, d := range st.Details() {
				switch d := d.(type) {
				case *errdetails.ErrorInfo:
					info = d
				case *errdetails.BadRequest:
					for _, v := range d.GetFieldViolations() {
						if v.GetDescription() == "" || !strings.Contains(st.Message(), v.GetDescription()) {
							t.Errorf("violation %s: description %q missing or not in the message %q", v.GetField(), v.GetDescription(), st.Message())
						}
						got = append(got, violation{v.GetField(), v.GetReason()})
					}
				}
				if strings.Contains(fmt.Sprint(d), phiMarker) {
					t.Errorf("detail %v echoes a field's value", d)
				}
			}
			if info.GetReason() != tt.wantReason || info.GetDomain() != "securemsg" {
				t.Errorf("ErrorInfo = %v, want reason %s in domain securemsg", info, tt.wantReason)
			}
			byField := func(a, b violation) int { return strings.Compare(a.field+" "+a.reason, b.field+" "+b.reason) }
			slices.SortFunc(got, byField)
			slices.SortFunc(tt.want, byField)
			if !slices.Equal(got, tt.want) {
				t.Errorf("field violations = %v, want %v", got, tt.want)
			}
			if strings.Contains(st.Message(), phiMarker) {
				t.Errorf("message %q echoes a field's value", st.Message())
			}
		})
	}
	if logs := h.logs.String(); strings.Contains(logs, phiMarker) {
		t.Errorf("a field's value reached the log:\n%s", logs)
	}
}

// refuseAll is a guard that refuses every call, as the token check does for a caller without one.
type refuseAll struct{}

func (refuseAll) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(context.Context, any, *grpc.UnaryServerInfo, grpc.UnaryHandler) (any, error) {
		return nil, status.Error(codes.Unauthenticated, "no token")
	}
}

func (refuseAll) StreamServerInterceptor() grpc.StreamServerInterceptor { return nil }

// TestValidationAfterGuards: a caller the guards refuse learns nothing about request rules.
func TestValidationAfterGuards(t *testing.T) {
	t.Parallel()
	pki := grpctest.NewPKI(t)
	h := startServerWith(t, pki, pki.ServerConfig(false), registerRuleServices, grpcserver.WithGuards(refuseAll{}))
	_, err := messagingv1.NewMessagingServiceClient(h.dial(t)).GetThread(t.Context(), &messagingv1.GetThreadRequest{PageSize: -1})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("GetThread(malformed, refused by a guard) = %v, want Unauthenticated", err)
	}
}
