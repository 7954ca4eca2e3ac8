package httpedge_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/platform/httpedge"
)

const (
	getThread   = messagingv1.MessagingService_GetThread_FullMethodName
	checkAccess = messagingv1.MessagingService_CheckMessageAccess_FullMethodName
	watchInbox  = messagingv1.MessagingService_WatchInbox_FullMethodName
	testToken   = "Bearer test-token"
)

// protocol makes one GetThread call in one protocol, sending the bearer token and a request id.
type protocol struct {
	name      string
	getThread func(t *testing.T, e *env, threadID, requestID string) result
}

func connectCall(client func(*env) *http.Client, opts ...connect.ClientOption) func(*testing.T, *env, string, string) result {
	return func(t *testing.T, e *env, threadID, requestID string) result {
		c := connect.NewClient[messagingv1.GetThreadRequest, messagingv1.GetThreadResponse](client(e), e.base+getThread, opts...)
		req := connect.NewRequest(&messagingv1.GetThreadRequest{ThreadId: threadID})
		req.Header().Set("Authorization", testToken)
		req.Header().Set("X-Request-Id", requestID)
		return connectResult(c.CallUnary(t.Context(), req))
	}
}

func restCall(client func(*env) *http.Client) func(*testing.T, *env, string, string) result {
	return func(t *testing.T, e *env, threadID, requestID string) result {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, e.base+"/v1/threads/"+threadID, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", testToken)
		req.Header.Set("X-Request-Id", requestID)
		resp, err := client(e).Do(req)
		if err != nil {
			t.Fatalf("REST GET: %v", err)
		}
		return restResult(t, resp)
	}
}

func nativeCall(t *testing.T, e *env, threadID, requestID string) result {
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", testToken, "x-request-id", requestID)
	resp, err := messagingv1.NewMessagingServiceClient(e.grpc).GetThread(ctx, &messagingv1.GetThreadRequest{ThreadId: threadID})
	if err != nil {
		st := status.Convert(err)
		r := result{Code: st.Code().String()}
		for _, d := range st.Details() {
			if info, ok := d.(interface{ GetReason() string }); ok {
				r.Reason = info.GetReason()
			}
		}
		return r
	}
	return result{ThreadID: resp.GetThread().GetThreadId(), Code: "OK"}
}

var (
	overH2 = func(e *env) *http.Client { return e.h2 }
	overH1 = func(e *env) *http.Client { return e.h1 }
)

var protocols = []protocol{
	{"native gRPC", nativeCall},
	{"Connect JSON, HTTP/2", connectCall(overH2, connect.WithProtoJSON())},
	{"Connect JSON, HTTP/1.1", connectCall(overH1, connect.WithProtoJSON())},
	{"Connect proto, HTTP/2", connectCall(overH2)},
	{"Connect proto, HTTP/1.1", connectCall(overH1)},
	{"gRPC-Web, HTTP/2", connectCall(overH2, connect.WithGRPCWeb())},
	{"gRPC-Web, HTTP/1.1", connectCall(overH1, connect.WithGRPCWeb())},
	{"gRPC through the edge", connectCall(overH2, connect.WithGRPC())},
	{"REST, HTTP/2", restCall(overH2)},
	{"REST, HTTP/1.1", restCall(overH1)},
}

// TestEveryProtocolRunsTheSameChain: a call in any protocol reaches the same handler through the
// same interceptor chain, which sees the same method, token, client address and request id, and
// a refusal comes back with the same code and ErrorInfo reason.
func TestEveryProtocolRunsTheSameChain(t *testing.T) {
	t.Parallel()
	e := startEdge(t)
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			for _, tt := range []struct {
				thread string
				want   result
			}{
				{openThread, result{ThreadID: openThread, Code: "OK"}},
				{closedThread, result{Code: "FailedPrecondition", Reason: "THREAD_CLOSED"}},
			} {
				id := uuid.NewString()
				if got := p.getThread(t, e, tt.thread, id); got != tt.want {
					t.Errorf("GetThread(%s) = %+v, want %+v", tt.thread, got, tt.want)
				}
				got, ok := e.guard.byRequestID(id)
				want := seen{Method: getThread, Authorization: testToken, SourceIP: "127.0.0.1", RequestID: id}
				if !ok || got != want {
					t.Errorf("the guard chain saw %+v (found %v), want %+v", got, ok, want)
				}
			}
		})
	}
}

// TestOnlyTheBrowserSurfaceIsRouted: a service-to-service rpc, the health service and unknown
// paths are not found over HTTP and never reach the chain; natively the rpc still works.
func TestOnlyTheBrowserSurfaceIsRouted(t *testing.T) {
	t.Parallel()
	e := startEdge(t)
	for _, opts := range [][]connect.ClientOption{{connect.WithProtoJSON()}, {}, {connect.WithGRPCWeb()}, {connect.WithGRPC()}} {
		c := connect.NewClient[messagingv1.CheckMessageAccessRequest, messagingv1.CheckMessageAccessResponse](e.h2, e.base+checkAccess, opts...)
		if _, err := c.CallUnary(t.Context(), connect.NewRequest(&messagingv1.CheckMessageAccessRequest{})); connect.CodeOf(err) != connect.CodeUnimplemented {
			t.Errorf("CheckMessageAccess over HTTP (%d options) = %v, want Unimplemented", len(opts), err)
		}
	}
	for _, path := range []string{checkAccess, "/grpc.health.v1.Health/Check", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "/v1/no-such-route", "/"} {
		resp := do(t, e.h2, http.MethodPost, e.base+path, map[string]string{"Content-Type": "application/json"}, "{}")
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("POST %s = HTTP %d, want 404", path, resp.StatusCode)
		}
	}
	valid := &messagingv1.CheckMessageAccessRequest{
		Principal: &commonv1.Principal{Subject: "user-patient"},
		Target:    &messagingv1.CheckMessageAccessRequest_ThreadId{ThreadId: openThread},
		Action:    messagingv1.AccessAction_ACCESS_ACTION_READ,
	}
	if _, err := messagingv1.NewMessagingServiceClient(e.grpc).CheckMessageAccess(t.Context(), valid); err != nil {
		t.Errorf("CheckMessageAccess over native gRPC = %v, want OK", err)
	}
	n := 0
	for _, m := range e.guard.methods() {
		if m == checkAccess {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the chain saw CheckMessageAccess %d times, want 1 (the native call only)", n)
	}
}

// TestRESTRoutesOfOffSurfaceMethodsAreNotFound: when a service has some methods on the surface,
// the transcoder knows all its REST routes; the check in front of the gRPC server still refuses
// the methods off the surface, as 404.
func TestRESTRoutesOfOffSurfaceMethodsAreNotFound(t *testing.T) {
	t.Parallel()
	e := startEdgeWith(t, func(o *httpedge.Options) { o.OnSurface = func(m string) bool { return m == getThread } })
	resp := do(t, e.h2, http.MethodGet, e.base+"/v1/threads", map[string]string{"Authorization": testToken}, "")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /v1/threads (ListThreads, off this surface) = HTTP %d, want 404", resp.StatusCode)
	}
	if got := restCall(overH2)(t, e, openThread, uuid.NewString()); got.Code != "OK" {
		t.Errorf("GET /v1/threads/{id} (GetThread, on the surface) = %+v, want OK", got)
	}
	if slices.Contains(e.guard.methods(), messagingv1.MessagingService_ListThreads_FullMethodName) {
		t.Error("ListThreads reached the chain over REST although it is off the surface")
	}
}

// TestServerStreamsOverHTTP: a server stream (WatchInbox) works over Connect and gRPC-Web, on
// HTTP/1.1 too, as a browser's fetch streams it.
func TestServerStreamsOverHTTP(t *testing.T) {
	t.Parallel()
	e := startEdge(t)
	for _, tt := range []struct {
		name   string
		client func(*env) *http.Client
		opts   []connect.ClientOption
	}{
		{"Connect JSON, HTTP/1.1", overH1, []connect.ClientOption{connect.WithProtoJSON()}},
		{"Connect proto, HTTP/2", overH2, nil},
		{"gRPC-Web, HTTP/1.1", overH1, []connect.ClientOption{connect.WithGRPCWeb()}},
	} {
		c := connect.NewClient[messagingv1.WatchInboxRequest, messagingv1.WatchInboxResponse](tt.client(e), e.base+watchInbox, tt.opts...)
		stream, err := c.CallServerStream(t.Context(), connect.NewRequest(&messagingv1.WatchInboxRequest{}))
		if err != nil {
			t.Fatalf("%s: WatchInbox = %v", tt.name, err)
		}
		n := 0
		for stream.Receive() {
			if stream.Msg().GetHeartbeat() != nil {
				n++
			}
		}
		if err := stream.Err(); err != nil || n != 3 {
			t.Errorf("%s: WatchInbox gave %d heartbeats, err %v; want 3, nil", tt.name, n, err)
		}
		_ = stream.Close()
	}
}

// do sends one plain HTTP request and returns the response with its body read and closed.
func do(t *testing.T, client *http.Client, method, url string, headers map[string]string, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp
}

// connectPost is the raw form of a Connect JSON unary call to GetThread.
func connectPost(threadID string) (string, map[string]string) {
	return fmt.Sprintf(`{"thread_id":%q}`, threadID), map[string]string{"Content-Type": "application/json", "Connect-Protocol-Version": "1", "Authorization": testToken}
}

// TestCORS: a preflight from the listed origin is answered with that origin, credentials and a
// cache lifetime; from any other origin with nothing a browser would accept, and that origin's
// requests themselves are refused before they reach the chain.
func TestCORS(t *testing.T) {
	t.Parallel()
	e := startEdge(t)
	preflight := func(origin string) *http.Response {
		return do(t, e.h2, http.MethodOptions, e.base+getThread, map[string]string{
			"Origin": origin, "Access-Control-Request-Method": "POST",
			"Access-Control-Request-Headers": "authorization,connect-protocol-version,content-type,x-request-id",
		}, "")
	}
	ok := preflight(allowedOrigin)
	for header, want := range map[string]string{
		"Access-Control-Allow-Origin":      allowedOrigin,
		"Access-Control-Allow-Credentials": "true",
		"Access-Control-Max-Age":           "7200",
		"Access-Control-Allow-Methods":     "POST",
	} {
		if got := ok.Header.Get(header); got != want {
			t.Errorf("preflight from %s: %s = %q, want %q", allowedOrigin, header, got, want)
		}
	}
	if got := strings.ToLower(ok.Header.Get("Access-Control-Allow-Headers")); !strings.Contains(got, "authorization") || !strings.Contains(got, "connect-protocol-version") {
		t.Errorf("preflight: Access-Control-Allow-Headers = %q, want authorization and connect-protocol-version", got)
	}
	for _, origin := range []string{"https://evil.example", "https://portal.example.org.evil.example", "null", "http://portal.example.org"} {
		refused := preflight(origin)
		if v := refused.Header.Get("Access-Control-Allow-Origin") + refused.Header.Get("Access-Control-Allow-Credentials"); v != "" {
			t.Errorf("preflight from %s answered Allow-Origin/Allow-Credentials %q, want neither", origin, v)
		}
		body, headers := connectPost(openThread)
		headers["Origin"], headers["X-Request-Id"] = origin, uuid.NewString()
		if resp := do(t, e.h2, http.MethodPost, e.base+getThread, headers, body); resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST from %s = HTTP %d, want 403", origin, resp.StatusCode)
		}
		if _, reached := e.guard.byRequestID(headers["X-Request-Id"]); reached {
			t.Errorf("a request from %s reached the chain", origin)
		}
	}
	body, headers := connectPost(openThread)
	headers["Origin"] = allowedOrigin
	resp := do(t, e.h2, http.MethodPost, e.base+getThread, headers, body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != allowedOrigin {
		t.Errorf("POST from %s = HTTP %d, Allow-Origin %q; want 200, the origin", allowedOrigin, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	if got := resp.Header.Get("Access-Control-Expose-Headers"); !strings.Contains(got, "X-Request-Id") || !strings.Contains(got, "Grpc-Status") {
		t.Errorf("Access-Control-Expose-Headers = %q, want X-Request-Id and the gRPC-Web headers", got)
	}
}

// TestSafetyHeadersOnEveryResponse: answers, refusals, 404s, preflights and the OpenAPI document
// all carry the browser safeguards.
func TestSafetyHeadersOnEveryResponse(t *testing.T) {
	t.Parallel()
	e := startEdge(t)
	want := map[string]string{
		"Cache-Control":             "no-store",
		"X-Content-Type-Options":    "nosniff",
		"Strict-Transport-Security": "max-age=63072000; includeSubDomains",
		"Referrer-Policy":           "no-referrer",
		"Content-Security-Policy":   "default-src 'none'; frame-ancestors 'none'",
	}
	okBody, okHeaders := connectPost(openThread)
	closedBody, closedHeaders := connectPost(closedThread)
	cases := []struct {
		name       string
		method     string
		path       string
		headers    map[string]string
		body       string
		wantStatus int
	}{
		{"Connect answer", http.MethodPost, getThread, okHeaders, okBody, http.StatusOK},
		{"Connect refusal", http.MethodPost, getThread, closedHeaders, closedBody, http.StatusBadRequest},
		{"REST answer", http.MethodGet, "/v1/threads/" + openThread, map[string]string{"Authorization": testToken}, "", http.StatusOK},
		{"not on the surface", http.MethodPost, checkAccess, okHeaders, "{}", http.StatusNotFound},
		{"token in the URL", http.MethodGet, "/v1/threads/" + openThread + "?access_token=x", nil, "", http.StatusBadRequest},
		{"preflight", http.MethodOptions, getThread, map[string]string{"Origin": allowedOrigin, "Access-Control-Request-Method": "POST"}, "", http.StatusNoContent},
		{"refused origin", http.MethodPost, getThread, map[string]string{"Origin": "https://evil.example"}, okBody, http.StatusForbidden},
		{"OpenAPI document", http.MethodGet, "/openapi.json", nil, "", http.StatusOK},
	}
	for _, tt := range cases {
		resp := do(t, e.h2, tt.method, e.base+tt.path, tt.headers, tt.body)
		if resp.StatusCode != tt.wantStatus {
			t.Errorf("%s: HTTP %d, want %d", tt.name, resp.StatusCode, tt.wantStatus)
		}
		for h, v := range want {
			if got := resp.Header.Get(h); got != v {
				t.Errorf("%s: %s = %q, want %q", tt.name, h, got, v)
			}
		}
	}
}

// TestTokenInURLRefused: a bearer token in the query string is refused with 400 before any rpc
// runs, on every route and protocol, and never reaches a log.
func TestTokenInURLRefused(t *testing.T) {
	t.Parallel()
	e := startEdge(t)
	const secret = "eyJ-token-in-url-5f2a9c"
	for _, tt := range []struct {
		method, path string
		headers      map[string]string
	}{
		{http.MethodGet, "/v1/threads/" + openThread + "?access_token=" + secret, nil},
		{http.MethodGet, "/v1/threads?page_size=5&access_token=" + secret, nil},
		{http.MethodGet, getThread + "?connect=v1&encoding=json&message=%7B%7D&access_token=" + secret, nil},
		{http.MethodPost, getThread + "?access_token=" + secret, map[string]string{"Content-Type": "application/json"}},
	} {
		id := uuid.NewString()
		headers := map[string]string{"X-Request-Id": id}
		for k, v := range tt.headers {
			headers[k] = v
		}
		if resp := do(t, e.h2, tt.method, e.base+tt.path, headers, "{}"); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s %s = HTTP %d, want 400", tt.method, tt.path, resp.StatusCode)
		}
		if _, reached := e.guard.byRequestID(id); reached {
			t.Errorf("%s %s reached the chain", tt.method, tt.path)
		}
	}
	e.shutdown(t)
	if strings.Contains(e.logs.String(), secret) {
		t.Error("the token from a URL reached the logs")
	}
}

// TestOpenAPIDocument: the edge serves the OpenAPI document of the service it carries.
func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	e := startEdge(t)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, e.base+"/openapi.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.h2.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var doc struct {
		OpenAPI string                     `json:"openapi"`
		Paths   map[string]json.RawMessage `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("decode /openapi.json: %v", err)
	}
	if resp.Header.Get("Content-Type") != "application/json" || !strings.HasPrefix(doc.OpenAPI, "3.") || doc.Paths["/v1/threads/{threadId}"] == nil {
		t.Errorf("/openapi.json: type %q, openapi %q, %d paths; want application/json, 3.x, /v1/threads/{threadId} among them",
			resp.Header.Get("Content-Type"), doc.OpenAPI, len(doc.Paths))
	}
}

// TestEdgeNeverAsksForAClientCertificate: the gRPC listener asks for a client certificate (it
// verifies one when given); the edge never does, so a browser shows no certificate picker and no
// HTTP request can carry a service identity.
func TestEdgeNeverAsksForAClientCertificate(t *testing.T) {
	t.Parallel()
	e := startEdge(t)
	asked := func(addr string) bool {
		var mu sync.Mutex
		was := false
		conf := e.pki.ClientTLS(false)
		conf.NextProtos = []string{"h2"}
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			mu.Lock()
			defer mu.Unlock()
			was = true
			return &e.pki.ClientCert, nil
		}
		conn, err := tls.Dial("tcp", addr, conf)
		if err != nil {
			t.Fatalf("tls.Dial(%s) = %v", addr, err)
		}
		_ = conn.Close() // the handshake is all this wanted
		mu.Lock()
		defer mu.Unlock()
		return was
	}
	if !asked(e.grpc.Target()) {
		t.Error("the gRPC listener did not ask for a client certificate (the comparison is void)")
	}
	if asked(strings.TrimPrefix(e.base, "https://")) {
		t.Error("the HTTP edge asked for a client certificate")
	}
}

// TestShutdownLetsEdgeRequestsFinish: on shutdown the edge stops taking requests and lets the
// ones in flight finish before the gRPC server stops (whose GracefulStop would cut them off).
func TestShutdownLetsEdgeRequestsFinish(t *testing.T) {
	t.Parallel()
	e := startEdge(t)
	c := connect.NewClient[messagingv1.GetThreadRequest, messagingv1.GetThreadResponse](e.h2, e.base+getThread)
	done := make(chan result, 1)
	go func() {
		done <- connectResult(c.CallUnary(context.Background(), connect.NewRequest(&messagingv1.GetThreadRequest{ThreadId: blockedThread})))
	}()
	select {
	case <-e.stub.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the blocked call did not start")
	}
	e.stop() // the cleanup waits for both servers
	// Wait until the edge has stopped accepting connections: shutdown is under way.
	edgeAddr := strings.TrimPrefix(e.base, "https://")
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", edgeAddr, time.Second)
		if err != nil {
			break
		}
		_ = conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("the edge still accepts connections 10s into shutdown")
		}
		time.Sleep(10 * time.Millisecond) //nolint:forbidigo // polling a listener's state; nothing to wait on
	}
	close(e.stub.release)
	select {
	case got := <-done:
		if got.Code != "OK" {
			t.Errorf("the call in flight at shutdown = %+v, want OK", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call in flight did not finish")
	}
}

// TestPHIInTheURLRefused: the REST transcoder would fill any request field from a query
// parameter of its name, so a field the protos mark as PHI (debug_redact) is refused in a query
// string, before the chain runs and without its value reaching the logs; the same field in the
// body is fine.
func TestPHIInTheURLRefused(t *testing.T) {
	t.Parallel()
	e := startEdge(t)
	const marker = "PHIMARKER-in-url-71c3"
	for _, path := range []string{
		"/v1/threads/" + openThread + "?breakGlassReason=" + marker,
		"/v1/threads/" + openThread + "?break_glass_reason=" + marker,
		"/v1/threads?page_size=5&body=" + marker,
		"/v1/threads/" + openThread + "/messages?body=" + marker,
	} {
		id := uuid.NewString()
		method := http.MethodGet
		if strings.Contains(path, "/messages") {
			method = http.MethodPost
		}
		resp := do(t, e.h2, method, e.base+path, map[string]string{"X-Request-Id": id, "Content-Type": "application/json"}, "{}")
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s %s = HTTP %d, want 400", method, path, resp.StatusCode)
		}
		if _, reached := e.guard.byRequestID(id); reached {
			t.Errorf("%s %s reached the chain", method, path)
		}
	}
	id := uuid.NewString()
	if resp := do(t, e.h2, http.MethodGet, e.base+"/v1/threads/"+openThread+"?pageSize=5", map[string]string{"X-Request-Id": id}, ""); resp.StatusCode == http.StatusBadRequest {
		t.Errorf("a query parameter that is not PHI was refused")
	}
	e.shutdown(t)
	if strings.Contains(e.logs.String(), marker) {
		t.Error("PHI from a URL reached the logs")
	}
}

// TestRoutesAreServedInsideTheSafety: a plain HTTP route (attachment's ranged download) is
// served beside the transcoded rpcs with the same safety headers and refusals.
func TestRoutesAreServedInsideTheSafety(t *testing.T) {
	t.Parallel()
	e := startEdgeWith(t, func(o *httpedge.Options) {
		o.Routes = map[string]http.Handler{"GET /v1/things/{id}/content": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("content")) // a fixed body: the test is about the headers around it
		})}
	})
	resp := do(t, e.h2, http.MethodGet, e.base+"/v1/things/t1/content", nil, "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("route = HTTP %d, headers %v; want 200 with the safety headers", resp.StatusCode, resp.Header)
	}
	if resp := do(t, e.h2, http.MethodGet, e.base+"/v1/things/t1/content?access_token=x", nil, ""); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("route with a token in the URL = HTTP %d, want 400", resp.StatusCode)
	}
	e.shutdown(t)
}

// TestEdgeRefusalsAreLogged: what the edge refuses itself never reaches the gRPC server's
// access log, so the edge logs it — with its reason, status and the caller's request id, and
// never the path or query the refusal was about. A call that reaches the server and fails is
// the server's to log, not the edge's.
func TestEdgeRefusalsAreLogged(t *testing.T) {
	t.Parallel()
	e := startEdge(t)
	const marker = "refused-path-marker-3c9d"
	cases := []struct {
		name, method, path string
		headers            map[string]string
		status             int
		reason             string
	}{
		{"unlisted origin", http.MethodGet, "/v1/threads/" + openThread + "?x=" + marker, map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden, "origin_not_allowed"},
		{"token in the URL", http.MethodGet, "/v1/threads?access_token=" + marker, nil, http.StatusBadRequest, "token_in_query"},
		{"PHI in the URL", http.MethodGet, "/v1/threads?body=" + marker, nil, http.StatusBadRequest, "phi_in_query"},
		{"off the surface", http.MethodPost, "/securemsg.messaging.v1.MessagingService/CheckMessageAccess?" + marker, map[string]string{"Content-Type": "application/json"}, http.StatusNotFound, "not_on_surface"},
		{"no such route", http.MethodGet, "/v1/" + marker, nil, http.StatusNotFound, "not_routed"},
	}
	ids := map[string]string{}
	for _, c := range cases {
		id := "edge-" + strings.ReplaceAll(c.reason, "_", "-") + "-1"
		ids[c.reason] = id
		headers := map[string]string{"X-Request-Id": id}
		for k, v := range c.headers {
			headers[k] = v
		}
		if resp := do(t, e.h2, c.method, e.base+c.path, headers, "{}"); resp.StatusCode != c.status {
			t.Errorf("%s: HTTP %d, want %d", c.name, resp.StatusCode, c.status)
		}
	}
	// Reaches the server, which refuses it (a closed thread): the server's access log has it.
	if resp := do(t, e.h2, http.MethodGet, e.base+"/v1/threads/"+closedThread, map[string]string{"X-Request-Id": "edge-reached-0001"}, ""); resp.StatusCode < 400 {
		t.Errorf("GET of a closed thread = HTTP %d, want a refusal", resp.StatusCode)
	}
	e.shutdown(t)

	var lines []map[string]any
	for _, l := range strings.Split(e.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "http request refused" {
			lines = append(lines, m)
		}
	}
	for _, c := range cases {
		found := false
		for _, m := range lines {
			if m["request_id"] == ids[c.reason] {
				found = true
				if m["refusal"] != c.reason || m["status"] != float64(c.status) || m["method"] != c.method || m["peer"] == nil {
					t.Errorf("%s: logged %v, want refusal %s, status %d, method and peer", c.name, m, c.reason, c.status)
				}
			}
		}
		if !found {
			t.Errorf("%s: no refusal logged (request id %s)", c.name, ids[c.reason])
		}
	}
	for _, m := range lines {
		if m["request_id"] == "edge-reached-0001" {
			t.Errorf("the edge logged a refusal the server gave: %v", m)
		}
	}
	if strings.Contains(e.logs.String(), marker) {
		t.Error("a refused path or query reached the logs")
	}
}
