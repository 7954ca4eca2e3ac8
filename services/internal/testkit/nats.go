package testkit

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/securemsg/securemsg/services/internal/testkit/internal/supervisor"
)

// NATSOptions tunes a server started by StartNATS. The zero value is fine.
type NATSOptions struct {
	// MaxStore caps JetStream file storage in bytes (default 4 GiB).
	MaxStore int64
	// Debug copies the server's own log into the test log when the test ends.
	Debug bool
}

// NATSServer is a nats-server with JetStream owned by one test: the pinned nats-server binary
// (scripts/lib/tools.sh) run as a process, as the dev stack runs it, rather than embedded, so
// that nats-server stays out of the module graph of everything that imports testkit. Shutdown
// and Restart let a test take NATS away and bring it back on the same port with the same stored
// streams, the way a real outage and recovery look to clients.
type NATSServer struct {
	tb testing.TB
	c  *supervisor.Component
}

// StartNATS starts a nats-server with JetStream on 127.0.0.1 and a free port, its store in
// tb.TempDir(). The server is shut down when the test ends. A machine where the pinned binary
// cannot be installed ends the test through Unavailable.
func StartNATS(tb testing.TB, opts *NATSOptions) *NATSServer {
	tb.Helper()
	if opts == nil {
		opts = &NATSOptions{}
	}
	c := startOwned(tb, "nats", opts.Debug, func(cfg *supervisor.Config) { cfg.NATSMaxStore = opts.MaxStore })
	return &NATSServer{tb: tb, c: c}
}

// startOwned starts the dependency name (see supervisor.StartOne) for tb alone and stops it when
// tb ends, showing its log then when tb failed or showLog is set. A dependency the machine
// lacks ends tb through Unavailable.
func startOwned(tb testing.TB, name string, showLog bool, tune func(*supervisor.Config)) *supervisor.Component {
	tb.Helper()
	c, err := supervisor.StartOne(tb.Context(), RepoRoot(), tb.TempDir(), name, tune)
	if c != nil {
		tb.Cleanup(func() {
			if err := c.Stop(); err != nil {
				tb.Errorf("testkit: stop %s: %v", name, err)
			}
			if showLog || tb.Failed() {
				tb.Logf("testkit: %s log:\n%s", name, supervisor.LogTail(c.LogFile(), 200))
			}
		})
	}
	if missing, ok := supervisor.Unavailable(err); ok {
		Unavailable(tb, missing.Component, err)
	}
	if err != nil {
		tb.Fatalf("testkit: %v", err)
	}
	return c
}

// URL is the client URL (nats://127.0.0.1:<port>); it stays the same across restarts.
func (s *NATSServer) URL() string { return "nats://" + s.c.Addr() }

// Running reports whether the server process runs.
func (s *NATSServer) Running() bool { return s.c.Running() }

// Shutdown stops the server and waits until it is down; connected clients see a disconnect.
// Calling it on a stopped server does nothing.
func (s *NATSServer) Shutdown() {
	if err := s.c.Stop(); err != nil {
		s.tb.Errorf("testkit: stop nats-server: %v", err)
	}
}

// Restart shuts the server down (if running) and starts it again on the same port with the same
// JetStream store, so streams, consumers and their messages survive.
func (s *NATSServer) Restart() {
	s.tb.Helper()
	if err := s.c.Restart(); err != nil {
		s.tb.Fatalf("testkit: restart nats-server: %v", err)
	}
}

// Connect opens a client connection to the server that reconnects quickly and forever, closed
// when the test ends.
func (s *NATSServer) Connect(tb testing.TB) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(s.URL(),
		nats.Name(tb.Name()),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectJitter(0, 0),
	)
	if err != nil {
		tb.Fatalf("testkit: connect to the test's nats-server: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// String describes the server for test logs.
func (s *NATSServer) String() string { return fmt.Sprintf("nats-server at %s", s.URL()) }

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
	id := supervisor.RandomHex(4)
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
