package testkit

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TransitServer is a Vault Transit-compatible dev server (devstack/cmd/transitdev) owned by one
// test, so the test can stop and restart it (to prove fail-closed behaviour) without touching
// the shared stack. It listens on 127.0.0.1 only and keeps its keys in the test's temp dir.
type TransitServer struct {
	tb      testing.TB
	bin     string
	addr    string // host:port
	token   string
	dataDir string

	mu  sync.Mutex
	cmd *exec.Cmd
	out *bytes.Buffer
}

var transitBuild struct {
	once sync.Once
	bin  string
	err  error
}

// buildTransitdev builds ./devstack/cmd/transitdev once per test binary.
func buildTransitdev() (string, error) {
	transitBuild.once.Do(func() {
		root := RepoRoot()
		src := filepath.Join(root, "devstack", "cmd", "transitdev")
		if _, err := os.Stat(src); err != nil {
			transitBuild.err = fmt.Errorf("transitdev source: %w", err)
			return
		}
		dir, err := os.MkdirTemp("", "securemsg-transitdev-")
		if err != nil {
			transitBuild.err = err
			return
		}
		bin := filepath.Join(dir, "transitdev")
		cmd := exec.Command("go", "build", "-o", bin, "./devstack/cmd/transitdev")
		cmd.Dir = root
		// devstack builds only inside the workspace; a caller's GOWORK=off must not reach it.
		cmd.Env = append(os.Environ(), "GOWORK=")
		if out, err := cmd.CombinedOutput(); err != nil {
			transitBuild.err = fmt.Errorf("go build transitdev: %v\n%s", err, out)
			return
		}
		transitBuild.bin = bin
	})
	return transitBuild.bin, transitBuild.err
}

// StartTransit builds (once per test binary) and starts the Transit dev server on a free
// loopback port with a random root token and a data dir under t.TempDir(), mounts the transit
// engine, and stops the server when the test ends. When the server cannot be built the test
// ends through Unavailable.
func StartTransit(tb testing.TB) *TransitServer {
	tb.Helper()
	bin, err := buildTransitdev()
	if err != nil {
		Unavailable(tb, "transitdev", err)
		return nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testkit: pick a port: %v", err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	s := &TransitServer{tb: tb, bin: bin, addr: addr, token: "root-" + randomHex(8), dataDir: tb.TempDir()}
	tb.Cleanup(s.Stop)
	s.Start()
	s.mountTransit()
	return s
}

// Addr is the server's URL, e.g. http://127.0.0.1:41234.
func (s *TransitServer) Addr() string { return "http://" + s.addr }

// Token is the server's root token.
func (s *TransitServer) Token() string { return s.token }

// Start starts the server (again) on the same port and data dir and waits until it is healthy.
// Keys created before a Stop are still there.
func (s *TransitServer) Start() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	s.out = &bytes.Buffer{}
	cmd := exec.Command(s.bin, "-addr", s.addr, "-root-token", s.token, "-data-dir", s.dataDir)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	// Its own process group, and killed with the test binary: a test killed by -timeout must
	// not leave a server behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("testkit: start transitdev: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := s.health(); err == nil {
			return
		} else if time.Now().After(deadline) {
			s.tb.Fatalf("testkit: transitdev not healthy on %s: %v\n%s", s.addr, err, s.out)
		}
		time.Sleep(50 * time.Millisecond) // polling for readiness, not synchronising
	}
}

// Stop stops the server and waits for it to exit; connections to Addr are then refused.
func (s *TransitServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

func (s *TransitServer) health() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Addr()+"/v1/sys/health", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("sys/health: status %d", resp.StatusCode)
	}
	return nil
}

// mountTransit enables the transit engine at transit/ (already mounted after a restart is fine).
func (s *TransitServer) mountTransit() {
	s.tb.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.Addr()+"/v1/sys/mounts/transit", strings.NewReader(`{"type":"transit"}`))
	req.Header.Set("X-Vault-Token", s.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.tb.Fatalf("testkit: mount transit: %v", err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	if resp.StatusCode/100 != 2 && !strings.Contains(body.String(), "already in use") {
		s.tb.Fatalf("testkit: mount transit: status %d: %s", resp.StatusCode, body.String())
	}
}
