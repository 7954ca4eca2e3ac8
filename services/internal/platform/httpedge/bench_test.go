package httpedge_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/prometheus/procfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/testkit/benchkit"
	"github.com/securemsg/securemsg/services/internal/testkit/privstack"
)

// The edge benchmarks run the real messaging binary on a private stack and compare the CPU the
// service process spends per call when the call comes through the HTTP edge (Connect proto,
// Connect JSON, REST) with the same call over native gRPC, measured in the same run, taking
// turns so that both see the same machine. The service's CPU is read from /proc for its pid, so
// the clients' own work (JSON encoding, this process) is not counted: the question is what the
// edge costs the server. The target is a ratio below 1.15. Re-run:
//
//	go test -run '^$' -bench Edge -benchtime 1x ./services/internal/platform/httpedge/

// benchEnv is the messaging service with its edge, one patient and a thread of theirs.
type benchEnv struct {
	s        *privstack.Stack
	pid      int
	edge     string
	h2       *http.Client
	api      messagingv1.MessagingServiceClient
	token    string
	threadID string // ten messages, read by GetThread
	// sendThread takes the SendMessage calls, so the read thread stays the same size.
	sendThread string
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	// The rate limits are the service's defaults for people (20/s); a benchmark is one person
	// calling as fast as it can.
	s := privstack.Start(b, privstack.Options{
		Services: []string{"messaging"}, Without: []string{"minio", "clamd", "mailpit"},
		ServiceEnv: map[string]map[string]string{"messaging": {
			"SECUREMSG_LOG_LEVEL":          "warn",
			"SECUREMSG_RATE_PER_PRINCIPAL": "1000000", "SECUREMSG_BURST_PER_PRINCIPAL": "1000000",
			"SECUREMSG_RATE_PER_CLIENT": "1000000", "SECUREMSG_BURST_PER_CLIENT": "1000000",
		}},
	})
	caPEM, err := os.ReadFile(filepath.Join(s.CertsDir(), "ca.pem"))
	if err != nil {
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	conf := &tls.Config{RootCAs: roots, ServerName: "messaging", MinVersion: tls.VersionTLS12}
	tr := &http.Transport{TLSClientConfig: conf.Clone(), ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 64}
	b.Cleanup(tr.CloseIdleConnections)
	conn, err := grpc.NewClient(s.Service("messaging").Addr(), grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	e := &benchEnv{s: s, pid: s.Service("messaging").PID(), edge: "https://" + s.Service("messaging").HTTPAddr(), h2: &http.Client{Transport: tr},
		api: messagingv1.NewMessagingServiceClient(conn), token: "Bearer " + s.Token(b, "patient")}
	ctx := e.native(b.Context())
	for _, id := range []*string{&e.threadID, &e.sendThread} {
		resp, err := e.api.CreateThread(ctx, &messagingv1.CreateThreadRequest{
			PoolId: "pool-cardiology", Category: commonv1.ThreadCategory_THREAD_CATEGORY_CLINICAL_QUESTION,
			Sensitivity: commonv1.Sensitivity_SENSITIVITY_NORMAL, Subject: "bench", Body: benchBody, ClientRequestId: uuid.NewString(),
		})
		if err != nil {
			b.Fatalf("CreateThread = %v", err)
		}
		*id = resp.GetThread().GetThreadId()
	}
	for range 9 { // GetThread reads ten messages of 500 bytes
		if _, err := e.api.SendMessage(ctx, &messagingv1.SendMessageRequest{ThreadId: e.threadID, Body: benchBody, ClientRequestId: uuid.NewString()}); err != nil {
			b.Fatalf("SendMessage = %v", err)
		}
	}
	return e
}

var benchBody = strings.Repeat("a message body of a realistic size. ", 14)[:500]

func (e *benchEnv) native(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", e.token)
}

// serviceCPU is the messaging process's CPU time so far.
func (e *benchEnv) serviceCPU(b *testing.B) time.Duration {
	p, err := procfs.NewProc(e.pid)
	if err != nil {
		b.Fatalf("messaging process %d: %v", e.pid, err)
	}
	st, err := p.Stat()
	if err != nil {
		b.Fatalf("messaging process %d stat: %v", e.pid, err)
	}
	return time.Duration(st.CPUTime() * float64(time.Second))
}

// call is one rpc call of a benchmark, in one protocol.
type call func(ctx context.Context) error

// benchRounds is how many alternating turns the edge and native gRPC take: load from other
// work on a shared machine comes and goes, and both sides should see the same.
const benchRounds = 4

// benchWorkers call concurrently, as many portal users would.
const benchWorkers = 8

// compareCPU runs edge and native alternately, perSide calls each, and returns each side's
// service CPU per call and calls per second.
func (e *benchEnv) compareCPU(b *testing.B, perSide int, edge, native call) (edgeCPU, nativeCPU time.Duration, edgeRate, nativeRate float64) {
	b.Helper()
	var cpu, wall [2]time.Duration
	per := max(perSide/benchRounds, benchWorkers)
	for range benchRounds {
		for side, op := range []call{edge, native} {
			c0, t0 := e.serviceCPU(b), time.Now()
			runCalls(b, per, op)
			wall[side] += time.Since(t0)
			cpu[side] += e.serviceCPU(b) - c0
		}
	}
	n := time.Duration(per * benchRounds)
	return cpu[0] / n, cpu[1] / n, float64(n) / wall[0].Seconds(), float64(n) / wall[1].Seconds()
}

// runCalls makes n calls of op over benchWorkers workers.
func runCalls(b *testing.B, n int, op call) {
	b.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for w := range benchWorkers {
		wg.Go(func() {
			for i := w; i < n; i += benchWorkers {
				if err := op(context.Background()); err != nil {
					mu.Lock()
					first = errors.Join(first, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		b.Fatalf("benchmark call: %v", first)
	}
}

// restPost and restGet are the REST forms of the two rpcs.
func (e *benchEnv) rest(ctx context.Context, method, path string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, method, e.edge+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", e.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.h2.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }() // read to the end below; a close error changes nothing
	got, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, got)
	}
	return err
}

// BenchmarkEdgeCPUPerCall: SendMessage and GetThread through the edge in each browser protocol,
// beside native gRPC, as service CPU per call (µs) and calls per second.
func BenchmarkEdgeCPUPerCall(b *testing.B) {
	e := newBenchEnv(b)
	sendReq := func() *messagingv1.SendMessageRequest {
		return &messagingv1.SendMessageRequest{ThreadId: e.sendThread, Body: benchBody, ClientRequestId: uuid.NewString()}
	}
	getReq := &messagingv1.GetThreadRequest{ThreadId: e.threadID}
	nativeSend := func(ctx context.Context) error { _, err := e.api.SendMessage(e.native(ctx), sendReq()); return err }
	nativeGet := func(ctx context.Context) error {
		r, err := e.api.GetThread(e.native(ctx), getReq)
		if err == nil && len(r.GetMessages()) != 10 {
			err = fmt.Errorf("GetThread: %d messages, want 10", len(r.GetMessages()))
		}
		return err
	}
	connectSend := func(opts ...connect.ClientOption) call {
		c := connect.NewClient[messagingv1.SendMessageRequest, messagingv1.SendMessageResponse](e.h2, e.edge+messagingv1.MessagingService_SendMessage_FullMethodName, opts...)
		return func(ctx context.Context) error {
			req := connect.NewRequest(sendReq())
			req.Header().Set("Authorization", e.token)
			_, err := c.CallUnary(ctx, req)
			return err
		}
	}
	connectGet := func(opts ...connect.ClientOption) call {
		c := connect.NewClient[messagingv1.GetThreadRequest, messagingv1.GetThreadResponse](e.h2, e.edge+getThread, opts...)
		return func(ctx context.Context) error {
			req := connect.NewRequest(getReq)
			req.Header().Set("Authorization", e.token)
			r, err := c.CallUnary(ctx, req)
			if err == nil && len(r.Msg.GetMessages()) != 10 {
				err = fmt.Errorf("GetThread: %d messages, want 10", len(r.Msg.GetMessages()))
			}
			return err
		}
	}
	restSend := func(ctx context.Context) error {
		body, err := protojson.Marshal(&messagingv1.SendMessageRequest{Body: benchBody, ClientRequestId: uuid.NewString()})
		if err != nil {
			return err
		}
		return e.rest(ctx, http.MethodPost, "/v1/threads/"+e.sendThread+"/messages", body)
	}
	restGet := func(ctx context.Context) error { return e.rest(ctx, http.MethodGet, "/v1/threads/"+e.threadID, nil) }

	for _, bc := range []struct {
		name         string
		edge, native call
	}{
		{"SendMessage/Connect-proto", connectSend(), nativeSend},
		{"SendMessage/Connect-JSON", connectSend(connect.WithProtoJSON()), nativeSend},
		{"SendMessage/REST", restSend, nativeSend},
		{"GetThread/Connect-proto", connectGet(), nativeGet},
		{"GetThread/Connect-JSON", connectGet(connect.WithProtoJSON()), nativeGet},
		{"GetThread/REST", restGet, nativeGet},
	} {
		b.Run(bc.name, func(b *testing.B) {
			runCalls(b, benchWorkers*4, bc.edge) // warm both paths: connections, caches
			runCalls(b, benchWorkers*4, bc.native)
			edgeCPU, nativeCPU, edgeRate, nativeRate := e.compareCPU(b, max(b.N, 1200), bc.edge, bc.native)
			benchkit.Compare(b, float64(edgeCPU.Nanoseconds())/1000, float64(nativeCPU.Nanoseconds())/1000, "service-cpu-µs/call")
			benchkit.Compare(b, edgeRate, nativeRate, "calls/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}
