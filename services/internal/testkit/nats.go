package testkit

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSOptions tunes an embedded server started by StartNATS. The zero value is fine.
type NATSOptions struct {
	// MaxStore caps JetStream file storage (default 256 MiB).
	MaxStore int64
	// Debug turns on the server's own logging to the test log.
	Debug bool
}

// NATSServer is an embedded nats-server with JetStream, owned by one test. Shutdown and Restart
// let a test take NATS away and bring it back on the same port with the same stored streams,
// the way a real outage and recovery look to clients.
type NATSServer struct {
	tb   testing.TB
	opts *server.Options

	mu  sync.Mutex
	srv *server.Server
}

// StartNATS starts an embedded nats-server with JetStream on 127.0.0.1 and a random port, its
// store in tb.TempDir(). The server is shut down when the test ends.
func StartNATS(tb testing.TB, opts *NATSOptions) *NATSServer {
	tb.Helper()
	if opts == nil {
		opts = &NATSOptions{}
	}
	so := &server.Options{
		ServerName:         "testkit",
		Host:               "127.0.0.1",
		Port:               server.RANDOM_PORT,
		NoSigs:             true,
		NoLog:              !opts.Debug,
		JetStream:          true,
		JetStreamMaxMemory: 64 << 20,
		JetStreamMaxStore:  opts.MaxStore,
		StoreDir:           tb.TempDir(),
		// No HTTP monitoring and no cluster: only the client port is opened.
	}
	if so.JetStreamMaxStore == 0 {
		so.JetStreamMaxStore = 256 << 20
	}
	ns := &NATSServer{tb: tb, opts: so}
	ns.start()
	// Later starts must reuse the port the first one was given.
	addr := ns.srv.Addr().(*net.TCPAddr)
	so.Port = addr.Port
	tb.Cleanup(ns.Shutdown)
	return ns
}

func (s *NATSServer) start() {
	s.tb.Helper()
	srv, err := server.NewServer(s.opts)
	if err != nil {
		s.tb.Fatalf("testkit: new nats-server: %v", err)
	}
	if !s.opts.NoLog {
		srv.ConfigureLogger()
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		s.tb.Fatalf("testkit: nats-server not ready within 10s")
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
}

// URL is the client URL (nats://127.0.0.1:<port>); it stays the same across restarts.
func (s *NATSServer) URL() string {
	return "nats://127.0.0.1:" + strconv.Itoa(s.opts.Port)
}

// Server returns the running server, or nil while it is shut down.
func (s *NATSServer) Server() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

// Shutdown stops the server and waits until it is down; connected clients see a disconnect.
// Calling it on a stopped server does nothing.
func (s *NATSServer) Shutdown() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Shutdown()
	srv.WaitForShutdown()
}

// Restart shuts the server down (if running) and starts it again on the same port with the same
// JetStream store, so streams, consumers and their messages survive.
func (s *NATSServer) Restart() {
	s.tb.Helper()
	s.Shutdown()
	s.start()
}

// Connect opens a client connection to the embedded server that reconnects quickly and
// forever, closed when the test ends.
func (s *NATSServer) Connect(tb testing.TB) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(s.URL(),
		nats.Name(tb.Name()),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectJitter(0, 0),
	)
	if err != nil {
		tb.Fatalf("testkit: connect to embedded nats: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// NATS connects to the dev stack's NATS (LoadStack().NATSURL), closed when the test ends. When
// NATS does not answer, the test ends through Unavailable (skip locally, fail in CI).
func NATS(tb testing.TB) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(LoadStack().NATSURL,
		nats.Name(tb.Name()),
		nats.Timeout(3*time.Second),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond),
	)
	if err != nil {
		Unavailable(tb, "nats", err)
		return nil
	}
	tb.Cleanup(nc.Close)
	return nc
}

// NATSNames is a unique, test-owned set of JetStream names.
type NATSNames struct {
	// StreamPrefix prefixes stream names, upper case (e.g. "T_A1B2C3D4_"); add "EVENTS", "AUDIT".
	StreamPrefix string
	// SubjectPrefix prefixes subjects, lower case (e.g. "t_a1b2c3d4"); add ".events", ".audit".
	SubjectPrefix string
}

// UniqueNATSNames returns names no other test uses, so tests sharing the stack's NATS never see
// each other's messages. When nc is not nil, every stream whose name starts with StreamPrefix
// is deleted when the test ends.
func UniqueNATSNames(tb testing.TB, nc *nats.Conn) NATSNames {
	tb.Helper()
	id := randomHex(4)
	names := NATSNames{
		StreamPrefix:  "T_" + strings.ToUpper(id) + "_",
		SubjectPrefix: "t_" + id,
	}
	if nc != nil {
		tb.Cleanup(func() { deleteStreams(tb, nc, names.StreamPrefix) })
	}
	return names
}

func deleteStreams(tb testing.TB, nc *nats.Conn, prefix string) {
	if nc.IsClosed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Errorf("testkit: jetstream: %v", err)
		return
	}
	lister := js.StreamNames(ctx)
	var doomed []string
	for name := range lister.Name() {
		if strings.HasPrefix(name, prefix) {
			doomed = append(doomed, name)
		}
	}
	if err := lister.Err(); err != nil {
		tb.Logf("testkit: list streams for cleanup: %v", err)
	}
	for _, name := range doomed {
		if err := js.DeleteStream(ctx, name); err != nil {
			tb.Errorf("testkit: delete stream %s: %v", name, err)
		}
	}
}

// String describes the server for test logs.
func (s *NATSServer) String() string { return fmt.Sprintf("embedded nats-server at %s", s.URL()) }
