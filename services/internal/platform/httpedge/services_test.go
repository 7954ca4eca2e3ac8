package httpedge_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	notificationv1 "github.com/securemsg/securemsg/gen/securemsg/notification/v1"
	"github.com/securemsg/securemsg/services/internal/platform/natsx"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/privstack"
)

// userAgent is what every client of these tests sends, so audit records can be compared.
const userAgent = "securemsg-edge-test"

// suite is a private stack of the four services, each with its HTTP edge on, dialled the way a
// portal does (TLS with the dev CA, a bearer token, no client certificate).
type suite struct {
	s      *privstack.Stack
	http   map[string]string // service → https://127.0.0.1:port of its edge
	h1, h2 map[string]*http.Client
	grpc   map[string]*grpc.ClientConn
	tokens map[string]string
	audit  *auditTrail
}

// startSuite runs the services with their edges. Messaging trusts 127.0.0.1 as a proxy (the
// forwarded-address test needs one service that does); the others trust none.
func startSuite(t *testing.T) *suite {
	t.Helper()
	su := &suite{http: map[string]string{}, h1: map[string]*http.Client{}, h2: map[string]*http.Client{},
		grpc: map[string]*grpc.ClientConn{}, tokens: map[string]string{}}
	env := map[string]map[string]string{}
	for _, svc := range privstack.AllServices {
		env[svc] = map[string]string{"SECUREMSG_HTTP_ALLOWED_ORIGINS": allowedOrigin}
	}
	env["messaging"]["SECUREMSG_TRUSTED_PROXIES"] = "127.0.0.1/32"
	su.s = privstack.Start(t, privstack.Options{Services: privstack.AllServices, ServiceEnv: env})
	for _, svc := range privstack.AllServices {
		su.http[svc] = "https://" + su.s.Service(svc).HTTPAddr()
	}
	caPEM, err := os.ReadFile(filepath.Join(su.s.CertsDir(), "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	for _, svc := range privstack.AllServices {
		conf := &tls.Config{RootCAs: roots, ServerName: svc, MinVersion: tls.VersionTLS12}
		h2 := &http.Transport{TLSClientConfig: conf.Clone(), ForceAttemptHTTP2: true}
		h1 := &http.Transport{TLSClientConfig: conf.Clone(), Protocols: new(http.Protocols)}
		h1.Protocols.SetHTTP1(true)
		t.Cleanup(h2.CloseIdleConnections)
		t.Cleanup(h1.CloseIdleConnections)
		su.h2[svc], su.h1[svc] = &http.Client{Transport: h2}, &http.Client{Transport: h1}
		conn, err := grpc.NewClient(su.s.Service(svc).Addr(), grpc.WithTransportCredentials(credentials.NewTLS(conf)), grpc.WithUserAgent(userAgent))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		su.grpc[svc] = conn
	}
	for _, user := range []string{"patient", "teen", "clinician", "auditor", "admin"} {
		su.tokens[user] = su.s.Token(t, user)
	}
	su.audit = watchAuditTrail(t, su.s.NATSURL())
	return su
}

// auditTrail collects every audit record the services publish, by request id.
type auditTrail struct {
	mu   sync.Mutex
	byID map[string][]*eventsv1.AuditRecord
}

func watchAuditTrail(t *testing.T, natsURL string) *auditTrail {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatalf("nats: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cons, err := js.OrderedConsumer(ctx, natsx.AuditStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("audit consumer: %v", err)
	}
	a := &auditTrail{byID: map[string][]*eventsv1.AuditRecord{}}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		rec := &eventsv1.AuditRecord{}
		if proto.Unmarshal(m.Data(), rec) == nil {
			a.mu.Lock()
			a.byID[rec.GetMeta().GetRequestId()] = append(a.byID[rec.GetMeta().GetRequestId()], rec)
			a.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatalf("consume audit stream: %v", err)
	}
	t.Cleanup(cc.Stop)
	return a
}

func (a *auditTrail) records(requestID string) []*eventsv1.AuditRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.byID[requestID])
}

// normalised strips what differs between any two calls (event id, time, request id), keeps the
// user agent's product only (grpc-go appends its own) and orders the deciding policies, so records of one call made in two
// protocols are equal exactly when they record the same thing.
func normalised(recs []*eventsv1.AuditRecord) []*eventsv1.AuditRecord {
	out := make([]*eventsv1.AuditRecord, 0, len(recs))
	for _, r := range recs {
		r = proto.CloneOf(r)
		r.Meta.EventId, r.Meta.OccurredAt, r.Meta.RequestId = "", nil, ""
		r.UserAgent, _, _ = strings.Cut(r.GetUserAgent(), " ")
		// The deciding policies of a refusal come in the engine's (map) order, which varies
		// from one decision to the next whatever the protocol: compare them as a set.
		reasons := strings.Split(r.GetReasonCode(), "_")
		slices.Sort(reasons)
		r.ReasonCode = strings.Join(reasons, "_")
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *eventsv1.AuditRecord) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// edgeRPC is one representative rpc of a service, callable in every protocol.
type edgeRPC struct {
	svc, method string
	rest        string // REST path (GET)
	// native, connectCall and restBody make or read one call; newEdgeRPC builds them.
	native      func(ctx context.Context, conn *grpc.ClientConn) outcome
	connectCall func(ctx context.Context, client *http.Client, url string, header http.Header, opts ...connect.ClientOption) outcome
	restBody    func(body []byte) (outcome, error)
}

// newEdgeRPC describes method of svc with its request, REST path and what identifies a
// successful answer (key).
func newEdgeRPC[Req, Res any, PReq interface {
	*Req
	proto.Message
}, PRes interface {
	*Res
	proto.Message
}](svc, method string, req PReq, rest string, key func(PRes) string) edgeRPC {
	return edgeRPC{
		svc: svc, method: method, rest: rest,
		native: func(ctx context.Context, conn *grpc.ClientConn) outcome {
			resp := PRes(new(Res))
			if err := conn.Invoke(ctx, method, req, resp); err != nil {
				return grpcOutcome(err)
			}
			return outcome{Code: "OK", Key: key(resp)}
		},
		connectCall: func(ctx context.Context, client *http.Client, url string, header http.Header, opts ...connect.ClientOption) outcome {
			c := connect.NewClient[Req, Res](client, url+method, opts...)
			r := connect.NewRequest((*Req)(req))
			for k, v := range header {
				r.Header()[k] = v
			}
			resp, err := c.CallUnary(ctx, r)
			if err != nil {
				return outcome{Code: grpcCodeName(connect.CodeOf(err)), Reason: connectReason(err)}
			}
			return outcome{Code: "OK", Key: key(PRes(resp.Msg))}
		},
		restBody: func(body []byte) (outcome, error) {
			resp := PRes(new(Res))
			if err := protojson.Unmarshal(body, resp); err != nil {
				return outcome{}, err
			}
			return outcome{Code: "OK", Key: key(resp)}, nil
		},
	}
}

// outcome is one call's result, comparable across protocols.
type outcome struct{ Code, Reason, Key string }

// call makes rpc as user in protocol p, with request id id, and returns its outcome.
func (su *suite) call(t *testing.T, p, user, id string, rpc edgeRPC) outcome {
	t.Helper()
	token := "Bearer " + su.tokens[user]
	header := http.Header{"Authorization": {token}, "X-Request-Id": {id}, "User-Agent": {userAgent}}
	switch p {
	case "native gRPC":
		return rpc.native(metadata.AppendToOutgoingContext(t.Context(), "authorization", token, "x-request-id", id), su.grpc[rpc.svc])
	case "Connect JSON":
		return rpc.connectCall(t.Context(), su.h1[rpc.svc], su.http[rpc.svc], header, connect.WithProtoJSON())
	case "Connect proto":
		return rpc.connectCall(t.Context(), su.h2[rpc.svc], su.http[rpc.svc], header)
	case "gRPC-Web":
		return rpc.connectCall(t.Context(), su.h1[rpc.svc], su.http[rpc.svc], header, connect.WithGRPCWeb())
	case "REST":
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, su.http[rpc.svc]+rpc.rest, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = header
		resp, err := su.h2[rpc.svc].Do(req)
		if err != nil {
			t.Fatalf("REST %s: %v", rpc.rest, err)
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			t.Fatalf("REST %s: read body: %v", rpc.rest, err)
		}
		if resp.StatusCode != http.StatusOK {
			r := restResult(t, &http.Response{StatusCode: resp.StatusCode, Body: io.NopCloser(bytes.NewReader(body))})
			return outcome{Code: r.Code, Reason: r.Reason}
		}
		o, err := rpc.restBody(body)
		if err != nil {
			t.Fatalf("REST %s body %q: %v", rpc.rest, body, err)
		}
		return o
	}
	t.Fatalf("unknown protocol %s", p)
	return outcome{}
}

func grpcOutcome(err error) outcome {
	st := status.Convert(err)
	o := outcome{Code: st.Code().String()}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			o.Reason = info.GetReason()
		}
	}
	return o
}

// protocols of the stack tests; native gRPC comes first and is the reference.
var stackProtocols = []string{"native gRPC", "Connect JSON", "Connect proto", "gRPC-Web", "REST"}

// TestBrowserEdgeOverTheServices: one representative rpc of every service, called as an allowed
// and a denied person in every protocol, gives the same answer and leaves the same audit record
// whatever the protocol; an rpc off the browser surface is not found over HTTP; CORS preflights
// from a listed and an unlisted origin; a forwarded client address counts only behind a trusted
// proxy.
func TestBrowserEdgeOverTheServices(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a private stack of every service")
	}
	su := startSuite(t)
	ctx := t.Context()
	patient := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+su.tokens["patient"])
	thread, err := messagingv1.NewMessagingServiceClient(su.grpc["messaging"]).CreateThread(patient, &messagingv1.CreateThreadRequest{
		PoolId: "pool-cardiology", Category: commonv1.ThreadCategory_THREAD_CATEGORY_CLINICAL_QUESTION,
		Sensitivity: commonv1.Sensitivity_SENSITIVITY_NORMAL, Subject: "edge test", Body: "a question for the edge test",
		ClientRequestId: uuid.NewString(),
	})
	if err != nil {
		t.Fatalf("CreateThread = %v", err)
	}
	threadID := thread.GetThread().GetThreadId()
	attachmentID := uploadPDF(patient, t, su)

	// Every call below is audited: the reads (allowed or refused by the record-level policy)
	// by the services, the refusals by the rpc-level guard.
	rpcs := []struct {
		rpc     edgeRPC
		allowed string
		denied  string
	}{
		{newEdgeRPC("messaging", messagingv1.MessagingService_GetThread_FullMethodName,
			&messagingv1.GetThreadRequest{ThreadId: threadID}, "/v1/threads/"+threadID,
			func(m *messagingv1.GetThreadResponse) string { return m.GetThread().GetThreadId() }),
			"patient", "teen"},
		{newEdgeRPC("attachment", attachmentv1.AttachmentService_GetAttachment_FullMethodName,
			&attachmentv1.GetAttachmentRequest{AttachmentId: attachmentID}, "/v1/attachments/"+attachmentID,
			func(m *attachmentv1.GetAttachmentResponse) string { return m.GetAttachment().GetAttachmentId() }),
			"patient", "admin"},
		{newEdgeRPC("notification", notificationv1.NotificationService_GetPreferences_FullMethodName,
			&notificationv1.GetPreferencesRequest{}, "/v1/preferences",
			func(m *notificationv1.GetPreferencesResponse) string { return fmt.Sprint(m.GetPreferences() != nil) }),
			"patient", "admin"},
		{newEdgeRPC("audit", auditv1.AuditService_GetAccessReport_FullMethodName,
			&auditv1.GetAccessReportRequest{PatientId: "p-1001"}, "/v1/patients/p-1001/accessReport",
			func(*auditv1.GetAccessReportResponse) string { return "report" }),
			"patient", "clinician"},
	}

	// Messaging records a person, and names them, at their first call (audited once, whatever
	// the protocol): each user calls once before the calls whose trails are compared.
	for _, r := range rpcs {
		for _, user := range []string{r.allowed, r.denied} {
			su.call(t, "native gRPC", user, uuid.NewString(), rpcs[0].rpc)
		}
	}

	type callID struct{ rpc, user, protocol string }
	ids := map[callID]string{}
	for _, r := range rpcs {
		for _, user := range []string{r.allowed, r.denied} {
			var ref outcome
			for _, p := range stackProtocols {
				id := uuid.NewString()
				ids[callID{r.rpc.method, user, p}] = id
				got := su.call(t, p, user, id, r.rpc)
				switch {
				case p == "native gRPC":
					ref = got
					t.Logf("%s as %s: %s %s", r.rpc.method, user, got.Code, got.Reason)
					if (user == r.allowed) != (got.Code == "OK") {
						t.Errorf("%s as %s over native gRPC = %+v, want %s", r.rpc.method, user, got, map[bool]string{true: "OK", false: "a refusal"}[user == r.allowed])
					}
				case got != ref:
					t.Errorf("%s as %s over %s = %+v, want %+v (as over native gRPC)", r.rpc.method, user, p, got, ref)
				}
			}
		}
	}

	// The audit trail: the same records for the same call in every protocol.
	for _, r := range rpcs {
		for _, user := range []string{r.allowed, r.denied} {
			ref := ids[callID{r.rpc.method, user, "native gRPC"}]
			testkit.WaitFor(t, 20*time.Second, "audit record of "+r.rpc.method+" as "+user, func() bool { return len(su.audit.records(ref)) > 0 })
			for _, p := range stackProtocols[1:] {
				id := ids[callID{r.rpc.method, user, p}]
				testkit.WaitFor(t, 20*time.Second, "as many audit records over "+p+" as natively", func() bool {
					return len(su.audit.records(id)) == len(su.audit.records(ref))
				})
				if diff := cmp.Diff(normalised(su.audit.records(ref)), normalised(su.audit.records(id)), protocmp.Transform()); diff != "" {
					t.Errorf("%s as %s: audit records over %s differ from native gRPC's (-native +%s):\n%s", r.rpc.method, user, p, p, diff)
				}
			}
			t.Logf("%s as %s: %d audit record(s), the same over every protocol", r.rpc.method, user, len(su.audit.records(ref)))
			if recs := su.audit.records(ref); len(recs) > 0 && recs[0].GetSourceIp() != "127.0.0.1" {
				t.Errorf("%s as %s: audit source_ip = %q, want 127.0.0.1", r.rpc.method, user, recs[0].GetSourceIp())
			}
		}
	}

	t.Run("off the browser surface", func(t *testing.T) {
		// The auditor's console is on the surface; the bulk export stays on native gRPC.
		verify := connect.NewClient[auditv1.VerifyRangeRequest, auditv1.VerifyRangeResponse](su.h2["audit"], su.http["audit"]+auditv1.AuditService_VerifyRange_FullMethodName)
		// The log's end moves as audit appends what the calls above recorded.
		testkit.WaitFor(t, 30*time.Second, "VerifyRange over HTTP as an auditor to verify the records above", func() bool {
			vreq := connect.NewRequest(&auditv1.VerifyRangeRequest{FromSequence: 1})
			vreq.Header().Set("Authorization", "Bearer "+su.tokens["auditor"])
			resp, err := verify.CallUnary(t.Context(), vreq)
			if connect.CodeOf(err) == connect.CodeUnimplemented || connect.CodeOf(err) == connect.CodePermissionDenied {
				t.Fatalf("VerifyRange over HTTP as an auditor = %v, want it served (the auditor's console)", err)
			}
			return err == nil && resp.Msg.GetOk() && resp.Msg.GetVerifiedCount() > 0
		})
		export := connect.NewClient[auditv1.ExportAuditEventsRequest, auditv1.ExportAuditEventsResponse](su.h2["audit"], su.http["audit"]+auditv1.AuditService_ExportAuditEvents_FullMethodName)
		ereq := connect.NewRequest(&auditv1.ExportAuditEventsRequest{Format: auditv1.ExportFormat_EXPORT_FORMAT_JSONL})
		ereq.Header().Set("Authorization", "Bearer "+su.tokens["auditor"])
		stream, err := export.CallServerStream(t.Context(), ereq)
		if err == nil {
			for stream.Receive() {
			}
			err = stream.Err()
		}
		if connect.CodeOf(err) != connect.CodeUnimplemented {
			t.Errorf("ExportAuditEvents over HTTP as an auditor = %v, want Unimplemented (native gRPC only)", err)
		}
		for _, svc := range privstack.AllServices {
			resp := do(t, su.h2[svc], http.MethodPost, su.http[svc]+"/grpc.health.v1.Health/Check", map[string]string{"Content-Type": "application/json"}, "{}")
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s: health over HTTP = %d, want 404", svc, resp.StatusCode)
			}
		}
	})

	t.Run("CORS preflight", func(t *testing.T) {
		for origin, want := range map[string]string{allowedOrigin: allowedOrigin, "https://evil.example": ""} {
			resp := do(t, su.h2["messaging"], http.MethodOptions, su.http["messaging"]+"/v1/threads/"+threadID, map[string]string{
				"Origin": origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization",
			}, "")
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != want {
				t.Errorf("preflight from %s: Access-Control-Allow-Origin = %q, want %q", origin, got, want)
			}
		}
	})

	t.Run("forwarded client address", func(t *testing.T) {
		forwarded := func(svc, path, user string) string {
			id := uuid.NewString()
			do(t, su.h2[svc], http.MethodGet, su.http[svc]+path, map[string]string{
				"Authorization": "Bearer " + su.tokens[user], "X-Request-Id": id, "X-Forwarded-For": "198.51.100.23, 203.0.113.9",
			}, "")
			testkit.WaitFor(t, 20*time.Second, "audit record of "+path, func() bool { return len(su.audit.records(id)) > 0 })
			return su.audit.records(id)[0].GetSourceIp()
		}
		if got := forwarded("messaging", "/v1/threads/"+threadID, "patient"); got != "203.0.113.9" {
			t.Errorf("messaging (behind a trusted proxy): audit source_ip = %q, want the forwarded client 203.0.113.9", got)
		}
		if got := forwarded("audit", "/v1/patients/p-1001/accessReport", "clinician"); got != "127.0.0.1" {
			t.Errorf("audit (no trusted proxy): audit source_ip = %q, want the TCP peer 127.0.0.1 (spoofed header ignored)", got)
		}
	})
}

// uploadPDF uploads a small PDF as the patient over native gRPC (a client stream) and returns
// its id.
func uploadPDF(ctx context.Context, t *testing.T, su *suite) string {
	t.Helper()
	data := []byte("%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n" +
		"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
	stream, err := attachmentv1.NewAttachmentServiceClient(su.grpc["attachment"]).UploadAttachment(ctx)
	if err != nil {
		t.Fatalf("UploadAttachment = %v", err)
	}
	if err := stream.Send(&attachmentv1.UploadAttachmentRequest{Payload: &attachmentv1.UploadAttachmentRequest_Metadata{Metadata: &attachmentv1.UploadMetadata{
		FileName: "edge-test.pdf", DeclaredMediaType: "application/pdf", DeclaredSizeBytes: int64(len(data)), ClientRequestId: uuid.NewString(),
	}}}); err != nil {
		t.Fatalf("send upload metadata: %v", err)
	}
	if err := stream.Send(&attachmentv1.UploadAttachmentRequest{Payload: &attachmentv1.UploadAttachmentRequest_Chunk{Chunk: data}}); err != nil {
		t.Fatalf("send upload chunk: %v", err)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatalf("UploadAttachment = %v", err)
	}
	return resp.GetAttachment().GetAttachmentId()
}
