package testkit

import (
	"context"
	"testing"
	"time"

	"github.com/securemsg/securemsg/services/internal/testkit/internal/supervisor"
)

// TransitServer is a Vault Transit-compatible dev server (devstack/cmd/transitdev) owned by one
// test, so the test can stop and restart it (to prove fail-closed behaviour) without touching
// the shared stack. It listens on 127.0.0.1 only and keeps its keys in the test's temp dir.
type TransitServer struct {
	tb    testing.TB
	c     *supervisor.Component
	token string
}

// StartTransit builds (once per test binary) and starts the Transit dev server on a free
// loopback port with a random root token and a data dir under t.TempDir(), mounts the transit
// engine, and stops the server when the test ends. When the server cannot be built the test
// ends through Unavailable.
func StartTransit(tb testing.TB) *TransitServer {
	tb.Helper()
	var token string
	c := startOwned(tb, "vault", false, func(cfg *supervisor.Config) { token = cfg.VaultToken })
	return &TransitServer{tb: tb, c: c, token: token}
}

// Addr is the server's URL, e.g. http://127.0.0.1:41234.
func (s *TransitServer) Addr() string { return "http://" + s.c.Addr() }

// Token is the server's root token.
func (s *TransitServer) Token() string { return s.token }

// Start starts the server (again) on the same port and data dir and waits until it is healthy
// and transit/ is mounted. Keys created before a Stop are still there. Starting a running
// server does nothing.
func (s *TransitServer) Start() {
	s.tb.Helper()
	if s.c.Running() {
		return
	}
	if err := s.c.Start(); err != nil {
		s.tb.Fatalf("testkit: start transitdev: %v", err)
	}
}

// Stop stops the server and waits for it to exit; connections to Addr are then refused.
func (s *TransitServer) Stop() {
	if err := s.c.Stop(); err != nil {
		s.tb.Errorf("testkit: stop transitdev: %v", err)
	}
}

func (s *TransitServer) health() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return supervisor.VaultHealthy(ctx, s.Addr())
}
