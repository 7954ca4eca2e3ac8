package e2e_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	notificationv1 "github.com/securemsg/securemsg/gen/securemsg/notification/v1"

	"github.com/securemsg/securemsg/services/internal/testkit/privstack"
)

// portalTraceID is the trace id the test's "portal" sends in its traceparent. A public caller
// may not choose our trace ids: the services must start their own trace and only link to it.
const portalTraceID = "0af7651916cd43dd8448eb211c80319c"

// TestTraceFromSendMessageToSMTPAndAudit follows one portal request through the suite with
// tracing on, in a real trace backend (Jaeger, through its query API): a patient's
// SendMessage over the HTTP edge (Connect), the messaging service's statements and its outbox
// publish, the notification service's handling of the event and, later, the delivery's SMTP
// hand-off, and the audit service's append of the request's audit record — one trace, every
// span's parent in it. Then every span of every trace the services exported is searched for
// the PHI the test wrote, the contact address and the bearer tokens.
func TestTraceFromSendMessageToSMTPAndAudit(t *testing.T) {
	jaeger := privstack.StartJaeger(t)
	e := newEnv(t, privstack.Options{Services: []string{"messaging", "notification", "audit"}, Without: []string{"minio", "clamd"}, Env: map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.OTLPEndpoint(),
		"OTEL_BSP_SCHEDULE_DELAY":     "100", // milliseconds: the test waits for the spans
	}})
	ctx := t.Context()

	// The clinician asks for email alerts; the address is PHI (a contact point) and must
	// appear in no span.
	address := fmt.Sprintf("clinician-%s@trace.test", randomHex(6))
	notification := notificationv1.NewNotificationServiceClient(e.s.Conn(t, "notification"))
	// messaging seeds the directory (the dev client applications) as it starts; notification
	// admits callers once its watch of the directory has them, which may be a moment later.
	if err := eventually(ctx, 20*time.Second, 200*time.Millisecond, func(ctx context.Context) error {
		_, err := notification.UpdatePreferences(e.as(ctx, "clinician"), &notificationv1.UpdatePreferencesRequest{
			Preferences: &notificationv1.Preferences{Email: &notificationv1.ChannelPreference{Enabled: true, Address: address}},
			UpdateMask:  &fieldmaskpb.FieldMask{Paths: []string{"email"}},
		})
		return err
	}); err != nil {
		t.Fatalf("UpdatePreferences(email) as clinician = %v", err)
	}
	thread, _, err := e.createThread(ctx)
	if err != nil {
		t.Fatalf("CreateThread = %v", err)
	}
	// Alerts go to the thread's participants and assignee: the clinician claims the thread.
	if _, err := e.messaging.ClaimThread(e.as(ctx, "clinician"), &messagingv1.ClaimThreadRequest{ThreadId: thread}); err != nil {
		t.Fatalf("ClaimThread as clinician = %v", err)
	}

	body := "reply " + e.markers[1]
	if err := connectSendMessage(ctx, e, thread, body); err != nil {
		t.Fatalf("SendMessage over the HTTP edge: %v", err)
	}
	if _, err := waitForMail(ctx, e.s.MailAPIURL(), address, 1); err != nil {
		t.Fatalf("the reply's alert: %v", err)
	}

	// The spans the reply's trace must hold, by service and span name: the rpc, a statement,
	// the outbox publish, notification's handling, delivery and SMTP hand-off, and audit's
	// handling and append of the rpc's audit record.
	const method = "securemsg.messaging.v1.MessagingService/SendMessage"
	want := []struct{ service, span string }{
		{"securemsg-messaging", method},
		{"securemsg-messaging", "pg "},
		{"securemsg-messaging", "outbox publish"},
		{"securemsg-notification", "process "},
		{"securemsg-notification", "notification deliver"},
		{"securemsg-notification", "send email"},
		{"securemsg-audit", "process "},
		{"securemsg-audit", "audit append"},
	}
	var tr jaegerTrace
	var roots []jaegerSpan
	err = eventually(ctx, 30*time.Second, 300*time.Millisecond, func(ctx context.Context) error {
		traces, err := jaegerTraces(ctx, jaeger.QueryURL(), "securemsg-messaging", method)
		if err != nil {
			return err
		}
		if len(traces) != 1 {
			return fmt.Errorf("%d traces of %s; want the one SendMessage", len(traces), method)
		}
		tr = traces[0]
		for _, w := range want {
			if !slices.ContainsFunc(tr.Spans, func(s jaegerSpan) bool {
				return tr.service(s) == w.service && strings.HasPrefix(s.OperationName, w.span)
			}) {
				return fmt.Errorf("trace %s has no %s span %q yet (%d spans: %s)", tr.TraceID, w.service, w.span, len(tr.Spans), tr.summary())
			}
		}
		// One trace, connected: every span but the root has its parent in the trace. Each
		// service exports on its own timer, so a child may arrive before its parent: asked
		// again until the trace is whole.
		ids := map[string]bool{}
		for _, s := range tr.Spans {
			ids[s.SpanID] = true
		}
		roots = nil
		for _, s := range tr.Spans {
			switch parent := s.parent(); {
			case parent == "":
				roots = append(roots, s)
			case !ids[parent]:
				return fmt.Errorf("span %s (%s) has parent %s not (yet) in trace %s", s.OperationName, tr.service(s), parent, tr.TraceID)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The root is the rpc, which links to, but does not continue, the portal's own trace.
	if len(roots) != 1 || roots[0].OperationName != method {
		t.Fatalf("trace %s roots = %v; want the one %s server span", tr.TraceID, roots, method)
	}
	if tr.TraceID == portalTraceID {
		t.Errorf("the services continued the portal's trace %s; a public caller must only be linked", portalTraceID)
	}
	if !slices.ContainsFunc(roots[0].References, func(r jaegerRef) bool { return r.TraceID == portalTraceID }) {
		t.Errorf("root span references %v; want a link to the portal's trace %s", roots[0].References, portalTraceID)
	}
	t.Logf("trace %s: %d spans: %s", tr.TraceID, len(tr.Spans), tr.summary())

	// No PHI, contact point or token in anything any service exported.
	secrets := append(slices.Clone(e.markers), address)
	for _, tok := range e.tokens {
		secrets = append(secrets, tok)
	}
	for _, svc := range []string{"securemsg-messaging", "securemsg-attachment", "securemsg-notification", "securemsg-audit"} {
		raw, err := jaegerGet(ctx, jaeger.QueryURL()+"/api/traces?"+url.Values{"service": {svc}, "limit": {"1000"}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			if bytes.Contains(raw, []byte(s)) {
				t.Errorf("the traces of %s hold %q (PHI, a contact point or a token)", svc, s[:min(len(s), 16)])
			}
		}
	}
}

// connectSendMessage posts a reply as the patient through messaging's HTTP edge with the
// Connect protocol (JSON), as a browser portal does, with a traceparent of the portal's own.
func connectSendMessage(ctx context.Context, e *env, thread, body string) error {
	caPEM, err := os.ReadFile(filepath.Join(e.s.CertsDir(), "ca.pem"))
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return errors.New("no certificate in the stack's ca.pem")
	}
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
	}}
	payload, err := json.Marshal(map[string]string{"threadId": thread, "body": body, "clientRequestId": uuid.NewString()})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		"https://"+e.s.Service("messaging").HTTPAddr()+"/securemsg.messaging.v1.MessagingService/SendMessage", bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connect-Protocol-Version", "1")
	req.Header.Set("Authorization", "Bearer "+e.tokens["patient"])
	req.Header.Set("traceparent", "00-"+portalTraceID+"-b7ad6b7169203331-01")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, answer)
	}
	return nil
}

// waitForMail waits until mailpit holds at least n messages to address and returns the count.
func waitForMail(ctx context.Context, api, address string, n int) (int, error) {
	var got int
	err := eventually(ctx, 30*time.Second, 250*time.Millisecond, func(ctx context.Context) error {
		raw, err := jaegerGet(ctx, api+"/api/v1/search?"+url.Values{"query": {"to:" + address}}.Encode())
		if err != nil {
			return err
		}
		var res struct {
			MessagesCount int `json:"messages_count"`
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			return err
		}
		if got = res.MessagesCount; got < n {
			return fmt.Errorf("%d messages to the clinician; want %d", got, n)
		}
		return nil
	})
	return got, err
}

// jaegerTrace is a trace as Jaeger's query API (/api/traces) returns it.
type jaegerTrace struct {
	TraceID   string                   `json:"traceID"`
	Spans     []jaegerSpan             `json:"spans"`
	Processes map[string]jaegerProcess `json:"processes"`
}

type jaegerSpan struct {
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	ProcessID     string      `json:"processID"`
	References    []jaegerRef `json:"references"`
}

type jaegerRef struct {
	RefType string `json:"refType"` // CHILD_OF (the parent) or FOLLOWS_FROM (a link)
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

type jaegerProcess struct {
	ServiceName string `json:"serviceName"`
}

func (tr jaegerTrace) service(s jaegerSpan) string { return tr.Processes[s.ProcessID].ServiceName }

// parent is the span's CHILD_OF reference in its own trace, "" for a root.
func (s jaegerSpan) parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

func (tr jaegerTrace) summary() string {
	names := make([]string, 0, len(tr.Spans))
	for _, s := range tr.Spans {
		names = append(names, strings.TrimPrefix(tr.service(s), "securemsg-")+":"+s.OperationName)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// jaegerTraces returns the traces holding an operation of service.
func jaegerTraces(ctx context.Context, queryURL, service, operation string) ([]jaegerTrace, error) {
	raw, err := jaegerGet(ctx, queryURL+"/api/traces?"+url.Values{"service": {service}, "operation": {operation}, "limit": {"20"}}.Encode())
	if err != nil {
		return nil, err
	}
	var res struct {
		Data []jaegerTrace `json:"data"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return nil, fmt.Errorf("decode Jaeger traces: %w", err)
	}
	return res.Data, nil
}

func jaegerGet(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d: %.200s", u, resp.StatusCode, raw)
	}
	return raw, nil
}
