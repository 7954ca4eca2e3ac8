package policy_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

func TestActionForMethod(t *testing.T) {
	t.Parallel()
	tests := []struct {
		method, action, service string
		ok                      bool
	}{
		{"/securemsg.messaging.v1.MessagingService/GetThread", "messaging.GetThread", "messaging", true},
		{"/securemsg.audit.v1.AuditService/QueryAuditEvents", "audit.QueryAuditEvents", "audit", true},
		{"/grpc.health.v1.Health/Check", "", "", false},
		{"/securemsg.messaging.v2.MessagingService/GetThread", "", "", false},
		{"/securemsg.messaging.v1.Messaging/GetThread", "", "", false},
		{"/securemsg.messaging.v1.MessagingService/", "", "", false},
		{"securemsg.messaging.v1.MessagingService", "", "", false},
		{"/evil.messaging.v1.MessagingService/GetThread", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			t.Parallel()
			a, s, ok := policy.ActionForMethod(tt.method)
			if a != tt.action || s != tt.service || ok != tt.ok {
				t.Errorf("ActionForMethod(%s) = %q, %q, %v, want %q, %q, %v", tt.method, a, s, ok, tt.action, tt.service, tt.ok)
			}
		})
	}
}

func callGuard(ctx context.Context, g *policy.Guard, method string) (bool, error) {
	called := false
	_, err := g.UnaryServerInterceptor()(ctx, nil, &grpc.UnaryServerInfo{FullMethod: method},
		func(context.Context, any) (any, error) { called = true; return nil, nil })
	return called, err
}

// TestGuardRecordsAndFailsClosed: denials are recorded; allowed PHI reads are recorded and, when
// the recorder fails, refused before the handler runs; non-PHI calls do not depend on the recorder.
func TestGuardRecordsAndFailsClosed(t *testing.T) {
	t.Parallel()
	const getThread = "/securemsg.messaging.v1.MessagingService/GetThread"
	const claim = "/securemsg.messaging.v1.MessagingService/ClaimThread"
	const query = "/securemsg.audit.v1.AuditService/QueryAuditEvents"
	tests := []struct {
		name       string
		p          *auth.Principal
		method     string
		failRec    bool
		wantCode   codes.Code
		wantCalled bool
		wantRecord auth.Outcome // "" when no record is due
	}{
		// The read itself is recorded by the use case's record-level check (TestAuthorizeFailsClosed).
		{"allowed PHI read is left to the record-level check", clinician, getThread, false, codes.OK, true, ""},
		{"allowed PHI read passes the rpc level with a failing recorder", clinician, getThread, true, codes.OK, true, ""},
		{"allowed non-PHI call is not recorded", clinician, claim, false, codes.OK, true, ""},
		{"allowed non-PHI call survives a failing recorder", clinician, claim, true, codes.OK, true, ""},
		{"denial is recorded", patient, query, false, codes.PermissionDenied, false, auth.OutcomeDenied},
		{"denial stays a denial when recording fails", patient, query, true, codes.PermissionDenied, false, ""},
		{"unknown rpc is denied and recorded", clinician, "/securemsg.messaging.v1.MessagingService/DropTables", false, codes.PermissionDenied, false, auth.OutcomeDenied},
		{"no principal is unauthenticated", nil, getThread, false, codes.Unauthenticated, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &memRecorder{}
			if tt.failRec {
				rec.fail = errors.New("outbox down")
			}
			g := newEngine(t, rec).Guard()
			ctx := t.Context()
			if tt.p != nil {
				ctx = auth.WithPrincipal(ctx, tt.p)
			}
			called, err := callGuard(ctx, g, tt.method)
			if got := status.Code(err); got != tt.wantCode || called != tt.wantCalled {
				t.Fatalf("guard(%s) = code %v called %v, want %v called %v", tt.method, got, called, tt.wantCode, tt.wantCalled)
			}
			if err != nil && strings.Contains(status.Convert(err).Message(), "policy") {
				t.Errorf("guard(%s) message %q names policies; want a fixed message", tt.method, status.Convert(err).Message())
			}
			recs := rec.records()
			if tt.wantRecord == "" {
				if len(recs) != 0 {
					t.Errorf("guard(%s) recorded %d decisions, want 0", tt.method, len(recs))
				}
				return
			}
			// A refusal names the type of record the rpc is about (the request names no id
			// here); an rpc the policies do not know stays an rpc-level record.
			wantType := "AuditLog"
			if strings.HasSuffix(tt.method, "/DropTables") {
				wantType = "rpc"
			}
			if len(recs) != 1 || recs[0].Outcome != tt.wantRecord || recs[0].ActorSubject != tt.p.Subject || recs[0].RecordType != wantType {
				t.Errorf("guard(%s) records = %+v, want one %s record of type %s for %s", tt.method, recs, tt.wantRecord, wantType, tt.p.Subject)
			}
		})
	}
}

// TestGuardRefusalNamesTheRequestedRecord: a refusal by the rpc-level guard is recorded against
// the record the request asked for, for unary rpcs and for server streams (whose request is
// checked when it arrives, before the handler sees it), so that "who tried to open this
// thread" finds callers the guard turned away.
func TestGuardRefusalNamesTheRequestedRecord(t *testing.T) {
	t.Parallel()
	rec := &memRecorder{}
	g := newEngine(t, rec).Guard()
	ctx := auth.WithPrincipal(t.Context(), admin) // admins never read content: refused at the rpc level
	called := false
	_, err := g.UnaryServerInterceptor()(ctx, &messagingv1.GetThreadRequest{ThreadId: "thread-42"},
		&grpc.UnaryServerInfo{FullMethod: "/securemsg.messaging.v1.MessagingService/GetThread"},
		func(context.Context, any) (any, error) { called = true; return nil, nil })
	if status.Code(err) != codes.PermissionDenied || called {
		t.Fatalf("admin GetThread = %v (handler called %v), want PermissionDenied before the handler", err, called)
	}
	var refusal *usererr.Error
	if !errors.As(err, &refusal) || refusal.ReasonOf() != "POLICY_DENIED" {
		t.Errorf("admin GetThread refusal = %v, want reason POLICY_DENIED for the portal", err)
	}
	stream := &fakeServerStream{ctx: ctx, req: &attachmentv1.DownloadAttachmentRequest{AttachmentId: "att-7"}}
	err = g.StreamServerInterceptor()(nil, stream,
		&grpc.StreamServerInfo{FullMethod: "/securemsg.attachment.v1.AttachmentService/DownloadAttachment", IsServerStream: true},
		func(_ any, ss grpc.ServerStream) error {
			var req attachmentv1.DownloadAttachmentRequest
			if err := ss.RecvMsg(&req); err != nil {
				return err
			}
			called = true
			return ss.SendMsg(&attachmentv1.DownloadAttachmentResponse{})
		})
	if status.Code(err) != codes.PermissionDenied || called || stream.sent != 0 {
		t.Fatalf("admin DownloadAttachment = %v (handler past RecvMsg %v, %d sent), want PermissionDenied with nothing sent", err, called, stream.sent)
	}
	recs := rec.records()
	want := []struct{ typ, id string }{{"Thread", "thread-42"}, {"Attachment", "att-7"}}
	if len(recs) != len(want) {
		t.Fatalf("recorded %d decisions, want %d: %+v", len(recs), len(want), recs)
	}
	for i, w := range want {
		if recs[i].Outcome != auth.OutcomeDenied || recs[i].RecordType != w.typ || recs[i].RecordID != w.id {
			t.Errorf("record %d = %s %s/%s, want denied %s/%s", i, recs[i].Outcome, recs[i].RecordType, recs[i].RecordID, w.typ, w.id)
		}
	}
}

// fakeServerStream delivers one request and counts what the handler sends.
type fakeServerStream struct {
	grpc.ServerStream
	ctx  context.Context
	req  proto.Message
	sent int
}

func (s *fakeServerStream) Context() context.Context { return s.ctx }
func (s *fakeServerStream) RecvMsg(m any) error {
	proto.Merge(m.(proto.Message), s.req)
	return nil
}
func (s *fakeServerStream) SendMsg(any) error { s.sent++; return nil }

// TestAuthorizeFailsClosed: the record-level check refuses an allowed PHI read it cannot record,
// and records break-glass accesses flagged, without the reason text.
func TestAuthorizeFailsClosed(t *testing.T) {
	t.Parallel()
	rec := &memRecorder{fail: errors.New("outbox down")}
	e := newEngine(t, rec)
	d, err := e.Authorize(t.Context(), clinician, "messaging.ReadContent", threadA, policy.Context{})
	if !errors.Is(err, policy.ErrNotRecorded) || d.Allowed {
		t.Fatalf("Authorize(PHI read, failing recorder) = %+v, %v, want refused with ErrNotRecorded", d, err)
	}
	d, err = e.Authorize(t.Context(), clinician, "messaging.ClaimThread", threadA, policy.Context{})
	if err != nil || !d.Allowed {
		t.Fatalf("Authorize(non-PHI, failing recorder) = %+v, %v, want allowed", d, err)
	}

	ok := &memRecorder{}
	e = newEngine(t, ok)
	const reason = "unconscious patient in ED"
	d, err = e.Authorize(t.Context(), clinician, "messaging.GetThread", threadB, policy.Context{BreakGlassReason: reason})
	if err != nil || !d.Allowed || !d.BreakGlass {
		t.Fatalf("Authorize(break-glass) = %+v, %v, want allowed break-glass", d, err)
	}
	d, err = e.Authorize(t.Context(), proxy, "messaging.GetThread", threadAC, policy.Context{})
	if err != nil || d.Allowed {
		t.Fatalf("Authorize(proxy, confidential) = %+v, %v, want denied", d, err)
	}
	recs := ok.records()
	if len(recs) != 2 {
		t.Fatalf("records = %d, want 2 (break-glass read, proxy denial)", len(recs))
	}
	if r := recs[0]; !r.BreakGlass || !r.PHIRead || r.Outcome != auth.OutcomeAllowed || r.PatientID != "pat-2" || r.RecordID != "t-b" {
		t.Errorf("break-glass record = %+v, want allowed PHI read flagged break-glass for t-b/pat-2", r)
	}
	if r := recs[1]; r.Outcome != auth.OutcomeDenied || r.OnBehalfOf != "pat-1" || r.ReasonCode != "proxy-never-adolescent-confidential" {
		t.Errorf("proxy denial record = %+v, want denied on behalf of pat-1 by proxy-never-adolescent-confidential", r)
	}
	for _, r := range recs {
		if strings.Contains(strings.ToLower(r.ReasonCode+r.Action), "unconscious") {
			t.Errorf("record %+v carries the break-glass reason text", r)
		}
	}
}

func copyPolicies(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(shippedPolicies())
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range entries {
		b, err := os.ReadFile(filepath.Join(shippedPolicies(), ent.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ent.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestReload: a valid change takes effect on Reload and through WatchFiles; an invalid one is
// refused and the running policies stay.
func TestReload(t *testing.T) {
	t.Parallel()
	dir := copyPolicies(t)
	e, err := policy.New(dir, policy.Options{Recorder: &memRecorder{}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatalf("policy.New() error = %v", err)
	}
	allowed := func() bool {
		return e.Evaluate(clinician, "messaging.GetThread", threadA, policy.Context{}).Allowed
	}
	if !allowed() {
		t.Fatal("clinician GetThread denied before reload, want allowed")
	}
	before := e.Digest()

	// An invalid policy (unknown attribute) is refused; the old set stays in force.
	bad := filepath.Join(dir, "99-extra.cedar")
	if err := os.WriteFile(bad, []byte(`@id("x") forbid (principal, action, resource) when { resource.nope };`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(); err == nil {
		t.Fatal("Reload(invalid policy) error = nil, want validation error")
	}
	if !allowed() || e.Digest() != before {
		t.Fatal("after a failed reload the old policies must stay in force")
	}

	// A valid forbid, picked up by the file watcher.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go e.WatchFiles(ctx, 10*time.Millisecond)
	if err := os.WriteFile(bad, []byte(`@id("freeze-pool-a") forbid (principal, action, resource) when { resource has poolId && resource.poolId == "pool-a" };`), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for allowed() {
		if time.Now().After(deadline) {
			t.Fatal("WatchFiles did not apply the new forbid within 5s")
		}
		time.Sleep(10 * time.Millisecond) // polling for an observable change, not synchronising
	}
	if e.Digest() == before {
		t.Error("Digest() unchanged after reload")
	}
}

func TestNewRefusesBadFolders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(dir string) error
	}{
		{"missing schema", func(d string) error { return os.Remove(filepath.Join(d, policy.SchemaFile)) }},
		{"missing settings", func(d string) error { return os.Remove(filepath.Join(d, policy.SettingsFile)) }},
		{"empty mfa methods", func(d string) error {
			return os.WriteFile(filepath.Join(d, policy.SettingsFile), []byte(`{"mfa_methods":[],"fresh_auth_seconds":60}`), 0o600)
		}},
		{"policy without id", func(d string) error {
			return os.WriteFile(filepath.Join(d, "99.cedar"), []byte(`permit (principal, action == Action::"messaging.GetThread", resource);`), 0o600)
		}},
		{"duplicate id", func(d string) error {
			return os.WriteFile(filepath.Join(d, "99.cedar"), []byte(`@id("patient-rpcs") permit (principal, action == Action::"messaging.GetThread", resource);`), 0o600)
		}},
		{"unknown action", func(d string) error {
			return os.WriteFile(filepath.Join(d, "99.cedar"), []byte(`@id("y") permit (principal, action == Action::"messaging.Nope", resource);`), 0o600)
		}},
		{"syntax error", func(d string) error {
			return os.WriteFile(filepath.Join(d, "99.cedar"), []byte(`@id("z") permit (principal, action, resource`), 0o600)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := copyPolicies(t)
			if err := tt.edit(dir); err != nil {
				t.Fatal(err)
			}
			if _, err := policy.New(dir, policy.Options{Recorder: &memRecorder{}}); err == nil {
				t.Errorf("policy.New(%s) error = nil, want error", tt.name)
			}
		})
	}
	if _, err := policy.New(shippedPolicies(), policy.Options{}); err == nil {
		t.Error("policy.New(no recorder) error = nil, want error")
	}
}
