package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Stack is the suite's dependencies and services as one set of processes.
type Stack struct {
	// Postgres, NATS, Vault (Transit), MinIO, Clamd, Mail (mailpit) and OIDC are the
	// dependencies; those left out through Config.Without are nil.
	Postgres, NATS, Vault, MinIO, Clamd, Mail, OIDC *Component
	// Portal is the reference portal's server, after the services; only the dev stack runs it
	// (nil otherwise, or with a zero Ports.Portal, or "portal" in Config.Without).
	Portal *Component
	// Jaeger is the dev stack's trace backend (nil in private stacks, which start their own
	// with StartJaeger); it runs only while Config.Traces asks for it.
	Jaeger *Component

	cfg       Config
	services  map[string]*Service
	mu        sync.Mutex
	bins      map[string]string // built this run: package -> binary
	buildErrs map[string]error
}

// New describes a stack; nothing runs until Up.
func New(cfg Config) *Stack {
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	s := &Stack{cfg: cfg, services: map[string]*Service{}, bins: map[string]string{}, buildErrs: map[string]error{}}
	deps := []struct {
		name string
		c    **Component
		def  func() *Component
	}{{"postgres", &s.Postgres, s.postgres}, {"nats", &s.NATS, s.nats}, {"vault", &s.Vault, s.vault},
		{"minio", &s.MinIO, s.minio}, {"clamd", &s.Clamd, s.clamd}, {"mailpit", &s.Mail, s.mailpit}}
	for _, d := range deps {
		if !s.without(d.name) {
			*d.c = d.def()
		}
	}
	s.OIDC = s.oidc() // always there, like the certificates
	for _, svc := range cfg.Services {
		s.services[svc] = s.newService(svc)
	}
	if cfg.Detached && cfg.Ports.Portal != 0 && !s.without("portal") {
		s.Portal = s.portal()
	}
	if cfg.Detached {
		s.Jaeger = s.jaeger()
	}
	return s
}

func (s *Stack) without(component string) bool { return slices.Contains(s.cfg.Without, component) }

func (s *Stack) logf(format string, args ...any) {
	if s.cfg.Logf != nil {
		s.cfg.Logf(format, args...)
	}
}

func (s *Stack) step(name, what, how string, began time.Time) {
	s.logf("  %-13s %-44s %s (%.1fs)", name, what, how, time.Since(began).Seconds())
}

// Components lists the dependencies that are part of the stack, in start order.
func (s *Stack) Components() []*Component {
	var out []*Component
	for _, c := range []*Component{s.Postgres, s.NATS, s.MinIO, s.Vault, s.Clamd, s.Mail, s.OIDC, s.Jaeger} {
		if c != nil {
			out = append(out, c)
		}
	}
	return out
}

// Up brings every component and then every service up, concurrently where they do not depend
// on each other, and waits for all of them. Errors name the component and its log; when only
// missing dependencies are to blame, Unavailable(err) says so.
func (s *Stack) Up(ctx context.Context) error {
	began := time.Now()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	bring := func(c *Component, endpoint string) {
		wg.Go(func() {
			t0 := time.Now()
			how, err := c.bring(ctx, s.logf)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				s.step(c.name, endpoint, "FAILED", t0)
				return
			}
			s.step(c.name, endpoint, how, t0)
		})
	}
	// What needs no binary of ours starts while the binaries build.
	for _, c := range []*Component{s.Postgres, s.NATS, s.MinIO, s.Clamd, s.Mail} {
		if c != nil {
			bring(c, c.addr)
		}
	}
	if s.Jaeger != nil {
		if s.cfg.Traces {
			bring(s.Jaeger, DevJaegerAddrs.QueryURL()+" (traces: UI and query API)")
		} else if err := s.stopUnasked(s.Jaeger); err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	}
	s.buildAll()
	if how, err := s.writeCerts(ctx); err != nil {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	} else {
		s.step("certs", s.cfg.CertsDir(), how, began)
	}
	for _, c := range []*Component{s.Vault, s.OIDC} {
		if c != nil {
			bring(c, c.addr)
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		for _, svc := range s.Services() {
			s.step(svc, s.ServiceAddr(svc), "not started: a dependency failed", began)
		}
		if s.Portal != nil {
			s.step(s.Portal.name, s.cfg.PortalURL(), "not started: a dependency failed", began)
		}
		return errors.Join(errs...)
	}
	for _, svc := range s.Services() {
		bring(s.services[svc].Component, "grpcs://"+s.ServiceAddr(svc))
	}
	wg.Wait()
	// The portal last: the app it serves calls the services, and its npm build would only
	// fight their start for the CPU. It needs nothing of theirs to start, so a service that
	// failed does not keep it from serving.
	if s.Portal != nil {
		bring(s.Portal, s.cfg.PortalURL())
		wg.Wait()
	}
	return errors.Join(errs...)
}

// buildAll builds the stack's own binaries up front: in one `go build` for a private stack, so
// the components find them at once; one package at a time for the dev stack (see build).
func (s *Stack) buildAll() {
	pkgs := []string{devcertsPkg, oidcdevPkg}
	if s.Vault != nil {
		pkgs = append(pkgs, transitdevPkg)
	}
	for _, svc := range s.Services() {
		pkgs = append(pkgs, servicePkg(svc))
	}
	if s.Portal != nil {
		pkgs = append(pkgs, portalPkg)
	}
	t0 := time.Now()
	if !s.cfg.Detached {
		bins, err := s.build(pkgs...)
		s.mu.Lock()
		for _, pkg := range pkgs {
			s.bins[pkg], s.buildErrs[pkg] = bins[pkg], err
		}
		s.mu.Unlock()
		return
	}
	var failed []string
	for _, pkg := range pkgs {
		bins, err := s.build(pkg)
		s.mu.Lock()
		s.bins[pkg], s.buildErrs[pkg] = bins[pkg], err
		s.mu.Unlock()
		if err != nil {
			failed = append(failed, pkg)
		}
	}
	how := "up to date"
	if len(failed) > 0 {
		how = "FAILED: " + strings.Join(failed, " ")
	}
	s.step("build", fmt.Sprintf("%d programs in %s", len(pkgs), s.cfg.BuildDir), how, t0)
}

// binary is pkg's binary from buildAll, built now if buildAll did not (a stack of one component).
func (s *Stack) binary(pkg string) (string, error) {
	s.mu.Lock()
	bin, ok := s.bins[pkg]
	err := s.buildErrs[pkg]
	s.mu.Unlock()
	if ok || err != nil {
		return bin, err
	}
	bins, err := s.build(pkg)
	return bins[pkg], err
}

// Down stops every process of the stack, the services and the portal first, then the
// dependencies, each group concurrently; it returns the names of those that were running. The
// machine's Postgres is never stopped.
func (s *Stack) Down() ([]string, error) {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		stopped []string
		errs    []error
	)
	stop := func(cs []*Component) {
		for _, c := range cs {
			if c.proc == nil {
				continue
			}
			c.proc.adopt()
			wg.Go(func() {
				if !c.Running() {
					c.proc.forget()
					return
				}
				err := c.Stop()
				mu.Lock()
				defer mu.Unlock()
				stopped = append(stopped, c.name)
				errs = append(errs, err)
			})
		}
		wg.Wait()
	}
	var services []*Component
	for _, svc := range s.Services() {
		services = append(services, s.services[svc].Component)
	}
	if s.Portal != nil {
		services = append(services, s.Portal)
	}
	stop(services)
	stop(s.Components())
	return stopped, errors.Join(errs...)
}

// Status writes one line per component and service with its endpoint, its health and who runs
// it, and reports whether everything is healthy.
func (s *Stack) Status(ctx context.Context, w io.Writer) bool {
	type row struct {
		name, endpoint string
		c              *Component
		check          func(context.Context) error
		owner          string // who runs it, for what the stack never runs (the machine's Redis)
		ok             bool
	}
	c := s.cfg
	rows := []row{
		{name: "postgres", endpoint: "postgres://" + HostPort(c.Ports.Postgres) + "/" + c.Database, c: s.Postgres},
		{name: "nats", endpoint: c.NATSURL() + " (JetStream)", c: s.NATS},
		{name: "minio", endpoint: "http://" + HostPort(c.Ports.MinIO) + " bucket " + c.S3Bucket, c: s.MinIO},
		{name: "minio/console", endpoint: "http://" + HostPort(c.Ports.MinIOConsole), c: s.MinIO,
			check: func(ctx context.Context) error { return tcpOpen(ctx, HostPort(c.Ports.MinIOConsole)) }},
		{name: "vault", endpoint: c.VaultAddr() + " token " + c.VaultToken, c: s.Vault},
		{name: "clamd", endpoint: HostPort(c.Ports.Clamd) + " (EICAR test db)", c: s.Clamd},
		{name: "mailpit", endpoint: "smtp " + HostPort(c.Ports.SMTP) + " ui " + c.MailAPIURL(), c: s.Mail},
		{name: "oidc", endpoint: c.IssuerURL(), c: s.OIDC},
	}
	if c.Detached {
		// The machine's Redis, which the services share their rate limits through; without it
		// they fall back to per-process limits (SECUREMSG_RATE_REDIS_FAILURE=open).
		rows = append(rows, row{name: "redis", endpoint: DevRateRedisURL + " (rate limits)", owner: "machine",
			check: func(ctx context.Context) error { return redisPing(ctx, DevRateRedisURL) }})
	}
	for _, svc := range s.Services() {
		rows = append(rows, row{name: svc, endpoint: "grpcs://" + s.ServiceAddr(svc) + " (mTLS), https://" + HostPort(c.Ports.HTTP[svc]), c: s.services[svc].Component})
	}
	if s.Portal != nil {
		rows = append(rows, row{name: "portal", endpoint: c.PortalURL() + " (reference portal, web/portal)", c: s.Portal})
	}
	if s.Jaeger != nil && (c.Traces || s.Jaeger.Running()) {
		rows = append(rows, row{name: "jaeger", endpoint: DevJaegerAddrs.QueryURL() + " (traces, OTLP :4318)", c: s.Jaeger})
	}
	var wg sync.WaitGroup
	for i := range rows {
		r := &rows[i]
		if r.c == nil && r.check == nil {
			continue
		}
		if r.c != nil && r.c.proc != nil {
			r.c.proc.adopt()
		}
		if r.check == nil {
			r.check = r.c.Healthy
		}
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			r.ok = r.check(cctx) == nil
		})
	}
	wg.Wait()
	all := true
	out := fmt.Appendf(nil, "%-13s %-56s %-5s %s\n", "COMPONENT", "ENDPOINT", "STATE", "RUN-BY")
	for _, r := range rows {
		state := "ok"
		if !r.ok {
			state, all = "DOWN", false
		}
		owner := "left out"
		switch {
		case r.owner != "":
			owner = r.owner
		case r.c != nil:
			owner = r.c.owner(r.ok)
		}
		out = fmt.Appendf(out, "%-13s %-56s %-5s %s\n", r.name, r.endpoint, state, owner)
	}
	out = fmt.Appendf(out, `
logs: %s/<component>/<component>.log   certs: %s
mint a token:  curl -s -X POST '%s/dev/token?user=patient'
               (users: patient proxy teen clinician triage staff-nomfa auditor admin; &format=raw for the bare JWT;
                &ttl=5m, &auth_age=2h, &scope=... adjust it)   or: go run ./services/ctl/cmd/securemsgctl token patient
test env:      source <(scripts/stack.sh env)
`, c.Dir, c.CertsDir(), c.IssuerURL())
	_, _ = w.Write(out) // the terminal; the exit status carries the answer
	return all
}

// redisPing sends PING to the Redis of rawURL (redis://host:port/db) and wants +PONG: an open
// port alone could be anything. Plain RESP, so the supervisor needs no Redis client.
func redisPing(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }() // a probe connection; its close error says nothing
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline) // a deadline on a fresh TCP connection cannot fail
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("redis at %s answered PING with %q", u.Host, strings.TrimSpace(line))
	}
	return nil
}

// Lock takes the dev stack's lock file in dir, waiting up to wait for another `up` or `down`
// (helpers and `make test` may run them concurrently). The lock goes with the process.
func Lock(dir string, wait time.Duration) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			_ = f.Close()
			return nil, fmt.Errorf("another `up` or `down` holds %s: %w", f.Name(), err)
		}
		time.Sleep(200 * time.Millisecond) // polling a lock another process holds
	}
}

// Config is the stack's configuration.
func (s *Stack) Config() Config { return s.cfg }

// Service returns the named service, or nil when it is not part of the stack.
func (s *Stack) Service(name string) *Service { return s.services[name] }

// Services lists the stack's services, in start order.
func (s *Stack) Services() []string {
	var out []string
	for _, name := range Services {
		if _, ok := s.services[name]; ok {
			out = append(out, name)
		}
	}
	return out
}

func (s *Stack) service(name string) (*Service, error) {
	v, ok := s.services[name]
	if !ok {
		return nil, fmt.Errorf("service %q was not started (Options.Services)", name)
	}
	return v, nil
}

// ServiceAddr is the gRPC host:port of svc (also for a service that is not part of the stack).
func (s *Stack) ServiceAddr(svc string) string { return HostPort(s.cfg.Ports.GRPC[svc]) }

// ServiceLog is the file holding svc's output ("" when svc is not part of the stack).
func (s *Stack) ServiceLog(svc string) string {
	if v, ok := s.services[svc]; ok {
		return v.LogFile()
	}
	return ""
}

// ServicePID is svc's process id, or 0 while it is stopped or when it is not part of the stack.
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

// processes lists the processes of every component and service.
func (s *Stack) processes() []*process {
	var out []*process
	for _, c := range s.Components() {
		if c.proc != nil {
			out = append(out, c.proc)
		}
	}
	for _, svc := range s.Services() {
		out = append(out, s.services[svc].proc)
	}
	if s.Portal != nil {
		out = append(out, s.Portal.proc)
	}
	return out
}

// Leftovers lists every process the stack started that still exists, as "name (pgid N)".
// After Down it must be empty.
func (s *Stack) Leftovers() []string {
	var out []string
	for _, p := range s.processes() {
		p.mu.Lock()
		groups := slices.Clone(p.groups)
		p.mu.Unlock()
		for _, g := range groups {
			if groupAlive(g) {
				out = append(out, fmt.Sprintf("%s (pgid %d)", p.name, g))
			}
		}
	}
	return out
}

// PIDs maps every running component and service to its process id.
func (s *Stack) PIDs() map[string]int {
	out := map[string]int{}
	for _, p := range s.processes() {
		if pid := p.pid(); pid != 0 {
			out[p.name] = pid
		}
	}
	return out
}

// stopUnasked stops a component an earlier `up` started and this one did not ask for (the
// dev stack's Jaeger after SECUREMSG_TRACES=1 make up, then make up without it).
func (s *Stack) stopUnasked(c *Component) error {
	c.proc.adopt()
	if !c.Running() {
		c.proc.forget()
		return nil
	}
	s.logf("  %s: not asked for this time; stopping it", c.name)
	return c.Stop()
}
