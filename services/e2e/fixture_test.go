package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"

	"github.com/securemsg/securemsg/services/internal/testkit/privstack"
)

// pool is the care pool every fault test writes to; the seeded clinician belongs to it.
const pool = "pool-cardiology"

// env is one fault test's private stack with the clients and the ledger of what the services
// acknowledged: reconcile checks the stored state against that ledger.
type env struct {
	t          *testing.T
	s          *privstack.Stack
	messaging  messagingv1.MessagingServiceClient
	attachment attachmentv1.AttachmentServiceClient
	audit      auditv1.AuditServiceClient
	tokens     map[string]string
	// markers are PHI strings only this test writes (subjects, bodies, file names and bytes);
	// reconcile looks for them everywhere at rest.
	markers []string

	mu       sync.Mutex
	messages map[string]string // acknowledged message id → thread id
	// threads maps each acknowledged thread id to the pool's automatic reply its CreateThread
	// answer carried (nil when it carried none). Auto-replies are system messages, not in
	// messages: nobody wrote them.
	threads map[string]*messagingv1.Message
	uploads map[string]upload // acknowledged attachment id → who uploaded what

	db       *pgxpool.Pool
	baseline map[string]usage
	// drainWithin overrides how long reconcile waits for outboxes and the audit log to catch up.
	drainWithin time.Duration
}

// upload is an acknowledged upload: its uploader and its bytes.
type upload struct {
	user string
	data []byte
}

// usage is one service's goroutine and descriptor counts.
type usage struct{ goroutines, fds int }

// newEnv starts a private stack with opts (all services when opts.Services is empty) and
// dials them as a portal does.
func newEnv(t *testing.T, opts privstack.Options) *env {
	t.Helper()
	if len(opts.Services) == 0 {
		opts.Services = privstack.AllServices
	}
	s := privstack.Start(t, opts)
	id := randomHex(4)
	e := &env{
		t: t, s: s, tokens: map[string]string{},
		markers:  []string{"PHI-SUBJ-" + id, "PHI-BODY-" + id, "PHI-FILE-" + id, "PHI-BYTES-" + id},
		messages: map[string]string{}, threads: map[string]*messagingv1.Message{}, uploads: map[string]upload{},
	}
	e.messaging = messagingv1.NewMessagingServiceClient(s.Conn(t, "messaging"))
	if s.Service("attachment") != nil {
		e.attachment = attachmentv1.NewAttachmentServiceClient(s.Conn(t, "attachment"))
	}
	e.audit = auditv1.NewAuditServiceClient(s.Conn(t, "audit"))
	for _, u := range []string{"patient", "clinician", "auditor"} {
		e.tokens[u] = s.Token(t, u)
	}
	db, err := pgxpool.New(t.Context(), s.PostgresURL())
	if err != nil {
		t.Fatalf("pgxpool.New(private postgres) = %v", err)
	}
	t.Cleanup(db.Close)
	e.db = db
	return e
}

// as adds user's bearer token to ctx.
func (e *env) as(ctx context.Context, user string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+e.tokens[user])
}

// createThread writes a thread as the patient, with the subject and body markers. The ids (and
// the auto-reply the answer carried) are recorded only when the service acknowledged the write.
func (e *env) createThread(ctx context.Context, attachmentIDs ...string) (threadID, messageID string, err error) {
	return e.createThreadWith(ctx, uuid.NewString(), attachmentIDs...)
}

func (e *env) createThreadWith(ctx context.Context, crid string, attachmentIDs ...string) (threadID, messageID string, err error) {
	resp, err := e.messaging.CreateThread(e.as(ctx, "patient"), &messagingv1.CreateThreadRequest{
		PoolId: pool, Category: commonv1.ThreadCategory_THREAD_CATEGORY_CLINICAL_QUESTION,
		Sensitivity: commonv1.Sensitivity_SENSITIVITY_NORMAL,
		Subject:     "question " + e.markers[0], Body: "body " + e.markers[1],
		AttachmentIds: attachmentIDs, ClientRequestId: crid,
	})
	if err != nil {
		return "", "", err
	}
	e.ackThread(resp)
	return resp.GetThread().GetThreadId(), resp.GetMessage().GetMessageId(), nil
}

// send posts a reply to threadID as user with the given client request id (a retry with the
// same id must not create a second message).
func (e *env) send(ctx context.Context, user, threadID, crid string) (string, error) {
	resp, err := e.messaging.SendMessage(e.as(ctx, user), &messagingv1.SendMessageRequest{
		ThreadId: threadID, Body: "reply " + e.markers[1], ClientRequestId: crid,
	})
	if err != nil {
		return "", err
	}
	id := resp.GetMessage().GetMessageId()
	e.ack(id, threadID)
	return id, nil
}

func (e *env) ack(messageID, threadID string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.messages[messageID] = threadID
}

// ackThread records an acknowledged CreateThread: its first message and the auto-reply the
// answer carried, if any.
func (e *env) ackThread(resp *messagingv1.CreateThreadResponse) {
	threadID := resp.GetThread().GetThreadId()
	e.ack(resp.GetMessage().GetMessageId(), threadID)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.threads[threadID] = resp.GetAutoReply()
}

// acked returns a copy of the acknowledged messages.
func (e *env) acked() map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.messages)
}

// ackedThreads returns a copy of the acknowledged threads with the auto-reply each
// CreateThread answer carried.
func (e *env) ackedThreads() map[string]*messagingv1.Message {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.threads)
}

// samplePDF is a small real PDF (type sniffing sees application/pdf) holding marker; pad
// makes it larger so an upload spans several chunks and segments.
func samplePDF(marker string, pad int) []byte {
	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n" +
		"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n% " + marker + "\n")
	for b.Len() < pad {
		b.WriteString("% padding " + marker + "\n")
	}
	b.WriteString("trailer << /Root 1 0 R >>\n%%EOF\n")
	return b.Bytes()
}

// upload sends data as the patient in chunks of chunk bytes. between, when not nil, runs after
// the first chunk (a fault test stops a dependency there). The id is recorded when the
// service acknowledged the upload.
func (e *env) upload(ctx context.Context, data []byte, chunk int, between func()) (*attachmentv1.Attachment, error) {
	return e.uploadWith(ctx, "patient", data, chunk, between)
}

// uploadWith is upload as user.
func (e *env) uploadWith(ctx context.Context, user string, data []byte, chunk int, between func()) (*attachmentv1.Attachment, error) {
	stream, err := e.attachment.UploadAttachment(e.as(ctx, user))
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&attachmentv1.UploadAttachmentRequest{Payload: &attachmentv1.UploadAttachmentRequest_Metadata{Metadata: &attachmentv1.UploadMetadata{
		FileName: e.markers[2] + ".pdf", DeclaredMediaType: "application/pdf", DeclaredSizeBytes: int64(len(data)),
		ClientRequestId: uuid.NewString(),
	}}}); err != nil {
		_, err = stream.CloseAndRecv()
		return nil, err
	}
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		if err := stream.Send(&attachmentv1.UploadAttachmentRequest{Payload: &attachmentv1.UploadAttachmentRequest_Chunk{Chunk: data[off:end]}}); err != nil {
			break // the real error comes from CloseAndRecv
		}
		if off == 0 && between != nil {
			between()
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, err
	}
	a := resp.GetAttachment()
	e.mu.Lock()
	e.uploads[a.GetAttachmentId()] = upload{user: user, data: data}
	e.mu.Unlock()
	return a, nil
}

// download reads an attachment as user.
func (e *env) download(ctx context.Context, user, id string) ([]byte, error) {
	stream, err := e.attachment.DownloadAttachment(e.as(ctx, user), &attachmentv1.DownloadAttachmentRequest{AttachmentId: id})
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return buf.Bytes(), nil
		}
		if err != nil {
			return nil, err
		}
		buf.Write(chunk.GetChunk())
	}
}

// scanState asks the attachment service for id's scan state.
func (e *env) scanState(ctx context.Context, id string) (attachmentv1.ScanState, error) {
	got, err := e.attachment.GetAttachment(e.as(ctx, "patient"), &attachmentv1.GetAttachmentRequest{AttachmentId: id})
	if err != nil {
		return 0, err
	}
	return got.GetAttachment().GetScanState(), nil
}

// snapshotUsage records each service's goroutines and descriptors after warm-up, for
// reconcile's growth check.
func (e *env) snapshotUsage() {
	e.t.Helper()
	e.baseline = map[string]usage{}
	for _, svc := range e.s.Services() {
		u, err := e.usage(svc)
		if err != nil {
			e.t.Fatalf("usage(%s) = %v", svc, err)
		}
		e.baseline[svc] = u
	}
}

func (e *env) usage(svc string) (usage, error) {
	g, err := e.s.Goroutines(e.t.Context(), svc)
	if err != nil {
		return usage{}, err
	}
	f, err := e.s.FDCount(svc)
	if err != nil {
		return usage{}, err
	}
	return usage{goroutines: g, fds: f}, nil
}

// eventually polls check every interval until it returns nil or within passes; it returns
// the last error.
func eventually(ctx context.Context, within, interval time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// wantCode fails unless err carries one of codes.
func wantCode(t *testing.T, what string, err error, want ...codes.Code) {
	t.Helper()
	if !slices.Contains(want, status.Code(err)) {
		t.Errorf("%s = %v (code %v), want code in %v", what, err, status.Code(err), want)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
