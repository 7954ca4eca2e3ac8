package wire_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/encoding/protojson"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
	"github.com/securemsg/securemsg/services/messaging/internal/wire"
)

// httpWatch is a WatchInbox stream over the HTTP edge, read by connect-go as a browser's
// connect-web or grpc-web client reads it.
type httpWatch struct {
	mu    sync.Mutex
	msgs  []*messagingv1.WatchInboxResponse
	err   error
	ended chan struct{}
}

// edgeProtocols are the browser protocols, each over the HTTP version a browser's fetch
// streams it with.
var edgeProtocols = []struct {
	name  string
	http2 bool
	opts  []connect.ClientOption
}{
	{"Connect JSON over HTTP/1.1", false, []connect.ClientOption{connect.WithProtoJSON()}},
	{"Connect proto over HTTP/2", true, nil},
	{"gRPC-Web over HTTP/1.1", false, []connect.ClientOption{connect.WithGRPCWeb()}},
}

// edgeClient is an HTTPS client of e's edge, trusting the test CA.
func edgeClient(e *env, http2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: e.h.PKI.ClientTLS(false)}
	if http2 {
		tr.ForceAttemptHTTP2 = true
	} else {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetHTTP1(true)
	}
	return &http.Client{Transport: tr}
}

// openHTTPWatch opens a watch over the edge with token and returns once its first message (the
// heartbeat that says it is live) has arrived.
func openHTTPWatch(t *testing.T, e *env, client *http.Client, token string, opts ...connect.ClientOption) *httpWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	c := connect.NewClient[messagingv1.WatchInboxRequest, messagingv1.WatchInboxResponse](client,
		e.edgeURL+messagingv1.MessagingService_WatchInbox_FullMethodName, opts...)
	req := connect.NewRequest(&messagingv1.WatchInboxRequest{})
	req.Header().Set("Authorization", "Bearer "+token)
	stream, err := c.CallServerStream(ctx, req)
	if err != nil {
		t.Fatalf("WatchInbox over the edge = %v", err)
	}
	if !stream.Receive() || stream.Msg().GetHeartbeat() == nil {
		t.Fatalf("WatchInbox over the edge: first message %v, %v; want a heartbeat", stream.Msg(), stream.Err())
	}
	w := &httpWatch{ended: make(chan struct{})}
	go func() {
		defer close(w.ended)
		for stream.Receive() {
			w.mu.Lock()
			w.msgs = append(w.msgs, stream.Msg())
			w.mu.Unlock()
		}
		w.mu.Lock()
		w.err = stream.Err()
		w.mu.Unlock()
		_ = stream.Close() // the stream is over; closing it only releases the connection
	}()
	return w
}

func (w *httpWatch) heard(thread string, kind messagingv1.InboxChangeKind) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.ContainsFunc(w.msgs, func(m *messagingv1.WatchInboxResponse) bool {
		return m.GetChange().GetThreadId() == thread && m.GetChange().GetKind() == kind
	})
}

func (w *httpWatch) threads() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, m := range w.msgs {
		if id := m.GetChange().GetThreadId(); id != "" && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// TestWatchInboxOverHTTP: through the HTTP edge, over Connect (JSON and proto) and gRPC-Web,
// a watch hears the same changes with the same filtering as over native gRPC — a proxy never of
// an adolescent-confidential thread — carries no PHI, and ends with UNAUTHENTICATED and reason
// TOKEN_EXPIRED when its token expires.
func TestWatchInboxOverHTTP(t *testing.T) {
	e := newEnv(t, withEdge, tuned(func(s *wire.Settings) { s.WatchHeartbeat = 100 * time.Millisecond }))
	type pair struct{ patient, proxy *httpWatch }
	watches := map[string]pair{}
	for _, p := range edgeProtocols {
		client := edgeClient(e, p.http2)
		watches[p.name] = pair{
			patient: openHTTPWatch(t, e, client, e.h.Token(t, servicetest.Patient), p.opts...),
			proxy:   openHTTPWatch(t, e, client, e.h.Token(t, servicetest.Proxy), p.opts...),
		}
	}
	confidential := e.createThread(t, servicetest.Teen, &messagingv1.CreateThreadRequest{Subject: marker(t, "subject"), Body: marker(t, "body"),
		Sensitivity: commonv1.Sensitivity_SENSITIVITY_ADOLESCENT_CONFIDENTIAL}).GetThread().GetThreadId()
	own := e.createThread(t, servicetest.Patient, &messagingv1.CreateThreadRequest{Subject: marker(t, "subject"), Body: marker(t, "body")}).GetThread().GetThreadId()
	for name, w := range watches {
		for who, hw := range map[string]*httpWatch{"patient": w.patient, "proxy": w.proxy} {
			testkit.WaitFor(t, 10*time.Second, name+": "+who+" hearing of the new thread", func() bool {
				return hw.heard(own, messagingv1.InboxChangeKind_INBOX_CHANGE_KIND_MESSAGE_CREATED)
			})
			// The confidential thread's events came first in the stream: had they been sent,
			// they would have arrived by now.
			if got := hw.threads(); !slices.Equal(got, []string{own}) {
				t.Errorf("%s: %s heard of %v, want only %s (not the confidential %s)", name, who, got, own, confidential)
			}
			hw.mu.Lock()
			for _, m := range hw.msgs {
				if b, _ := protojson.Marshal(m); bytes.Contains(b, []byte(markerPrefix)) {
					t.Errorf("%s: %s's stream carried PHI", name, who)
				}
			}
			hw.mu.Unlock()
		}
	}

	// A short-lived token ends its watch, over every protocol, with the reason a portal needs.
	for _, p := range edgeProtocols {
		claims := servicetest.Patient.Claims(e.h.Issuer)
		expires := time.Unix(time.Now().Add(3*time.Second).Unix(), 0)
		claims["exp"] = expires.Unix()
		w := openHTTPWatch(t, e, edgeClient(e, p.http2), e.h.Issuer.Mint(t, claims), p.opts...)
		select {
		case <-w.ended:
		case <-time.After(15 * time.Second):
			t.Fatalf("%s: the watch did not end within 15s; its token expired at %s", p.name, expires)
		}
		w.mu.Lock()
		err := w.err
		w.mu.Unlock()
		var ce *connect.Error
		reason := ""
		if errors.As(err, &ce) {
			for _, d := range ce.Details() {
				if v, derr := d.Value(); derr == nil {
					if info, ok := v.(*errdetails.ErrorInfo); ok {
						reason = info.GetReason()
					}
				}
			}
		}
		if connect.CodeOf(err) != connect.CodeUnauthenticated || reason != "TOKEN_EXPIRED" {
			t.Errorf("%s: the expired watch ended with %v (reason %q), want unauthenticated TOKEN_EXPIRED", p.name, err, reason)
		}
		if time.Now().Before(expires) {
			t.Errorf("%s: the watch ended before its token expired", p.name)
		}
	}
}
