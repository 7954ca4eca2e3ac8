package grpcserver_test

import (
	"strings"
	"testing"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	notificationv1 "github.com/securemsg/securemsg/gen/securemsg/notification/v1"
)

// TestEveryRequestFieldIsBounded: every string, bytes, list and enum field a client can send to
// one of the four services — in a request message or a message it carries (PoolSettings,
// Preferences, Template, UploadMetadata, Principal, ...) — declares a protovalidate rule that
// bounds it (a length, a UUID or pattern, an item count, known enum values, or a CEL rule), so
// the validation interceptor refuses an oversized or unknown value before any handler sees it.
// A field added without one fails here.
func TestEveryRequestFieldIsBounded(t *testing.T) {
	t.Parallel()
	files := []protoreflect.FileDescriptor{
		messagingv1.File_securemsg_messaging_v1_messaging_service_proto,
		attachmentv1.File_securemsg_attachment_v1_attachment_proto,
		notificationv1.File_securemsg_notification_v1_notification_proto,
		auditv1.File_securemsg_audit_v1_audit_proto,
	}
	seen := map[protoreflect.FullName]bool{}
	methods := 0
	for _, f := range files {
		for i := range f.Services().Len() {
			svc := f.Services().Get(i)
			for j := range svc.Methods().Len() {
				m := svc.Methods().Get(j)
				methods++
				checkBounded(t, m.Input(), string(m.FullName()), seen)
			}
		}
	}
	if methods < 30 {
		t.Fatalf("found %d rpcs, want the four services' (at least 30): are the files linked?", methods)
	}
}

// checkBounded checks md's fields and, once each, the securemsg messages they carry.
func checkBounded(t *testing.T, md protoreflect.MessageDescriptor, rpc string, seen map[protoreflect.FullName]bool) {
	t.Helper()
	if seen[md.FullName()] || !strings.HasPrefix(string(md.FullName()), "securemsg.") {
		return // checked already, or a well-known type (Timestamp, Duration, FieldMask)
	}
	seen[md.FullName()] = true
	for i := range md.Fields().Len() {
		fd := md.Fields().Get(i)
		rules, _ := proto.GetExtension(fd.Options(), validate.E_Field).(*validate.FieldRules)
		if problem := unboundedField(fd, rules); problem != "" {
			t.Errorf("%s (sent to %s): %s", fd.FullName(), rpc, problem)
		}
		if fd.Message() != nil {
			checkBounded(t, fd.Message(), rpc, seen)
		}
	}
}

// unboundedField says what rule fd lacks, or "" when it is bounded (or needs no bound: numbers,
// bools and messages, whose own fields are checked).
func unboundedField(fd protoreflect.FieldDescriptor, rules *validate.FieldRules) string {
	if len(rules.GetCel()) > 0 || len(rules.GetCelExpression()) > 0 {
		return "" // a custom rule states the bound (for example size(this) <= 1048576)
	}
	if fd.IsMap() {
		return "a map: declare map rules (max_pairs, keys, values)"
	}
	if fd.IsList() {
		rep := rules.GetRepeated()
		if !rep.HasMaxItems() {
			return "a list without repeated.max_items"
		}
		if p := unboundedValue(fd.Kind(), rep.GetItems()); p != "" {
			return "its items: " + p
		}
		return ""
	}
	return unboundedValue(fd.Kind(), rules)
}

// unboundedValue checks the rules of one value of kind k.
func unboundedValue(k protoreflect.Kind, rules *validate.FieldRules) string {
	if len(rules.GetCel()) > 0 || len(rules.GetCelExpression()) > 0 {
		return ""
	}
	switch k {
	case protoreflect.StringKind:
		s := rules.GetString()
		if s.HasMaxLen() || s.HasMaxBytes() || s.HasLen() || s.HasLenBytes() || s.GetUuid() || s.HasPattern() ||
			len(s.GetIn()) > 0 || s.HasConst() {
			return ""
		}
		return "a string without a length, UUID, pattern or list of values"
	case protoreflect.BytesKind:
		b := rules.GetBytes()
		if b.HasMaxLen() || b.HasLen() {
			return ""
		}
		return "bytes without a length"
	case protoreflect.EnumKind:
		e := rules.GetEnum()
		if e.GetDefinedOnly() || len(e.GetIn()) > 0 || e.HasConst() {
			return ""
		}
		return "an enum without enum.defined_only"
	default:
		return ""
	}
}
