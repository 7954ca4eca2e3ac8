package grpcserver

import (
	"context"
	"errors"
	"strings"

	"buf.build/go/protovalidate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// Validation: every request message is checked, before the handler, against the protovalidate
// rules its .proto declares (buf.validate options: required fields, lengths, UUIDs, enums, page
// sizes); for streams, every message received is. Whatever the protocol the request came in by
// (native gRPC, Connect, gRPC-Web, REST through the HTTP edge), it is the same check, because it
// runs on the decoded message.
//
// A refusal is InvalidArgument carrying google.rpc.ErrorInfo (domain "securemsg", the reason of
// the first violation) and google.rpc.BadRequest with one field violation per broken rule: the
// field's path (for example "settings.pool_id" or "attachment_ids[3]"), the rule's description
// ("value must be a valid UUID") and a stable reason a portal can translate (FIELD_REQUIRED,
// FIELD_TOO_LONG, ...). Never the field's value: it may be PHI. The status message lists the same
// paths and descriptions. A rule that cannot be evaluated is not the caller's fault: its error
// goes up unchanged and the error interceptor masks it as Internal.
//
// A message type may also carry a hand-written Validate() error method; it runs after the rules,
// and its error text becomes the InvalidArgument message, so it must describe the rule broken,
// never echo a value.

// invalidRequestMessage starts the status message of a refusal; the violations follow.
const invalidRequestMessage = "invalid request"

// maxListedViolations bounds the status message; BadRequest carries every violation.
const maxListedViolations = 5

// validator is protovalidate's process-wide validator: it compiles each message type's rules once,
// on first use, and caches them.
var validator = protovalidate.GlobalValidator

func unaryValidation() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := validateRequest(req); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

func streamValidation() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &validatingStream{ServerStream: ss})
	}
}

// validatingStream checks each message as the handler receives it.
type validatingStream struct{ grpc.ServerStream }

func (s *validatingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return validateRequest(m)
}

// validateRequest checks one request message: its declared rules, then its Validate method.
func validateRequest(req any) error {
	if msg, ok := req.(proto.Message); ok {
		if err := validator.Validate(msg); err != nil {
			var verr *protovalidate.ValidationError
			if errors.As(err, &verr) {
				return invalidRequest(verr).Err()
			}
			return err
		}
	}
	if v, ok := req.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			return withErrorInfo(status.New(codes.InvalidArgument, err.Error()), "FIELD_INVALID").Err()
		}
	}
	return nil
}

// invalidRequest is the refusal for a request that breaks declared rules.
func invalidRequest(verr *protovalidate.ValidationError) *status.Status {
	violations := make([]*errdetails.BadRequest_FieldViolation, 0, len(verr.Violations))
	listed := make([]string, 0, min(len(verr.Violations), maxListedViolations))
	for _, v := range verr.Violations {
		field := protovalidate.FieldPathString(v.Proto.GetField())
		description := v.Proto.GetMessage()
		if description == "" {
			description = "breaks rule " + v.Proto.GetRuleId()
		}
		violations = append(violations, &errdetails.BadRequest_FieldViolation{
			Field:       field,
			Description: description,
			Reason:      violationReason(v),
		})
		if len(listed) < maxListedViolations {
			if field != "" {
				description = field + ": " + description
			}
			listed = append(listed, description)
		}
	}
	msg := invalidRequestMessage
	if len(listed) > 0 {
		msg += ": " + strings.Join(listed, "; ")
		if more := len(violations) - len(listed); more > 0 {
			msg += "; and more"
		}
	}
	reason := "FIELD_INVALID"
	if len(violations) > 0 {
		reason = violations[0].GetReason()
	}
	st := withErrorInfo(status.New(codes.InvalidArgument, msg), reason)
	if d, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: violations}); err == nil {
		st = d
	}
	return st
}

// withErrorInfo attaches the ErrorInfo every securemsg refusal carries.
func withErrorInfo(st *status.Status, reason string) *status.Status {
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: usererr.Domain}); err == nil {
		return d
	}
	return st
}

// violationReason maps a broken rule to the reasons the services already use for the same
// problem when their own checks find it (FIELD_REQUIRED, FIELD_TOO_LONG, FIELD_OUT_OF_RANGE), so
// a portal handles one vocabulary whichever layer refused. A custom (CEL) rule's id is already
// such a reason: the protos name them in UPPER_SNAKE_CASE.
func violationReason(v *protovalidate.Violation) string {
	id := v.Proto.GetRuleId()
	kind := id[strings.LastIndexByte(id, '.')+1:]
	switch {
	case id == "required" || strings.HasSuffix(id, "_required"):
		return "FIELD_REQUIRED"
	case isUpperSnake(id):
		return id
	}
	switch kind {
	case "max_len", "max_bytes", "max_items", "max_pairs":
		return "FIELD_TOO_LONG"
	case "min_len", "min_bytes", "min_items", "min_pairs", "len", "len_bytes":
		return "FIELD_TOO_SHORT"
	case "unique":
		return "FIELD_REPEATED"
	case "defined_only", "in", "not_in", "const":
		return "FIELD_UNKNOWN_VALUE"
	}
	if strings.HasPrefix(kind, "gt") || strings.HasPrefix(kind, "lt") {
		return "FIELD_OUT_OF_RANGE" // gt, gte, lt, lte and their combinations (gte_lte, ...)
	}
	return "FIELD_MALFORMED" // uuid, pattern, email, hostname, ... and anything else of the shape
}

// isUpperSnake reports whether s looks like a stable reason (THREAD_CLOSED) rather than a
// protovalidate rule id (string.max_len).
func isUpperSnake(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return true
}
