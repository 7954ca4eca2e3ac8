package privstack

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"

	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/internal/supervisor"
)

// AllServices lists the suite's services in start order.
var AllServices = supervisor.Services

// Dependencies lists the dependency components Options.Without may leave out.
var Dependencies = supervisor.Dependencies

// Component is one private dependency process (see Stack's fields).
type Component = supervisor.Component

// Service is one service binary of a private stack.
type Service = supervisor.Service

// Options chooses what a private stack runs. The zero value starts every dependency and no
// service.
type Options struct {
	// Services are the services to run ("messaging", "attachment", "notification", "audit").
	// Peers that are not started are still given an address (where nothing listens), so a
	// service never falls back to the shared stack's default ports.
	Services []string
	// Without lists dependencies not to start, to save time in tests that do not need them:
	// "minio", "clamd", "mailpit" (and "postgres", "nats", "vault" for tests that run no
	// service). The OIDC issuer and the certificates are always there.
	Without []string
	// Env adds SECUREMSG_* settings to every service; ServiceEnv to one service. Both override
	// privstack's own values (e.g. SECUREMSG_SHUTDOWN_DRAIN, which privstack sets to 100ms).
	Env        map[string]string
	ServiceEnv map[string]map[string]string
	// StartTimeout bounds each component's start (default 60s).
	StartTimeout time.Duration
}

// Stack is a running private stack. Its dependency fields (Postgres, NATS, Vault, MinIO, Clamd,
// Mail, OIDC) are nil for components left out through Options.Without.
type Stack struct {
	*supervisor.Stack
	cfg supervisor.Config
}

// Start starts a private stack for tb and stops all of it when the test ends (services first,
// then dependencies; every process group is killed). Builds, dependencies and services start
// concurrently where they do not depend on each other. Failures name the component and its
// log file; a dependency the machine lacks ends the test through testkit.Unavailable.
func Start(tb testing.TB, opts Options) *Stack {
	tb.Helper()
	began := time.Now()
	for _, svc := range opts.Services {
		if !slices.Contains(AllServices, svc) {
			tb.Fatalf("privstack: unknown service %q (want one of %v)", svc, AllServices)
		}
	}
	for _, dep := range opts.Without {
		if !slices.Contains(Dependencies, dep) {
			tb.Fatalf("privstack: Options.Without: unknown dependency %q (want one of %v)", dep, Dependencies)
		}
	}
	cfg, err := supervisor.PrivateConfig(testkit.RepoRoot(), tb.TempDir())
	if err != nil {
		tb.Fatalf("privstack: %v", err)
	}
	cfg.Services, cfg.Without, cfg.Env, cfg.ServiceEnv = opts.Services, opts.Without, opts.Env, opts.ServiceEnv
	if opts.StartTimeout > 0 {
		cfg.StartTimeout = opts.StartTimeout
	}
	s := &Stack{Stack: supervisor.New(cfg), cfg: cfg}
	tb.Cleanup(func() {
		if _, err := s.Down(); err != nil {
			tb.Error(err)
		}
		if tb.Failed() {
			s.keepLogs(tb)
		}
	})
	if err := s.Up(context.Background()); err != nil {
		if missing, ok := supervisor.Unavailable(err); ok {
			testkit.Unavailable(tb, missing.Component, err)
		}
		tb.Fatalf("privstack: %v", err)
	}
	tb.Logf("privstack: stack up in %s in %s", time.Since(began).Round(time.Millisecond), cfg.Dir)
	return s
}

// keepLogs copies the logs of a failed test out of its temp dir (which the testing package
// removes) into .tmp/privstack-logs/ at the repository root, git-ignored, for a post-mortem.
func (s *Stack) keepLogs(tb testing.TB) {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(tb.Name())
	dst := filepath.Join(testkit.RepoRoot(), ".tmp", "privstack-logs", name+"-"+time.Now().Format("20060102-150405"))
	logs, _ := filepath.Glob(filepath.Join(s.cfg.Dir, "*", "*.log"))
	for _, log := range logs {
		data, err := os.ReadFile(log)
		if err == nil {
			err = os.MkdirAll(dst, 0o755)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dst, filepath.Base(log)), data, 0o644) //nolint:gosec // G703: names from the stack's own temp dir
		}
		if err != nil {
			tb.Logf("privstack: keep logs of the failed test: %v", err)
			return
		}
	}
	tb.Logf("privstack: the test failed; component and service logs kept in %s", dst)
}

// Dir is the stack's state folder (inside t.TempDir()); each component's log is
// Dir()/<name>/<name>.log.
func (s *Stack) Dir() string { return s.cfg.Dir }

// PostgresURL is the private cluster's `securemsg` database, as the services use it.
func (s *Stack) PostgresURL() string { return s.cfg.PostgresURL(s.cfg.Database) }

// PostgresDatabaseURL is the private cluster's database name, as PostgresURL is for
// `securemsg`: a drill restores into a second database of the same cluster.
func (s *Stack) PostgresDatabaseURL(name string) string { return s.cfg.PostgresURL(name) }

// PostgresBinDir is the folder of the PostgreSQL binaries privstack runs (pg_dump and
// pg_restore of the same version live there).
func PostgresBinDir() (string, error) { return supervisor.PostgresBinDir() }

// NATSURL is the private NATS server's client URL.
func (s *Stack) NATSURL() string { return s.cfg.NATSURL() }

// VaultAddr is the Transit dev server's URL ("" when left out).
func (s *Stack) VaultAddr() string {
	if s.Vault == nil {
		return ""
	}
	return s.cfg.VaultAddr()
}

// VaultToken is the Transit dev server's root token ("" when left out).
func (s *Stack) VaultToken() string {
	if s.Vault == nil {
		return ""
	}
	return s.cfg.VaultToken
}

// S3Endpoint is MinIO's host:port (plain HTTP).
func (s *Stack) S3Endpoint() string { return supervisor.HostPort(s.cfg.Ports.MinIO) }

// S3AccessKey is MinIO's root access key.
func (s *Stack) S3AccessKey() string { return s.cfg.S3AccessKey }

// S3SecretKey is MinIO's root secret key.
func (s *Stack) S3SecretKey() string { return s.cfg.S3SecretKey }

// S3Bucket is the attachments bucket, created when MinIO first started.
func (s *Stack) S3Bucket() string { return s.cfg.S3Bucket }

// ClamdAddr is clamd's TCP host:port.
func (s *Stack) ClamdAddr() string { return supervisor.HostPort(s.cfg.Ports.Clamd) }

// SMTPAddr is mailpit's SMTP host:port.
func (s *Stack) SMTPAddr() string { return supervisor.HostPort(s.cfg.Ports.SMTP) }

// MailAPIURL is mailpit's HTTP API base URL (e.g. MailAPIURL()+"/api/v1/messages").
func (s *Stack) MailAPIURL() string { return s.cfg.MailAPIURL() }

// IssuerURL is the private dev OIDC issuer (its tokens are only valid for this stack).
func (s *Stack) IssuerURL() string { return s.cfg.IssuerURL() }

// CertsDir holds this stack's dev CA (ca.pem) and the service and client certificates
// (<name>.pem, <name>-key.pem; names as in devstack/internal/devca).
func (s *Stack) CertsDir() string { return s.cfg.CertsDir() }

// Token mints an access token for a seeded dev user (patient, proxy, teen, clinician,
// triage, staff-nomfa, auditor, admin) from the private issuer.
func (s *Stack) Token(t testing.TB, user string) string {
	t.Helper()
	return s.TokenWith(t, user, nil)
}

// TokenWith mints a token with the issuer's extra parameters (ttl, auth_age, scope; see
// devstack/internal/oidcdev).
func (s *Stack) TokenWith(t testing.TB, user string, params url.Values) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	tok, err := s.Stack.Token(ctx, user, params)
	if err != nil {
		t.Fatalf("privstack: %v", err)
	}
	return tok
}

// MachineToken gets a client-credentials token for one of the issuer's machine clients
// ("securemsg-scim"), with the secret the private issuer created.
func (s *Stack) MachineToken(t testing.TB, clientID string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	tok, err := s.Stack.MachineToken(ctx, clientID)
	if err != nil {
		t.Fatalf("privstack: %v", err)
	}
	return tok
}

// SignIn signs a seeded dev user in as the portal in a browser does (authorization code with
// PKCE at the private issuer) and returns their access token for scope.
func (s *Stack) SignIn(t testing.TB, user, scope string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	tok, err := s.Stack.SignIn(ctx, user, scope)
	if err != nil {
		t.Fatalf("privstack: %v", err)
	}
	return tok
}

// Conn is a TLS client connection to svc as a portal frontend has it: the dev CA as trust root,
// no client certificate. It reconnects quickly after a service restart and closes when the
// test ends.
func (s *Stack) Conn(t testing.TB, svc string) *grpc.ClientConn {
	t.Helper()
	return s.dial(t, svc, "")
}

// ServiceConn is an mTLS connection to svc presenting from's certificate: a service name, or a
// client identity the dev CA issues ("careteam-app", "ctl").
func (s *Stack) ServiceConn(t testing.TB, from, to string) *grpc.ClientConn {
	t.Helper()
	return s.dial(t, to, from)
}

func (s *Stack) dial(t testing.TB, svc, identity string) *grpc.ClientConn {
	t.Helper()
	cfg, err := s.TLSConfig(svc, identity)
	if err != nil {
		t.Fatalf("privstack: %v", err)
	}
	conn, err := grpc.NewClient(s.ServiceAddr(svc), grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
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
