package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"

	"github.com/securemsg/securemsg/services/internal/testkit/privstack"
)

// Bounds of the flood: few connections, many streams each, a hard deadline.
const (
	floodConns         = 2
	floodStreams       = 20000 // per connection
	floodReconnects    = 20    // per flooder, if the server closes the connection
	floodDeadline      = 15 * time.Second
	floodRSSGrowthMax  = 96 << 20 // settled RSS after the flood over the baseline
	floodPeakGrowthMax = 192 << 20
)

// TestFaultRapidReset floods the messaging service with HTTP/2 streams that are opened
// (HEADERS of a real, authenticated rpc) and cancelled at once (RST_STREAM), CVE-2023-44487
// style, on two connections: the service's memory stays bounded, and another client's calls
// keep succeeding throughout.
func TestFaultRapidReset(t *testing.T) {
	e := newEnv(t, privstack.Options{Services: []string{"messaging", "audit"}, Without: []string{"minio", "clamd", "mailpit"}})
	ctx := t.Context()
	thread := e.warmUp(t)
	before, err := e.s.RSS("messaging")
	if err != nil {
		t.Fatal(err)
	}
	peakBefore, _ := e.s.PeakRSS("messaging")

	floodCtx, cancel := context.WithTimeout(ctx, floodDeadline)
	defer cancel()
	var (
		wg                 sync.WaitGroup
		streams, conns     atomic.Int64
		floodMu            sync.Mutex
		floodErrs          []error
		calls, callsFailed atomic.Int64
		firstCallErr       atomic.Value
		slowest            atomic.Int64 // nanoseconds
		began              = time.Now()
	)
	token := e.tokens["clinician"]
	for range floodConns {
		wg.Go(func() {
			n, c, err := flood(floodCtx, e.s, token, floodStreams)
			streams.Add(int64(n))
			conns.Add(int64(c))
			if err != nil {
				floodMu.Lock()
				floodErrs = append(floodErrs, err)
				floodMu.Unlock()
			}
		})
	}
	// Another client reads the thread all along; every call must succeed.
	floodDone := make(chan struct{})
	var reader sync.WaitGroup
	reader.Go(func() {
		for {
			select {
			case <-floodDone:
				return
			default:
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			t0 := time.Now()
			_, err := e.messaging.GetThread(e.as(cctx, "patient"), &messagingv1.GetThreadRequest{ThreadId: thread})
			cancel()
			if d := int64(time.Since(t0)); d > slowest.Load() {
				slowest.Store(d)
			}
			calls.Add(1)
			if err != nil {
				callsFailed.Add(1)
				firstCallErr.CompareAndSwap(nil, err)
			}
		}
	})
	wg.Wait()
	floodTime := time.Since(began)
	close(floodDone)
	reader.Wait()
	if len(floodErrs) > 0 {
		t.Errorf("flood: %v", errors.Join(floodErrs...))
	}
	if streams.Load() < 1000 {
		t.Errorf("flood opened and reset %d streams, want >= 1000 for the test to mean anything", streams.Load())
	}
	if callsFailed.Load() > 0 || calls.Load() == 0 {
		t.Errorf("the other client's GetThread: %d of %d calls failed (first: %v), want all of >0 to succeed",
			callsFailed.Load(), calls.Load(), firstCallErr.Load())
	}

	// Memory settles back near the baseline (the Go runtime keeps some of what it grew).
	var after int64
	_ = eventually(ctx, 15*time.Second, 500*time.Millisecond, func(context.Context) error {
		after, err = e.s.RSS("messaging")
		if err != nil || after-before > floodRSSGrowthMax {
			return fmt.Errorf("RSS %d", after)
		}
		return nil
	})
	peak, _ := e.s.PeakRSS("messaging")
	t.Logf("flood: %d streams opened and reset on %d connections in %s; other client %d calls, %d failed, slowest %s; messaging RSS %.1f → %.1f MiB, peak %.1f → %.1f MiB",
		streams.Load(), conns.Load(), floodTime.Round(time.Millisecond), calls.Load(), callsFailed.Load(), time.Duration(slowest.Load()).Round(time.Millisecond),
		mib(before), mib(after), mib(peakBefore), mib(peak))
	if after-before > floodRSSGrowthMax {
		t.Errorf("messaging RSS after the flood = %.1f MiB, want <= %.1f MiB (baseline %.1f + %.0f)", mib(after), mib(before+floodRSSGrowthMax), mib(before), mib(floodRSSGrowthMax))
	}
	if peak-before > floodPeakGrowthMax {
		t.Errorf("messaging peak RSS = %.1f MiB, want <= %.1f MiB (baseline %.1f + %.0f)", mib(peak), mib(before+floodPeakGrowthMax), mib(before), mib(floodPeakGrowthMax))
	}
	e.reconcile(t, 0)
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// flood opens streams on one TLS connection to messaging and resets each right after its
// HEADERS, reconnecting (at most floodReconnects times) if the server closes the connection.
// It returns how many streams it opened and on how many connections.
func flood(ctx context.Context, s *privstack.Stack, token string, streams int) (opened, conns int, err error) {
	caPEM, err := os.ReadFile(filepath.Join(s.CertsDir(), "ca.pem"))
	if err != nil {
		return 0, 0, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{RootCAs: roots, ServerName: "messaging", NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}
	for opened < streams && conns <= floodReconnects && ctx.Err() == nil {
		conns++
		n, err := floodConn(ctx, s.ServiceAddr("messaging"), cfg, token, streams-opened)
		opened += n
		if err != nil && ctx.Err() == nil && !errors.Is(err, errServerClosed) {
			return opened, conns, err
		}
	}
	return opened, conns, nil
}

var errServerClosed = errors.New("server closed the connection")

func floodConn(ctx context.Context, addr string, cfg *tls.Config, token string, streams int) (int, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	conn := raw.(*tls.Conn)
	defer func() { _ = conn.Close() }() // also closed by ctx; the second close only reports that
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		return 0, fmt.Errorf("ALPN negotiated %q, want h2", p)
	}
	bw := bufio.NewWriterSize(conn, 64<<10)
	var wmu sync.Mutex
	fr := http2.NewFramer(bw, conn)
	wmu.Lock()
	_, _ = bw.WriteString(http2.ClientPreface)
	_ = fr.WriteSettings()
	err = bw.Flush()
	wmu.Unlock()
	if err != nil {
		return 0, err
	}
	// The reader answers SETTINGS and PING and notices GOAWAY or a closed connection.
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					wmu.Lock()
					_ = fr.WriteSettingsAck()
					_ = bw.Flush()
					wmu.Unlock()
				}
			case *http2.PingFrame:
				if !f.IsAck() {
					wmu.Lock()
					_ = fr.WritePing(true, f.Data)
					_ = bw.Flush()
					wmu.Unlock()
				}
			case *http2.GoAwayFrame:
				return
			}
		}
	}()
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	headers := [][2]string{
		{":method", "POST"}, {":scheme", "https"}, {":path", "/securemsg.messaging.v1.MessagingService/ListThreads"},
		{":authority", addr}, {"content-type", "application/grpc"}, {"te", "trailers"},
		{"authorization", "Bearer " + token},
	}
	for _, h := range headers {
		_ = enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]})
	}
	block := bytes.Clone(hbuf.Bytes())
	opened := 0
	for id := uint32(1); opened < streams; id += 2 {
		select {
		case <-closed:
			return opened, errServerClosed
		default:
		}
		wmu.Lock()
		err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: true})
		if err == nil {
			err = fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}
		if err == nil && opened%64 == 63 {
			err = bw.Flush()
		}
		wmu.Unlock()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return opened, errServerClosed
			}
			select {
			case <-closed: // the server closed it first (a reset or a broken pipe on write)
				return opened, errServerClosed
			case <-time.After(time.Second):
				return opened, err
			}
		}
		opened++
	}
	wmu.Lock()
	_ = bw.Flush()
	wmu.Unlock()
	return opened, nil
}
