package privstack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/securemsg/securemsg/services/internal/testkit"
)

// Service is one service binary of a private stack, run as a subprocess. Like Component's, its
// methods return errors, so they may be called from any goroutine.
type Service struct {
	stack *Stack
	name  string
	proc  *process
}

// newService prepares the service's process with an environment like scripts/stack.sh's
// write_service_env, pointing at the private dependencies and peers.
func (s *Stack) newService(name, bin string) *Service {
	p := s.newProcess(name, bin)
	p.env = s.serviceEnv(name)
	p.stopWait = 30 * time.Second // SECUREMSG_SHUTDOWN_TIMEOUT (20s) plus margin
	return &Service{stack: s, name: name, proc: p}
}

// serviceEnv mirrors scripts/stack.sh's write_service_env. Inherited SECUREMSG_* variables are
// dropped first: a stray SECUREMSG_PG_URL in the test's environment must never point a private
// service at the shared stack.
func (s *Stack) serviceEnv(svc string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SECUREMSG_") {
			env = append(env, kv)
		}
	}
	set := func(k, v string) { env = append(env, "SECUREMSG_"+k+"="+v) }
	certs := s.CertsDir()
	set("GRPC_ADDR", hostPort(s.ports.grpc[svc]))
	set("TLS_CERT_FILE", filepath.Join(certs, svc+".pem"))
	set("TLS_KEY_FILE", filepath.Join(certs, svc+"-key.pem"))
	set("TLS_CLIENT_CA_FILE", filepath.Join(certs, "ca.pem"))
	set("PG_URL", s.PostgresURL())
	set("NATS_URL", s.NATSURL())
	set("VAULT_ADDR", s.VaultAddr())
	set("VAULT_TOKEN", s.VaultToken())
	set("OIDC_ISSUER", s.IssuerURL())
	set("OIDC_AUDIENCE", "securemsg")
	set("DEV", "true")
	set("POLICY_DIR", filepath.Join(testkit.RepoRoot(), "deploy", "policies"))
	set("METRICS_ADDR", hostPort(s.ports.metrics[svc]))
	// Tests stop services often; the 2s default drain only makes them slower.
	set("SHUTDOWN_DRAIN", "100ms")
	switch svc {
	case "attachment":
		set("S3_ENDPOINT", s.S3Endpoint())
		set("S3_ACCESS_KEY", s.s3Access)
		set("S3_SECRET_KEY", s.s3Secret)
		set("S3_BUCKET", s.s3Bucket)
		set("CLAMD_ADDR", s.ClamdAddr())
	case "notification":
		set("SMTP_ADDR", s.SMTPAddr())
		set("SMTP_TLS", "none") // mailpit on loopback offers no STARTTLS
		set("NOTIFY_RETRY_BASE", "1s")
	case "audit":
		_ = os.MkdirAll(filepath.Join(s.dir, "audit"), 0o700) // a failure shows in the service's own error
		set("AUDIT_SIGNING_KEY_FILE", filepath.Join(s.dir, "audit", "signing-key.pem"))
	}
	for _, peer := range AllServices {
		if peer == svc {
			continue
		}
		prefix := strings.ToUpper(peer) + "_"
		set(prefix+"ADDR", hostPort(s.ports.grpc[peer]))
		set(prefix+"TLS_CERT_FILE", filepath.Join(certs, svc+".pem"))
		set(prefix+"TLS_KEY_FILE", filepath.Join(certs, svc+"-key.pem"))
		set(prefix+"TLS_CA_FILE", filepath.Join(certs, "ca.pem"))
	}
	// Later entries win (os/exec keeps the last value of a duplicated key).
	for k, v := range s.opts.Env {
		env = append(env, k+"="+v)
	}
	for k, v := range s.opts.ServiceEnv[svc] {
		env = append(env, k+"="+v)
	}
	return env
}

// Name is the service's name.
func (v *Service) Name() string { return v.name }

// Addr is the service's gRPC host:port (TLS); it stays the same across restarts.
func (v *Service) Addr() string { return hostPort(v.stack.ports.grpc[v.name]) }

// MetricsAddr is the service's Prometheus endpoint host:port (http://MetricsAddr/metrics).
func (v *Service) MetricsAddr() string { return hostPort(v.stack.ports.metrics[v.name]) }

// LogFile holds the service's stdout and stderr across restarts, for PHI-grep checks.
func (v *Service) LogFile() string { return v.proc.logPath }

// PID is the running service's process id, or 0 while it is stopped (or has exited).
func (v *Service) PID() int { return v.proc.pid() }

// Running reports whether the service process is alive.
func (v *Service) Running() bool { return v.proc.running() }

// Exited is closed when the current run of the service exits (nil while stopped): a fault test
// can select on it to catch a service that dies when a dependency goes away.
func (v *Service) Exited() <-chan struct{} { return v.proc.exited() }

// Stop sends SIGTERM (graceful shutdown) and waits for the process to exit.
func (v *Service) Stop() error { return v.proc.stop() }

// Kill ends the service with SIGKILL, as a crash or an OOM kill would.
func (v *Service) Kill() error { return v.proc.kill() }

// Start starts the stopped service and waits until its health check reports SERVING.
func (v *Service) Start() error { return v.start(context.Background()) }

// Restart stops the service gracefully and starts it again.
func (v *Service) Restart() error {
	if err := v.Stop(); err != nil {
		return err
	}
	return v.Start()
}

func (v *Service) start(ctx context.Context) error {
	if err := v.proc.start(); err != nil {
		return err
	}
	return v.proc.waitReady(ctx, v.stack.opts.StartTimeout, v.serving)
}

func (v *Service) serving(ctx context.Context) error {
	st, err := v.Health(ctx)
	if err != nil {
		return err
	}
	if st != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health: %s", st)
	}
	return nil
}

// Health asks the service's gRPC health service (overall status) over mTLS, presenting the
// service's own certificate as scripts/stack.sh's probe does. Each call dials afresh, so a
// just-restarted service is seen at once rather than after a reconnect backoff.
func (v *Service) Health(ctx context.Context) (healthpb.HealthCheckResponse_ServingStatus, error) {
	creds, err := v.stack.tlsCredentials(v.name, v.name)
	if err != nil {
		return 0, err
	}
	conn, err := grpc.NewClient(v.Addr(), grpc.WithTransportCredentials(creds))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return 0, err
	}
	return resp.GetStatus(), nil
}

// WaitServing polls the health check until it reports SERVING; it fails after within, or as
// soon as the process is found to have exited.
func (v *Service) WaitServing(ctx context.Context, within time.Duration) error {
	if !v.Running() {
		return v.proc.failure("not running", nil)
	}
	return v.proc.waitReady(ctx, within, v.serving)
}

// PeakRSS is the process's peak resident set size (VmHWM of /proc/<pid>/status), in bytes.
func (v *Service) PeakRSS() (int64, error) { return v.procStatusBytes("VmHWM") }

// RSS is the process's current resident set size (VmRSS), in bytes.
func (v *Service) RSS() (int64, error) { return v.procStatusBytes("VmRSS") }

func (v *Service) procStatusBytes(field string) (int64, error) {
	pid := v.PID()
	if pid == 0 {
		return 0, fmt.Errorf("privstack: %s is not running", v.name)
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("privstack: %s: %w", v.name, err)
	}
	n, err := statusField(data, field)
	if err != nil {
		return 0, fmt.Errorf("privstack: %s: /proc/%d/status: %w", v.name, pid, err)
	}
	return n, nil
}

// statusField reads a "Name:   1234 kB" line of /proc/<pid>/status, in bytes.
func statusField(status []byte, field string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("%s: unexpected %q", field, rest)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", field, err)
		}
		return n * 1024, nil
	}
	return 0, fmt.Errorf("no %s line", field)
}

// FDCount is the number of open file descriptors (entries of /proc/<pid>/fd).
func (v *Service) FDCount() (int, error) {
	pid := v.PID()
	if pid == 0 {
		return 0, fmt.Errorf("privstack: %s is not running", v.name)
	}
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, fmt.Errorf("privstack: %s: %w", v.name, err)
	}
	return len(entries), nil
}

// Goroutines reads go_goroutines from the service's metrics endpoint.
func (v *Service) Goroutines(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+v.MetricsAddr()+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("privstack: %s metrics: %w", v.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("privstack: %s metrics: status %d", v.name, resp.StatusCode)
	}
	n, err := metricValue(resp.Body, "go_goroutines")
	if err != nil {
		return 0, fmt.Errorf("privstack: %s metrics: %w", v.name, err)
	}
	return int(n), nil
}

// metricValue finds an unlabelled sample in Prometheus text format.
func metricValue(r io.Reader, name string) (float64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseFloat(f[0], 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s sample", name)
}

// Service returns the named service, or nil when it was not started (Options.Services).
func (s *Stack) Service(name string) *Service { return s.services[name] }

// Services lists the started services' names, in start order.
func (s *Stack) Services() []string {
	var out []string
	for _, name := range AllServices {
		if _, ok := s.services[name]; ok {
			out = append(out, name)
		}
	}
	return out
}

func (s *Stack) service(name string) (*Service, error) {
	v, ok := s.services[name]
	if !ok {
		return nil, fmt.Errorf("privstack: service %q was not started (Options.Services)", name)
	}
	return v, nil
}

// ServiceAddr is the gRPC host:port of svc (also for a service that was not started).
func (s *Stack) ServiceAddr(svc string) string { return hostPort(s.ports.grpc[svc]) }

// ServiceLog is the file holding svc's output ("" when svc was not started).
func (s *Stack) ServiceLog(svc string) string {
	if v, ok := s.services[svc]; ok {
		return v.LogFile()
	}
	return ""
}

// ServicePID is svc's process id, or 0 while it is stopped or when it was not started.
func (s *Stack) ServicePID(svc string) int {
	if v, ok := s.services[svc]; ok {
		return v.PID()
	}
	return 0
}

// PeakRSS is svc's peak resident memory in bytes (VmHWM of /proc/<pid>/status).
func (s *Stack) PeakRSS(svc string) (int64, error) {
	v, err := s.service(svc)
	if err != nil {
		return 0, err
	}
	return v.PeakRSS()
}

// RSS is svc's current resident memory in bytes (VmRSS).
func (s *Stack) RSS(svc string) (int64, error) {
	v, err := s.service(svc)
	if err != nil {
		return 0, err
	}
	return v.RSS()
}

// FDCount is svc's number of open file descriptors.
func (s *Stack) FDCount(svc string) (int, error) {
	v, err := s.service(svc)
	if err != nil {
		return 0, err
	}
	return v.FDCount()
}

// Goroutines is svc's goroutine count (go_goroutines on its metrics endpoint).
func (s *Stack) Goroutines(ctx context.Context, svc string) (int, error) {
	v, err := s.service(svc)
	if err != nil {
		return 0, err
	}
	return v.Goroutines(ctx)
}

// Token mints an access token for a seeded dev user (patient, proxy, teen, clinician,
// staff-nomfa, auditor, admin) from the private issuer.
func (s *Stack) Token(t testing.TB, user string) string {
	t.Helper()
	return s.TokenWith(t, user, nil)
}

// TokenWith mints a token with the issuer's extra parameters (ttl, auth_age, scope; see
// devstack/internal/oidcdev).
func (s *Stack) TokenWith(t testing.TB, user string, params url.Values) string {
	t.Helper()
	q := url.Values{}
	for k, v := range params {
		q[k] = v
	}
	q.Set("user", user)
	q.Set("format", "raw")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.IssuerURL()+"/dev/token?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("privstack: mint token for %s: %v", user, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil || resp.StatusCode != http.StatusOK {
		// The body of a refusal names the user only, never token material.
		t.Fatalf("privstack: mint token for %s: status %d %v: %s", user, resp.StatusCode, err, bytes.TrimSpace(body))
	}
	return strings.TrimSpace(string(body))
}

// Conn is a TLS client connection to svc as a portal frontend has it: the dev CA as trust root,
// no client certificate. It reconnects quickly after a service restart and closes when the
// test ends.
func (s *Stack) Conn(t testing.TB, svc string) *grpc.ClientConn {
	t.Helper()
	creds, err := s.tlsCredentials(svc, "")
	if err != nil {
		t.Fatal(err)
	}
	return s.dial(t, svc, creds)
}

// ServiceConn is an mTLS connection to svc presenting from's certificate: a service name, or a
// client identity the dev CA issues ("careteam-app", "ctl").
func (s *Stack) ServiceConn(t testing.TB, from, to string) *grpc.ClientConn {
	t.Helper()
	creds, err := s.tlsCredentials(to, from)
	if err != nil {
		t.Fatal(err)
	}
	return s.dial(t, to, creds)
}

func (s *Stack) dial(t testing.TB, svc string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(s.ServiceAddr(svc), grpc.WithTransportCredentials(creds),
		// Fault tests restart services; gRPC's default backoff (up to 120s) would outlast them.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 5 * time.Second,
		}))
	if err != nil {
		t.Fatalf("privstack: grpc.NewClient(%s) = %v", svc, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// tlsCredentials trusts the stack's dev CA for server svc and, when identity is not empty,
// presents identity's certificate.
func (s *Stack) tlsCredentials(svc, identity string) (credentials.TransportCredentials, error) {
	caPEM, err := os.ReadFile(filepath.Join(s.CertsDir(), "ca.pem"))
	if err != nil {
		return nil, fmt.Errorf("privstack: dev CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("privstack: dev CA %s holds no certificate", filepath.Join(s.CertsDir(), "ca.pem"))
	}
	cfg := &tls.Config{RootCAs: roots, ServerName: svc, MinVersion: tls.VersionTLS12}
	if identity != "" {
		pair, err := tls.LoadX509KeyPair(filepath.Join(s.CertsDir(), identity+".pem"), filepath.Join(s.CertsDir(), identity+"-key.pem"))
		if err != nil {
			return nil, fmt.Errorf("privstack: certificate of %s: %w", identity, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(cfg), nil
}
