package privstack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/securemsg/securemsg/services/internal/testkit"
)

// AllServices lists the suite's services in start order.
var AllServices = []string{"messaging", "attachment", "notification", "audit"}

// Dependencies lists the dependency components Options.Without may leave out.
var Dependencies = []string{"postgres", "nats", "vault", "minio", "clamd", "mailpit"}

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

// Stack is a running private stack. Components left out through Options.Without are nil.
type Stack struct {
	// Postgres, NATS, MinIO, Clamd, Mail (mailpit) and OIDC are the dependency processes.
	Postgres, NATS, MinIO, Clamd, Mail, OIDC *Component
	// Vault is the Transit dev server (testkit.StartTransit), with its own Stop and Start.
	Vault *testkit.TransitServer

	tb       testing.TB
	opts     Options
	dir      string
	ports    ports
	s3Access string
	s3Secret string
	s3Bucket string
	services map[string]*Service
	starting sync.WaitGroup // component starts in flight; cleanup waits for them
}

type ports struct {
	postgres, nats, minio, minioConsole, clamd, smtp, mailHTTP, oidc int
	grpc, metrics                                                    map[string]int
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
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 60 * time.Second
	}
	s := &Stack{tb: tb, opts: opts, dir: tb.TempDir(), s3Access: "privstack", s3Secret: "privstack-" + randomHex(12),
		s3Bucket: "securemsg-attachments", services: map[string]*Service{}}
	if err := os.MkdirAll(filepath.Join(s.dir, "logs"), 0o755); err != nil {
		tb.Fatalf("privstack: %v", err)
	}
	if err := s.pickPorts(); err != nil {
		tb.Fatal(err)
	}
	// Registered first, so it runs last: after the services' cleanup and the Transit server's.
	tb.Cleanup(s.stopAll)

	servicePkgs := make([]string, 0, len(opts.Services))
	for _, svc := range opts.Services {
		servicePkgs = append(servicePkgs, "./services/"+svc+"/cmd/"+svc)
	}
	var (
		mu       sync.Mutex
		errs     []error
		bins     map[string]string
		buildDur time.Duration
	)
	run := func(name string, start func(context.Context) error) {
		if s.without(name) {
			return
		}
		s.starting.Go(func() {
			if err := start(context.Background()); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	run("build", func(ctx context.Context) error {
		t0 := time.Now()
		var err error
		bins, err = buildBinaries(append([]string{"./devstack/cmd/oidcdev", "./devstack/cmd/devcerts"}, servicePkgs...)...)
		buildDur = time.Since(t0)
		if err != nil {
			return err
		}
		if err := s.writeCerts(ctx, bins["./devstack/cmd/devcerts"]); err != nil {
			return err
		}
		return s.startOIDC(ctx, bins["./devstack/cmd/oidcdev"])
	})
	run("postgres", s.startPostgres)
	run("nats", s.startNATS)
	run("minio", s.startMinIO)
	run("clamd", s.startClamd)
	run("mailpit", s.startMailpit)
	// StartTransit reports through tb, so it runs on this goroutine while the rest start.
	if !s.without("vault") {
		s.Vault = testkit.StartTransit(tb)
	}
	s.starting.Wait()
	s.failOn(errs)
	depsDur := time.Since(began)

	if len(opts.Services) > 0 {
		// Services stop before the dependencies (and before the Transit server's own cleanup):
		// registered last, run first.
		tb.Cleanup(s.stopServices)
		errs = nil
		for _, svc := range opts.Services {
			s.services[svc] = s.newService(svc, bins["./services/"+svc+"/cmd/"+svc])
		}
		for _, svc := range opts.Services {
			s.starting.Go(func() {
				if err := s.services[svc].start(context.Background()); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		s.starting.Wait()
		s.failOn(errs)
	}
	tb.Logf("privstack: stack up in %s (go build %s, dependencies %s) in %s",
		time.Since(began).Round(time.Millisecond), buildDur.Round(time.Millisecond), depsDur.Round(time.Millisecond), s.dir)
	return s
}

// failOn ends the test when any start failed: through Unavailable when only missing
// dependencies are to blame, with every error otherwise.
func (s *Stack) failOn(errs []error) {
	s.tb.Helper()
	if len(errs) == 0 {
		return
	}
	var missing *unavailableError
	allMissing := true
	for _, err := range errs {
		if !errors.As(err, &missing) {
			allMissing = false
		}
	}
	if allMissing {
		testkit.Unavailable(s.tb, missing.component, errors.Join(errs...))
		return
	}
	s.tb.Fatal(errors.Join(errs...))
}

func (s *Stack) without(component string) bool { return slices.Contains(s.opts.Without, component) }

func (s *Stack) pickPorts() error {
	s.ports.grpc, s.ports.metrics = map[string]int{}, map[string]int{}
	// A port is only picked, not held, so two picks could coincide; a set keeps them apart.
	seen := map[int]bool{}
	pick := func() (int, error) {
		for {
			p, err := freePort()
			if err != nil || !seen[p] {
				seen[p] = true
				return p, err
			}
		}
	}
	targets := []*int{&s.ports.postgres, &s.ports.nats, &s.ports.minio, &s.ports.minioConsole,
		&s.ports.clamd, &s.ports.smtp, &s.ports.mailHTTP, &s.ports.oidc}
	for _, t := range targets {
		p, err := pick()
		if err != nil {
			return err
		}
		*t = p
	}
	for _, svc := range AllServices {
		g, err := pick()
		if err != nil {
			return err
		}
		m, err := pick()
		if err != nil {
			return err
		}
		s.ports.grpc[svc], s.ports.metrics[svc] = g, m
	}
	return nil
}

// components lists the dependency processes that were created, in stop order.
func (s *Stack) components() []*Component {
	var out []*Component
	for _, c := range []*Component{s.OIDC, s.Mail, s.Clamd, s.MinIO, s.NATS, s.Postgres} {
		if c != nil {
			out = append(out, c)
		}
	}
	return out
}

func (s *Stack) stopServices() {
	var wg sync.WaitGroup
	for _, svc := range s.services {
		wg.Go(func() {
			if err := svc.proc.stop(); err != nil {
				s.tb.Error(err)
			}
		})
	}
	wg.Wait()
}

// stopAll stops whatever still runs, every component concurrently (each is independent once
// the services are gone), killing any process group that outlives a graceful stop.
func (s *Stack) stopAll() {
	s.starting.Wait()
	s.stopServices()
	var wg sync.WaitGroup
	for _, c := range s.components() {
		wg.Go(func() {
			if err := c.proc.stop(); err != nil {
				s.tb.Error(err)
			}
		})
	}
	wg.Wait()
	if s.tb.Failed() {
		s.keepLogs()
	}
}

// keepLogs copies the logs of a failed test out of its temp dir (which the testing package
// removes) into .tmp/privstack-logs/ at the repository root, git-ignored, for a post-mortem.
func (s *Stack) keepLogs() {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(s.tb.Name())
	dst := filepath.Join(testkit.RepoRoot(), ".tmp", "privstack-logs", name+"-"+time.Now().Format("20060102-150405"))
	if err := os.CopyFS(dst, os.DirFS(filepath.Join(s.dir, "logs"))); err != nil {
		s.tb.Logf("privstack: keep logs of the failed test: %v", err)
		return
	}
	s.tb.Logf("privstack: the test failed; component and service logs kept in %s", dst)
}

// Leftovers lists every process privstack started that still exists, as "name (pgid N)" and,
// for the Transit server, "vault (pid N)". After the test's cleanup it must be empty.
func (s *Stack) Leftovers() []string {
	var out []string
	procs := []*process{}
	for _, c := range s.components() {
		procs = append(procs, c.proc)
	}
	for _, svc := range s.services {
		procs = append(procs, svc.proc)
	}
	for _, p := range procs {
		p.mu.Lock()
		groups := slices.Clone(p.groups)
		p.mu.Unlock()
		for _, g := range groups {
			if groupAlive(g) {
				out = append(out, fmt.Sprintf("%s (pgid %d)", p.name, g))
			}
		}
	}
	if pid := s.vaultPID(); pid != 0 {
		out = append(out, fmt.Sprintf("vault (pid %d)", pid))
	}
	return out
}

// PIDs maps every running component and service to its process id; the Transit server appears
// as "vault" (found among this process's children by its address).
func (s *Stack) PIDs() map[string]int {
	out := map[string]int{}
	for _, c := range s.components() {
		if pid := c.PID(); pid != 0 {
			out[c.Name()] = pid
		}
	}
	for name, svc := range s.services {
		if pid := svc.PID(); pid != 0 {
			out[name] = pid
		}
	}
	if pid := s.vaultPID(); pid != 0 {
		out["vault"] = pid
	}
	return out
}

// vaultPID finds the Transit dev server among this process's children: testkit.TransitServer
// does not expose its pid, and its command line names its unique address.
func (s *Stack) vaultPID() int {
	if s.Vault == nil {
		return 0
	}
	want := "-addr\x00" + strings.TrimPrefix(s.Vault.Addr(), "http://") + "\x00"
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), want) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			if state, _, ok := statStateGroup(stat); ok && state == 'Z' {
				continue
			}
		}
		return pid
	}
	return 0
}

// Dir is the stack's state folder (inside t.TempDir()); logs are in Dir()/logs.
func (s *Stack) Dir() string { return s.dir }

// PostgresURL is the private cluster's `securemsg` database, as the services use it.
func (s *Stack) PostgresURL() string {
	return fmt.Sprintf("postgres://postgres@%s/securemsg?sslmode=disable", hostPort(s.ports.postgres))
}

// NATSURL is the private NATS server's client URL.
func (s *Stack) NATSURL() string { return "nats://" + hostPort(s.ports.nats) }

// VaultAddr is the Transit dev server's URL ("" when left out).
func (s *Stack) VaultAddr() string {
	if s.Vault == nil {
		return ""
	}
	return s.Vault.Addr()
}

// VaultToken is the Transit dev server's root token ("" when left out).
func (s *Stack) VaultToken() string {
	if s.Vault == nil {
		return ""
	}
	return s.Vault.Token()
}

// S3Endpoint is MinIO's host:port (plain HTTP).
func (s *Stack) S3Endpoint() string { return hostPort(s.ports.minio) }

// S3AccessKey and S3SecretKey are MinIO's root credentials.
func (s *Stack) S3AccessKey() string { return s.s3Access }

// S3SecretKey is MinIO's root secret key.
func (s *Stack) S3SecretKey() string { return s.s3Secret }

// S3Bucket is the attachments bucket, created when MinIO first started.
func (s *Stack) S3Bucket() string { return s.s3Bucket }

// ClamdAddr is clamd's TCP host:port.
func (s *Stack) ClamdAddr() string { return hostPort(s.ports.clamd) }

// SMTPAddr is mailpit's SMTP host:port.
func (s *Stack) SMTPAddr() string { return hostPort(s.ports.smtp) }

// MailAPIURL is mailpit's HTTP API base URL (e.g. MailAPIURL()+"/api/v1/messages").
func (s *Stack) MailAPIURL() string { return "http://" + hostPort(s.ports.mailHTTP) }

// IssuerURL is the private dev OIDC issuer (its tokens are only valid for this stack).
func (s *Stack) IssuerURL() string { return "http://" + hostPort(s.ports.oidc) }

// CertsDir holds this stack's dev CA (ca.pem) and the service and client certificates
// (<name>.pem, <name>-key.pem; names as in devstack/internal/devca).
func (s *Stack) CertsDir() string { return filepath.Join(s.dir, "certs") }

func randomHex(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf)
	return hex.EncodeToString(buf)
}
