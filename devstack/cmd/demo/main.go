// Command demo walks through the whole suite on the running local stack (`make up`), the way a
// portal, a care-team app, a clinician, a proxy and an auditor would use it, and checks each
// step: it exits 0 only if every step held. `make demo` runs it.
//
// Every run writes PHI marker strings (in the subject, the body and the file name) and then
// looks for them where they must never appear: the care-team event and the email alerts.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/securemsg/securemsg/devstack/internal/oidcdev"
	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	notificationv1 "github.com/securemsg/securemsg/gen/securemsg/notification/v1"
)

type options struct {
	issuer, certs, natsURL, mailAPI      string
	messaging, attachment, notify, audit string
	pool, portal                         string
	timeout                              time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.issuer, "issuer", "http://127.0.0.1:8400", "dev OIDC issuer")
	flag.StringVar(&o.certs, "certs", ".tmp/stack/certs", "dev CA and certificates")
	flag.StringVar(&o.natsURL, "nats", "nats://127.0.0.1:4223", "NATS (the care-team app subscribes here)")
	flag.StringVar(&o.mailAPI, "mail-api", "http://127.0.0.1:8025", "mailpit API (the SMTP sink)")
	flag.StringVar(&o.messaging, "messaging", "127.0.0.1:7001", "messaging service")
	flag.StringVar(&o.attachment, "attachment", "127.0.0.1:7002", "attachment service")
	flag.StringVar(&o.notify, "notification", "127.0.0.1:7003", "notification service")
	flag.StringVar(&o.audit, "audit", "127.0.0.1:7004", "audit service")
	flag.StringVar(&o.pool, "pool", "pool-cardiology", "the care pool the patient writes to")
	flag.StringVar(&o.portal, "portal", "http://127.0.0.1:8080", "the reference portal (printed at the end)")
	flag.DurationVar(&o.timeout, "timeout", 90*time.Second, "the whole demo's deadline")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	d, err := newDemo(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo: cannot start:", err)
		fmt.Fprintln(os.Stderr, "is the stack up? run `make up`")
		os.Exit(1)
	}
	defer d.close()
	if err := d.run(ctx); err != nil {
		fmt.Printf("\nFAILED: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("\nevery step held.")
	fmt.Printf(`
the same, in a browser: open %s (the reference portal, web/portal) and sign in at the dev
issuer's picker as patient, proxy, teen, clinician or auditor; use a second browser profile or
a private window for a second person. The services' edges use the dev CA: trust
%s in that browser first, or open https://127.0.0.1:8441/openapi.json once and accept
its certificate (repeat for :8442-:8444). Alerts arrive in mailpit, %s.
`, o.portal, filepath.Join(o.certs, "ca.pem"), o.mailAPI)
}

// demo holds the connections and what the steps learn from each other.
type demo struct {
	o          options
	runID      string // marks this run's data
	tokens     map[string]string
	messaging  messagingv1.MessagingServiceClient
	attachment attachmentv1.AttachmentServiceClient
	notify     notificationv1.NotificationServiceClient
	audit      auditv1.AuditServiceClient
	conns      []*grpc.ClientConn
	nc         *nats.Conn
	careTeam   chan *nats.Msg
	markers    []string

	threadID, firstMessageID, attachmentID string
	lastAuditSeq                           uint64
	fileBytes                              []byte
	step                                   int
}

func newDemo(ctx context.Context, o options) (*demo, error) {
	d := &demo{o: o, tokens: map[string]string{}, careTeam: make(chan *nats.Msg, 64)}
	d.runID = randomHex(4)
	d.markers = []string{"PHI-SUBJECT-" + d.runID, "PHI-BODY-" + d.runID, "PHI-FILE-" + d.runID}
	creds, err := portalTLS(filepath.Join(o.certs, "ca.pem"))
	if err != nil {
		return nil, err
	}
	dial := func(addr string) (*grpc.ClientConn, error) {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err == nil {
			d.conns = append(d.conns, c)
		}
		return c, err
	}
	for _, x := range []struct {
		addr string
		set  func(*grpc.ClientConn)
	}{
		{o.messaging, func(c *grpc.ClientConn) { d.messaging = messagingv1.NewMessagingServiceClient(c) }},
		{o.attachment, func(c *grpc.ClientConn) { d.attachment = attachmentv1.NewAttachmentServiceClient(c) }},
		{o.notify, func(c *grpc.ClientConn) { d.notify = notificationv1.NewNotificationServiceClient(c) }},
		{o.audit, func(c *grpc.ClientConn) { d.audit = auditv1.NewAuditServiceClient(c) }},
	} {
		c, err := dial(x.addr)
		if err != nil {
			return nil, err
		}
		x.set(c)
	}
	for _, user := range []string{"patient", "proxy", "teen", "clinician", "auditor"} {
		tok, err := mintToken(ctx, o.issuer, user)
		if err != nil {
			return nil, fmt.Errorf("mint a token for %s: %w", user, err)
		}
		d.tokens[user] = tok
	}
	if d.nc, err = nats.Connect(o.natsURL, nats.Name("demo-careteam-app")); err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	return d, nil
}

func (d *demo) close() {
	for _, c := range d.conns {
		_ = c.Close()
	}
	if d.nc != nil {
		d.nc.Close()
	}
}

func (d *demo) as(ctx context.Context, user string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+d.tokens[user])
}

// say numbers and prints a step; ok and detail print its outcome.
func (d *demo) say(format string, args ...any) {
	d.step++
	fmt.Printf("\n%2d. %s\n", d.step, fmt.Sprintf(format, args...))
}

func ok(format string, args ...any) { fmt.Printf("    ✓ %s\n", fmt.Sprintf(format, args...)) }

func (d *demo) run(ctx context.Context) error {
	fmt.Printf("securemsg demo, run %s (PHI markers: %s)\n", d.runID, strings.Join(d.markers, ", "))
	steps := []func(context.Context) error{
		d.setPreferences,
		d.subscribeCareTeam,
		d.unregisteredAppRefused,
		d.patientPicksPool,
		d.patientUploads,
		d.patientWrites,
		d.careTeamEvent,
		d.clinicianAlerted,
		d.clinicianWorksUnassignedQueue,
		d.clinicianReadsAndReplies,
		d.patientSeesReadReceipt,
		d.assignmentKeptToThePool,
		d.patientAlerted,
		d.proxyReads,
		d.proxyRefusedOnConfidential,
		d.patientRevokesProxy,
		d.auditorSeesWhoAccessed,
		d.auditLogVerifies,
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (d *demo) email(role string) string {
	return fmt.Sprintf("demo-%s-%s@example.test", role, d.runID)
}

func (d *demo) setPreferences(ctx context.Context) error {
	d.say("the clinician and the patient choose email alerts (contact points are sealed at rest)")
	for _, p := range []struct {
		user  string
		pools []string
	}{{"clinician", []string{d.o.pool}}, {"patient", nil}} {
		prefs := &notificationv1.Preferences{
			Email:             &notificationv1.ChannelPreference{Enabled: true, Address: d.email(p.user)},
			PoolSubscriptions: p.pools,
		}
		paths := []string{"email"}
		if len(p.pools) > 0 {
			paths = append(paths, "pool_subscriptions")
		}
		_, err := d.notify.UpdatePreferences(d.as(ctx, p.user), &notificationv1.UpdatePreferencesRequest{
			Preferences: prefs, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths},
		})
		if err != nil {
			return fmt.Errorf("%s UpdatePreferences: %w", p.user, err)
		}
		ok("%s alerts go to %s", p.user, d.email(p.user))
	}
	return nil
}

func (d *demo) subscribeCareTeam(ctx context.Context) error {
	subject := "securemsg.events.message.created." + d.o.pool
	d.say("a care-team app subscribes to %s", subject)
	if _, err := d.nc.ChanSubscribe(subject, d.careTeam); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if err := d.nc.FlushWithContext(ctx); err != nil {
		return err
	}
	ok("subscribed")
	return nil
}

// samplePDF is a tiny but real PDF document, so type sniffing sees application/pdf.
func samplePDF(marker string) []byte {
	return []byte("%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n" +
		"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n% " + marker + "\n" +
		"trailer << /Root 1 0 R >>\n%%EOF\n")
}

func (d *demo) patientUploads(ctx context.Context) error {
	d.say("the patient uploads a PDF (scanned by clamd, encrypted before it reaches MinIO)")
	d.fileBytes = samplePDF(d.markers[1])
	stream, err := d.attachment.UploadAttachment(d.as(ctx, "patient"))
	if err != nil {
		return fmt.Errorf("UploadAttachment: %w", err)
	}
	name := d.markers[2] + ".pdf"
	if err := stream.Send(&attachmentv1.UploadAttachmentRequest{Payload: &attachmentv1.UploadAttachmentRequest_Metadata{Metadata: &attachmentv1.UploadMetadata{
		FileName: name, DeclaredMediaType: "application/pdf", DeclaredSizeBytes: int64(len(d.fileBytes)),
		ClientRequestId: uuid.NewString(),
	}}}); err != nil {
		return fmt.Errorf("send metadata: %w", err)
	}
	if err := stream.Send(&attachmentv1.UploadAttachmentRequest{Payload: &attachmentv1.UploadAttachmentRequest_Chunk{Chunk: d.fileBytes}}); err != nil {
		return fmt.Errorf("send chunk: %w", err)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return fmt.Errorf("UploadAttachment: %w", err)
	}
	d.attachmentID = resp.GetAttachment().GetAttachmentId()
	state := resp.GetAttachment().GetScanState()
	for state == attachmentv1.ScanState_SCAN_STATE_PENDING {
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return errors.New("the attachment stayed PENDING")
		}
		got, err := d.attachment.GetAttachment(d.as(ctx, "patient"), &attachmentv1.GetAttachmentRequest{AttachmentId: d.attachmentID})
		if err != nil {
			return fmt.Errorf("GetAttachment: %w", err)
		}
		state = got.GetAttachment().GetScanState()
	}
	if state != attachmentv1.ScanState_SCAN_STATE_CLEAN {
		return fmt.Errorf("scan state %v, want CLEAN", state)
	}
	ok("attachment %s: %s, %d bytes, scan %v", d.attachmentID, resp.GetAttachment().GetMediaType(), resp.GetAttachment().GetSizeBytes(), state)
	return nil
}

func (d *demo) unregisteredAppRefused(ctx context.Context) error {
	d.say("a token the identity provider issued to an app nobody registered is refused")
	tok, err := mintToken(ctx, d.o.issuer, "patient", "client_id", "unregistered-demo-app")
	if err != nil {
		return fmt.Errorf("mint a token for an unregistered app: %w", err)
	}
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	_, err = d.messaging.ListThreads(ctx, &messagingv1.ListThreadsRequest{})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "client application") {
		return fmt.Errorf("ListThreads from an unregistered app = %v, want PERMISSION_DENIED", err)
	}
	ok("PERMISSION_DENIED: %s", status.Convert(err).Message())
	return nil
}

func (d *demo) patientPicksPool(ctx context.Context) error {
	d.say("the patient lists the care pools they may write to and picks %s", d.o.pool)
	resp, err := d.messaging.ListPools(d.as(ctx, "patient"), &messagingv1.ListPoolsRequest{})
	if err != nil {
		return fmt.Errorf("ListPools as patient: %w", err)
	}
	found := false
	for _, p := range resp.GetPools() {
		ok("%s (%s), open now: %t", p.GetName(), p.GetPoolId(), p.GetOpenNow())
		found = found || p.GetPoolId() == d.o.pool
	}
	if !found {
		return fmt.Errorf("%s is not among the pools the patient may write to", d.o.pool)
	}
	return nil
}

func (d *demo) patientWrites(ctx context.Context) error {
	d.say("the patient writes to %s with the attachment", d.o.pool)
	resp, err := d.messaging.CreateThread(d.as(ctx, "patient"), &messagingv1.CreateThreadRequest{
		PoolId: d.o.pool, Category: commonv1.ThreadCategory_THREAD_CATEGORY_CLINICAL_QUESTION,
		Sensitivity: commonv1.Sensitivity_SENSITIVITY_NORMAL,
		Subject:     d.markers[0], Body: "Question about my results. " + d.markers[1],
		AttachmentIds: []string{d.attachmentID}, ClientRequestId: uuid.NewString(),
	})
	if err != nil {
		return fmt.Errorf("CreateThread: %w", err)
	}
	d.threadID, d.firstMessageID = resp.GetThread().GetThreadId(), resp.GetMessage().GetMessageId()
	ok("thread %s created", d.threadID)
	if ar := resp.GetAutoReply(); ar != nil {
		ok("the pool's auto-reply came back (turnaround %s)", resp.GetTurnaroundTime().AsDuration())
	}
	if disclaimer := resp.GetEmergencyDisclaimer(); disclaimer != "" {
		ok("emergency disclaimer shown: %q", disclaimer)
	}
	return nil
}

func (d *demo) careTeamEvent(ctx context.Context) error {
	d.say("the care-team app receives the event, which carries ids and no PHI")
	for {
		select {
		case <-ctx.Done():
			return errors.New("no message.created event for the thread reached the care-team app")
		case msg := <-d.careTeam:
			ev := &eventsv1.MessageCreated{}
			if err := proto.Unmarshal(msg.Data, ev); err != nil || ev.GetThreadId() != d.threadID {
				continue
			}
			if m := d.leak(msg.Data); m != "" {
				return fmt.Errorf("the event carries the PHI marker %q", m)
			}
			ok("%s: thread %s, message %s, patient %s, %d attachment(s); no marker in the payload",
				msg.Subject, ev.GetThreadId(), ev.GetMessageId(), ev.GetPatientId(), ev.GetAttachmentCount())
			return nil
		}
	}
}

func (d *demo) clinicianAlerted(ctx context.Context) error {
	d.say("an email alert reaches the clinician (through the SMTP sink) and holds no PHI")
	return d.checkAlert(ctx, d.email("clinician"))
}

func (d *demo) patientAlerted(ctx context.Context) error {
	d.say("the patient is alerted of the reply, without PHI")
	return d.checkAlert(ctx, d.email("patient"))
}

func (d *demo) checkAlert(ctx context.Context, to string) error {
	raw, subject, err := waitForMail(ctx, d.o.mailAPI, to)
	if err != nil {
		return err
	}
	if m := d.leak(raw); m != "" {
		return fmt.Errorf("the alert to %s contains the PHI marker %q", to, m)
	}
	ok("%q to %s; no PHI marker in the whole message", subject, to)
	return nil
}

func (d *demo) clinicianReadsAndReplies(ctx context.Context) error {
	d.say("the clinician reads the thread, downloads the file and replies")
	got, err := d.messaging.GetThread(d.as(ctx, "clinician"), &messagingv1.GetThreadRequest{ThreadId: d.threadID})
	if err != nil {
		return fmt.Errorf("GetThread as clinician: %w", err)
	}
	if got.GetThread().GetSubject() != d.markers[0] {
		return errors.New("the clinician did not read back the subject the patient wrote")
	}
	ok("read %d message(s), subject decrypted for an authorised reader", len(got.GetMessages()))
	// The dev issuer's tokens carry a name claim; messaging keeps it sealed and shows it only
	// beside what the person wrote, to those who may read it.
	if name := got.GetThread().GetCreatedBy().GetDisplayName(); name != oidcdev.Users["patient"].DisplayName {
		return fmt.Errorf("the thread shows its writer as %q, want the patient's display name", name)
	}
	ok("the writer is shown by name, %q (sealed at rest, from the token's name claim)", got.GetThread().GetCreatedBy().GetDisplayName())
	stream, err := d.attachment.DownloadAttachment(d.as(ctx, "clinician"), &attachmentv1.DownloadAttachmentRequest{AttachmentId: d.attachmentID})
	if err != nil {
		return fmt.Errorf("DownloadAttachment: %w", err)
	}
	var file bytes.Buffer
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("download: %w", err)
		}
		file.Write(chunk.GetChunk())
	}
	if !bytes.Equal(file.Bytes(), d.fileBytes) {
		return fmt.Errorf("downloaded %d bytes that differ from the %d uploaded", file.Len(), len(d.fileBytes))
	}
	ok("downloaded the attachment, byte-identical (%d bytes)", file.Len())
	_, err = d.messaging.SendMessage(d.as(ctx, "clinician"), &messagingv1.SendMessageRequest{
		ThreadId: d.threadID, Body: "Your results look fine. " + d.markers[1], ClientRequestId: uuid.NewString(),
	})
	if err != nil {
		return fmt.Errorf("SendMessage as clinician: %w", err)
	}
	ok("replied")
	return nil
}

func (d *demo) clinicianWorksUnassignedQueue(ctx context.Context) error {
	d.say("the clinician works the unassigned queue of %s, with every queue's size from one call", d.o.pool)
	resp, err := d.messaging.ListThreads(d.as(ctx, "clinician"), &messagingv1.ListThreadsRequest{
		PoolIds:  []string{d.o.pool},
		Statuses: []messagingv1.ThreadStatus{messagingv1.ThreadStatus_THREAD_STATUS_OPEN, messagingv1.ThreadStatus_THREAD_STATUS_ASSIGNED},
		Assignee: messagingv1.AssigneeFilter_ASSIGNEE_FILTER_UNASSIGNED, IncludeCounts: true, PageSize: 10,
	})
	if err != nil {
		return fmt.Errorf("ListThreads(unassigned): %w", err)
	}
	if len(resp.GetThreads()) == 0 || resp.GetThreads()[0].GetThreadId() != d.threadID {
		return errors.New("the patient's new thread is not at the top of the unassigned queue")
	}
	c := resp.GetCounts()
	ok("the new thread tops the unassigned queue; open %d, unassigned %d, mine %d, unread %d",
		c.GetTotal(), c.GetUnassigned(), c.GetAssignedToMe(), c.GetUnread())
	return nil
}

func (d *demo) patientSeesReadReceipt(ctx context.Context) error {
	d.say("the patient sees that the clinician read their message, and a badge for the reply")
	resp, err := d.messaging.GetMessage(d.as(ctx, "patient"), &messagingv1.GetMessageRequest{ThreadId: d.threadID, MessageId: d.firstMessageID})
	if err != nil {
		return fmt.Errorf("GetMessage as patient: %w", err)
	}
	var receipt *messagingv1.ReadReceipt
	for _, r := range resp.GetMessage().GetReceipts() {
		if r.GetReader().GetRole() == commonv1.Role_ROLE_CLINICIAN {
			receipt = r
		}
	}
	if receipt == nil {
		return errors.New("no read receipt from the clinician on the patient's message")
	}
	if receipt.GetReader().GetDisplayName() != oidcdev.Users["clinician"].DisplayName {
		return fmt.Errorf("the receipt names its reader %q, want the clinician's display name", receipt.GetReader().GetDisplayName())
	}
	ok("read by %s (%s, %s) at %s", receipt.GetReader().GetDisplayName(), receipt.GetReader().GetSubject(), receipt.GetReader().GetRole(),
		receipt.GetReadTime().AsTime().Format(time.RFC3339))
	n, err := d.messaging.GetUnreadCount(d.as(ctx, "patient"), &messagingv1.GetUnreadCountRequest{})
	if err != nil {
		return fmt.Errorf("GetUnreadCount as patient: %w", err)
	}
	if n.GetUnreadThreads() < 1 {
		return errors.New("the patient's unread badge does not count the reply")
	}
	ok("unread badge: %d thread(s), %d message(s)", n.GetUnreadThreads(), n.GetUnreadMessages())
	return nil
}

func (d *demo) assignmentKeptToThePool(ctx context.Context) error {
	d.say("the clinician may hand the thread only to members of its pool")
	_, err := d.messaging.AssignThread(d.as(ctx, "clinician"), &messagingv1.AssignThreadRequest{ThreadId: d.threadID, AssigneeSubject: "auditor"})
	if status.Code(err) != codes.FailedPrecondition {
		return fmt.Errorf("AssignThread to a non-member = %v, want FAILED_PRECONDITION", err)
	}
	ok("assigning it to someone outside the pool: FAILED_PRECONDITION (%s)", status.Convert(err).Message())
	_, err = d.messaging.TransferThread(d.as(ctx, "clinician"), &messagingv1.TransferThreadRequest{ThreadId: d.threadID, ToPoolId: "pool-dermatology", ReasonCode: "wrong_pool"})
	if status.Code(err) != codes.PermissionDenied {
		return fmt.Errorf("TransferThread to a pool the clinician does not work in = %v, want PERMISSION_DENIED", err)
	}
	ok("transferring it to a pool the clinician does not work in: PERMISSION_DENIED")
	if _, err := d.messaging.ClaimThread(d.as(ctx, "clinician"), &messagingv1.ClaimThreadRequest{ThreadId: d.threadID}); err != nil {
		return fmt.Errorf("ClaimThread: %w", err)
	}
	ok("the clinician claims it themself")
	return nil
}

func (d *demo) patientRevokesProxy(ctx context.Context) error {
	d.say("the patient revokes the proxy's access; the proxy, token unexpired, is refused at once; the patient grants it again")
	grants, err := d.messaging.ListProxyGrants(d.as(ctx, "patient"), &messagingv1.ListProxyGrantsRequest{})
	if err != nil {
		return fmt.Errorf("ListProxyGrants as patient: %w", err)
	}
	revoked := 0
	for _, g := range grants.GetGrants() {
		if g.GetProxySubject() != "proxy" || g.GetRevokeTime() != nil || g.GetExpireTime().AsTime().Before(time.Now()) {
			continue
		}
		if _, err := d.messaging.RevokeProxyAccess(d.as(ctx, "patient"), &messagingv1.RevokeProxyAccessRequest{GrantId: g.GetGrantId()}); err != nil {
			return fmt.Errorf("RevokeProxyAccess: %w", err)
		}
		revoked++
	}
	ok("revoked %d grant(s)", revoked)
	_, err = d.messaging.GetThread(d.as(ctx, "proxy"), &messagingv1.GetThreadRequest{ThreadId: d.threadID})
	refused := status.Code(err) == codes.PermissionDenied || status.Code(err) == codes.NotFound
	// Granted again whatever happened, so that the next run of the demo starts where this one did.
	_, gerr := d.messaging.GrantProxyAccess(d.as(ctx, "patient"), &messagingv1.GrantProxyAccessRequest{
		ProxySubject: "proxy", Scopes: []string{"read", "write", "notifications"}, ExpireTime: timestamppb.New(time.Now().Add(300 * 24 * time.Hour)),
	})
	if !refused {
		return fmt.Errorf("GetThread by the revoked proxy = %v, want refused", err)
	}
	ok("the proxy's next read: %v", status.Code(err))
	if gerr != nil {
		return fmt.Errorf("GrantProxyAccess: %w", gerr)
	}
	ok("the patient grants the proxy access again, for 300 days")
	return nil
}

func (d *demo) proxyReads(ctx context.Context) error {
	d.say("the patient's proxy reads the thread under an active grant")
	got, err := d.messaging.GetThread(d.as(ctx, "proxy"), &messagingv1.GetThreadRequest{ThreadId: d.threadID})
	if err != nil {
		return fmt.Errorf("GetThread as proxy: %w", err)
	}
	ok("the proxy sees %d message(s)", len(got.GetMessages()))
	return nil
}

func (d *demo) proxyRefusedOnConfidential(ctx context.Context) error {
	d.say("an adolescent writes a confidential thread; the same proxy (who holds a grant for them) is refused, and may not be given write")
	resp, err := d.messaging.CreateThread(d.as(ctx, "teen"), &messagingv1.CreateThreadRequest{
		PoolId: d.o.pool, Category: commonv1.ThreadCategory_THREAD_CATEGORY_CLINICAL_QUESTION,
		Sensitivity: commonv1.Sensitivity_SENSITIVITY_ADOLESCENT_CONFIDENTIAL,
		Subject:     "private " + d.markers[0], Body: "private " + d.markers[1], ClientRequestId: uuid.NewString(),
	})
	if err != nil {
		return fmt.Errorf("CreateThread as teen: %w", err)
	}
	_, err = d.messaging.GetThread(d.as(ctx, "proxy"), &messagingv1.GetThreadRequest{ThreadId: resp.GetThread().GetThreadId()})
	switch status.Code(err) {
	case codes.PermissionDenied, codes.NotFound:
		ok("refused with %v (the thread's existence is not revealed)", status.Code(err))
	case codes.OK:
		return errors.New("the proxy read an adolescent-confidential thread")
	default:
		return fmt.Errorf("GetThread as proxy on the confidential thread: %w", err)
	}
	// The teen's token says they are 15: a proxy may read for them, never write as them.
	_, err = d.messaging.GrantProxyAccess(d.as(ctx, "teen"), &messagingv1.GrantProxyAccessRequest{ProxySubject: "proxy",
		Scopes: []string{"read", "write"}, ExpireTime: timestamppb.New(time.Now().Add(30 * 24 * time.Hour))})
	if status.Code(err) != codes.FailedPrecondition {
		return fmt.Errorf("the adolescent gave a proxy write access: %v", err)
	}
	ok("the adolescent may not give a proxy write access: %v", status.Convert(err).Message())
	return nil
}

func (d *demo) auditorSeesWhoAccessed(ctx context.Context) error {
	d.say("an auditor lists who accessed the thread, when and from where")
	var entries []*auditv1.AuditEntry
	for {
		resp, err := d.audit.QueryAuditEvents(d.as(ctx, "auditor"), &auditv1.QueryAuditEventsRequest{
			Filter: &auditv1.AuditEventFilter{RecordId: d.threadID}, PageSize: 100,
		})
		if err != nil {
			return fmt.Errorf("QueryAuditEvents: %w", err)
		}
		entries = resp.GetEntries()
		if hasReadBy(entries, "clinician") && hasReadBy(entries, "proxy") {
			break
		}
		if err := sleep(ctx, 300*time.Millisecond); err != nil {
			return fmt.Errorf("the audit log shows %d record(s) for the thread but not yet the clinician's and the proxy's reads", len(entries))
		}
	}
	for _, e := range entries {
		r := e.GetRecord()
		fmt.Printf("      #%-5d %s  %-10s %-10s %-9s %-8s from %s (%s)\n", e.GetSequence(),
			r.GetMeta().GetOccurredAt().AsTime().Format(time.TimeOnly), r.GetActor().GetSubject(),
			strings.TrimPrefix(r.GetActor().GetRole().String(), "ROLE_"), strings.TrimPrefix(r.GetAction().String(), "ACTION_"),
			strings.TrimPrefix(r.GetOutcome().String(), "OUTCOME_"), orDash(r.GetSourceIp()), orDash(r.GetClientApp()))
	}
	for _, e := range entries {
		d.lastAuditSeq = max(d.lastAuditSeq, e.GetSequence())
	}
	ok("%d audit record(s) for the thread", len(entries))
	return nil
}

func hasReadBy(entries []*auditv1.AuditEntry, subject string) bool {
	for _, e := range entries {
		r := e.GetRecord()
		if r.GetActor().GetSubject() == subject && r.GetAction() == eventsv1.Action_ACTION_READ {
			return true
		}
	}
	return false
}

func (d *demo) auditLogVerifies(ctx context.Context) error {
	d.say("the audit log verifies: hash chain, Merkle root and signed checkpoint")
	// Checkpoints are signed every N records or T seconds; wait for one that covers this run.
	var cp *auditv1.Checkpoint
	for cp.GetTreeSize() < d.lastAuditSeq {
		resp, err := d.audit.GetLatestCheckpoint(d.as(ctx, "auditor"), &auditv1.GetLatestCheckpointRequest{})
		if err != nil && status.Code(err) != codes.NotFound {
			return fmt.Errorf("GetLatestCheckpoint: %w", err)
		}
		if cp = resp.GetCheckpoint(); cp.GetTreeSize() >= d.lastAuditSeq {
			break
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return fmt.Errorf("no signed checkpoint covers sequence %d yet", d.lastAuditSeq)
		}
	}
	resp, err := d.audit.VerifyRange(d.as(ctx, "auditor"), &auditv1.VerifyRangeRequest{FromSequence: 1, ToSequence: cp.GetTreeSize()})
	if err != nil {
		return fmt.Errorf("VerifyRange: %w", err)
	}
	if !resp.GetOk() {
		return fmt.Errorf("verification failed at sequence %d: %v", resp.GetFirstFailingSequence(), resp.GetFailure())
	}
	ok("%d record(s) verified against the checkpoint of size %d signed by key %s", resp.GetVerifiedCount(), cp.GetTreeSize(), cp.GetKeyId())
	return nil
}

// leak returns the first PHI marker found in data, or "".
func (d *demo) leak(data []byte) string {
	for _, m := range d.markers {
		if bytes.Contains(data, []byte(m)) {
			return m
		}
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func portalTLS(caFile string) (credentials.TransportCredentials, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read the dev CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no certificate in the dev CA file")
	}
	return credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}), nil
}

// mintToken asks the dev issuer for user's token; extra adds query parameters (client_id).
func mintToken(ctx context.Context, issuer, user string, extra ...string) (string, error) {
	q := url.Values{"format": {"raw"}, "user": {user}}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, issuer+"/dev/token?"+q.Encode(), nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }() // read-only: the body was read or is discarded
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("issuer answered %s", resp.Status)
	}
	return strings.TrimSpace(string(body)), nil
}

// waitForMail polls mailpit until a message to addr arrives and returns its raw source.
func waitForMail(ctx context.Context, api, addr string) (raw []byte, subject string, err error) {
	for {
		var list struct {
			Messages []struct {
				ID      string `json:"ID"`
				Subject string `json:"Subject"`
			} `json:"messages"`
		}
		if err := getJSON(ctx, api+"/api/v1/search?query="+url.QueryEscape("to:"+addr), &list); err == nil && len(list.Messages) > 0 {
			m := list.Messages[0]
			raw, err := get(ctx, api+"/api/v1/message/"+m.ID+"/raw")
			return raw, m.Subject, err
		}
		if err := sleep(ctx, 300*time.Millisecond); err != nil {
			return nil, "", fmt.Errorf("no email to %s arrived", addr)
		}
	}
}

func getJSON(ctx context.Context, u string, v any) error {
	body, err := get(ctx, u)
	if err != nil {
		return err
	}
	return json.Unmarshal(body, v)
}

func get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }() // read-only: the body was read or is discarded
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", u, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 4<<20))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
