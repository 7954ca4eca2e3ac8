package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The dependencies, each defined once for both kinds of stack: its command line, its config
// files, its readiness check. Binaries are looked up in prepare, which runs before the first
// start, because looking up a pinned tool may install it.

func (s *Stack) statePath(name string, elem ...string) string {
	return filepath.Join(append([]string{s.cfg.Dir, name}, elem...)...)
}

// newProc prepares a component's process, logging to <dir>/<name>/<name>.log; in the dev stack
// it is detached and recorded in <dir>/<name>/pid.
func (s *Stack) newProc(name string) *process {
	p := newProcess(name, s.statePath(name, name+".log"), "")
	if s.cfg.Detached {
		p.recordPath = s.statePath(name, "pid")
	}
	return p
}

func (s *Stack) component(name string, port int, ready func(context.Context) error) *Component {
	return &Component{name: name, proc: s.newProc(name), addr: HostPort(port), ready: ready, within: s.cfg.StartTimeout}
}

// ---------------------------------------------------------------------------------------------
// Postgres

// postgres is a cluster of the private stack's own (initdb, fsync on: fault tests kill it, and
// only a durable cluster makes "no acknowledged message lost" testable), or in the dev stack the
// machine's cluster, which `up` starts when it is down and `down` never stops.
func (s *Stack) postgres() *Component {
	admin := s.cfg.PostgresURL("postgres") + "&connect_timeout=2"
	db := s.cfg.Database
	// Readiness is checked on the maintenance database, which exists from the first start on.
	c := s.component("postgres", s.cfg.Ports.Postgres, func(ctx context.Context) error {
		if err := pgPing(ctx, admin); err != nil {
			return err
		}
		return pgCreateDatabase(ctx, admin, db)
	})
	c.check = func(ctx context.Context) error { return pgPing(ctx, s.cfg.PostgresURL(db)+"&connect_timeout=2") }
	if s.cfg.Detached {
		c.proc = nil
		c.ensure = func(ctx context.Context) (string, error) { return s.machinePostgres(ctx, c) }
		return c
	}
	c.proc.stopSig = syscall.SIGINT // fast shutdown; SIGTERM (smart) waits for every client, and pools never leave
	c.prepare = func(ctx context.Context) error { return s.initdb(ctx, c.proc) }
	return c
}

func (s *Stack) machinePostgres(ctx context.Context, c *Component) (string, error) {
	how := "reusing the running server"
	if tcpOpen(ctx, c.addr) != nil {
		versions, _ := filepath.Glob("/etc/postgresql/*/main")
		if len(versions) == 0 {
			return "", fmt.Errorf("postgres: nothing on %s and no cluster in /etc/postgresql", c.addr)
		}
		slices.SortFunc(versions, func(a, b string) int { return pgVersion(a) - pgVersion(b) })
		version := filepath.Base(filepath.Dir(versions[len(versions)-1]))
		out, err := exec.CommandContext(ctx, "pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start").CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("postgres: pg_ctlcluster %s main start: %v (see /var/log/postgresql/)\n%s", version, err, out)
		}
		how = "started cluster " + version + "/main"
	}
	if err := poll(ctx, c.within, c.ready); err != nil {
		return "", fmt.Errorf("postgres on %s: %w", c.addr, err)
	}
	return how + ", database " + s.cfg.Database, nil
}

func pgVersion(path string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
	return v
}

// postgresBinDir finds the newest installed PostgreSQL's bin folder (Debian layout).
func postgresBinDir() (string, error) {
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(found) == 0 {
		return "", &UnavailableError{Component: "postgres", Err: errors.New("no /usr/lib/postgresql/<version>/bin/postgres (install postgresql)")}
	}
	slices.SortFunc(found, func(a, b string) int { return pgVersion(filepath.Dir(a)) - pgVersion(filepath.Dir(b)) })
	return filepath.Dir(found[len(found)-1]), nil
}

// PostgresBinDir is the folder of the PostgreSQL binaries a private stack runs (pg_dump and
// pg_restore of the same version live there).
func PostgresBinDir() (string, error) { return postgresBinDir() }

// initdb creates the private cluster and sets p up to run it.
func (s *Stack) initdb(ctx context.Context, p *process) error {
	bin, err := postgresBinDir()
	if err != nil {
		return err
	}
	dir := s.statePath("postgres")
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	// initdb and postgres refuse to run as root: run them as the postgres system user, owning
	// the cluster folder.
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return &UnavailableError{Component: "postgres", Err: fmt.Errorf("running as root needs a `postgres` system user: %w", err)}
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)} //nolint:gosec // G115: Linux ids are 32-bit
		if err := os.Chown(dir, uid, gid); err != nil {
			return fmt.Errorf("postgres: chown cluster folder: %w", err)
		}
		// t.TempDir()'s parent is 0700: let the postgres user pass through (not list) it.
		for _, d := range []string{filepath.Dir(s.cfg.Dir), s.cfg.Dir} {
			if err := os.Chmod(d, 0o711); err != nil {
				return fmt.Errorf("postgres: open %s for the postgres user: %w", d, err)
			}
		}
	}
	p.path = filepath.Join(bin, "postgres")
	p.args = []string{"-D", data, "-p", strconv.Itoa(s.cfg.Ports.Postgres),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=", // TCP only: nothing in the shared /var/run/postgresql
		"-c", "fsync=on", "-c", "synchronous_commit=on",
		"-c", "max_connections=200",
		"-c", "shared_buffers=32MB",
	}
	// --no-sync: only initdb's own final fsync is skipped, to start faster; the running server
	// has fsync on, and the cluster is thrown away after the test.
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres",
		"-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	initdb.Stdout, initdb.Stderr = logf, logf
	err = initdb.Run()
	_ = logf.Close()
	if err != nil {
		return p.failure("initdb", err)
	}
	return nil
}

func pgPing(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	return conn.Ping(ctx)
}

// pgCreateDatabase creates database name through the maintenance database at adminURL.
func pgCreateDatabase(ctx context.Context, adminURL, name string) error {
	cfg, err := pgx.ParseConfig(adminURL)
	if err != nil {
		return err
	}
	return CreateDatabase(ctx, cfg, name)
}

// CreateDatabase creates database name unless it exists, connecting with admin (to the
// maintenance database). A concurrent creation by another process is fine.
func CreateDatabase(ctx context.Context, admin *pgx.ConnConfig, name string) error {
	conn, err := pgx.ConnectConfig(ctx, admin)
	if err != nil {
		return fmt.Errorf("connect to maintenance database: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil || exists {
		return err
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P04" || pgErr.Code == "23505") {
		return nil // duplicate_database, or the race on pg_database's unique index
	}
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// ---------------------------------------------------------------------------------------------
// NATS

// nats is the pinned nats-server with JetStream, syncing every write to disk (sync_interval:
// always) so a kill loses nothing JetStream acknowledged.
func (s *Stack) nats() *Component {
	url := s.cfg.NATSURL()
	c := s.component("nats", s.cfg.Ports.NATS, func(ctx context.Context) error { return JetStreamEnabled(ctx, url) })
	conf := s.statePath("nats", "nats.conf")
	body := natsConfig(s.cfg.Ports.NATS, s.cfg.Ports.NATSMonitor, s.statePath("nats", "data"), s.cfg.NATSMaxStore)
	c.proc.args, c.proc.settings = []string{"-c", conf}, []string{body}
	c.prepare = func(context.Context) error {
		var err error
		if c.proc.path, err = ToolPath(s.cfg.Root, "nats-server"); err != nil {
			return err
		}
		return writeFile(conf, body)
	}
	return c
}

// natsConfig is the nats-server configuration of every NATS the suite runs (a zero monitor port
// opens no HTTP monitoring; a zero maxStore is 4 GiB of JetStream file storage).
func natsConfig(port, monitor int, storeDir string, maxStore int64) string {
	if maxStore == 0 {
		maxStore = 4 << 30
	}
	http := ""
	if monitor != 0 {
		http = fmt.Sprintf("# Monitoring (/varz, /jsz) for debugging.\nhttp: %s\n", HostPort(monitor))
	}
	return fmt.Sprintf(`# Written by the stack supervisor (services/internal/testkit/internal/supervisor). Loopback only.
server_name: securemsg-%d
listen: %s
%smax_payload: 8MB
jetstream {
  store_dir: %q
  max_memory_store: 256MB
  max_file_store: %d
  sync_interval: always
}
`, port, HostPort(port), http, storeDir, maxStore)
}

// JetStreamEnabled reports an error unless JetStream answers for the account at url (the
// services' outbox relay and consumers need it), not merely the client port.
func JetStreamEnabled(ctx context.Context, url string) error {
	timeout := 3 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	nc, err := nats.Connect(url, nats.Name("securemsg-stack-probe"), nats.Timeout(timeout), nats.NoReconnect())
	if err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream context: %w", err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("jetstream account info: %w", err)
	}
	return nil
}

// ---------------------------------------------------------------------------------------------
// Vault

// vault is real Vault in dev mode where a vault binary is on PATH, and otherwise the project's
// Transit-compatible dev server, whose -data-dir keeps the keys across restarts: wrapped DEKs
// stored by the services must stay unwrappable when the stack (or a fault test) restarts it.
// Either way transit/ is mounted as an operator would.
func (s *Stack) vault() *Component {
	addr, token := s.cfg.VaultAddr(), s.cfg.VaultToken
	c := s.component("vault", s.cfg.Ports.Vault, func(ctx context.Context) error {
		if err := VaultHealthy(ctx, addr); err != nil {
			return err
		}
		return MountTransit(ctx, addr, token)
	})
	c.check = func(ctx context.Context) error { return VaultHealthy(ctx, addr) }
	c.reuse = true
	c.prepare = func(context.Context) error {
		if vault, err := exec.LookPath("vault"); err == nil && s.cfg.Detached {
			c.proc.path = vault
			c.proc.args = []string{"server", "-dev", "-dev-root-token-id=" + token, "-dev-listen-address=" + c.addr}
			return nil
		}
		var err error
		if c.proc.path, err = s.binary(transitdevPkg); err != nil {
			return &UnavailableError{Component: "transitdev", Err: err}
		}
		c.proc.args = TransitArgs(c.addr, token, s.statePath("vault", "data"))
		return nil
	}
	return c
}

const transitdevPkg = "./devstack/cmd/transitdev"

// TransitArgs is the Transit dev server's command line.
func TransitArgs(addr, token, dataDir string) []string {
	return []string{"-addr", addr, "-root-token", token, "-data-dir", dataDir}
}

// VaultHealthy succeeds when Vault's sys/health answers 200 (initialised, unsealed, active).
func VaultHealthy(ctx context.Context, addr string) error {
	return httpOK(ctx, http.MethodGet, addr+"/v1/sys/health")
}

// MountTransit enables the transit engine at transit/; one already there is fine.
func MountTransit(ctx context.Context, addr, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, addr+"/v1/sys/mounts/transit", strings.NewReader(`{"type":"transit"}`))
	if err != nil {
		return err
	}
	req.Header.Set("X-Vault-Token", token)
	req.Header.Set("Content-Type", "application/json")
	body, code, err := httpDo(req)
	if err != nil {
		return fmt.Errorf("mount transit/: %w", err)
	}
	if code/100 != 2 && !strings.Contains(body, "already in use") {
		return fmt.Errorf("mount transit/: status %d: %s", code, body)
	}
	return nil
}

// ---------------------------------------------------------------------------------------------
// MinIO

func (s *Stack) minio() *Component {
	live := "http://" + HostPort(s.cfg.Ports.MinIO) + "/minio/health/live"
	client, clientErr := minio.New(HostPort(s.cfg.Ports.MinIO), &minio.Options{Creds: credentials.NewStaticV4(s.cfg.S3AccessKey, s.cfg.S3SecretKey, "")})
	bucket := func(ctx context.Context, create bool) error {
		if err := httpOK(ctx, http.MethodGet, live); err != nil {
			return err
		}
		if clientErr != nil {
			return clientErr
		}
		ok, err := client.BucketExists(ctx, s.cfg.S3Bucket)
		switch {
		case err != nil || ok:
			return err
		case !create:
			return fmt.Errorf("no bucket %s", s.cfg.S3Bucket)
		}
		return client.MakeBucket(ctx, s.cfg.S3Bucket, minio.MakeBucketOptions{})
	}
	// Ready means the bucket answers; the first start creates it (MinIO may refuse bucket calls
	// for a moment after it reports live, hence inside the polled check).
	c := s.component("minio", s.cfg.Ports.MinIO, func(ctx context.Context) error { return bucket(ctx, true) })
	c.check = func(ctx context.Context) error { return bucket(ctx, false) }
	c.reuse = true
	dir := s.statePath("minio")
	c.proc.args = []string{"server", "--address", c.addr, "--console-address", HostPort(s.cfg.Ports.MinIOConsole),
		"--certs-dir", filepath.Join(dir, "certs"), // never ~/.minio
		filepath.Join(dir, "data")}
	env := []string{"MINIO_ROOT_USER=" + s.cfg.S3AccessKey, "MINIO_ROOT_PASSWORD=" + s.cfg.S3SecretKey, "MINIO_UPDATE=off"}
	if !s.cfg.Detached {
		// Tests need neither the console nor the start-up banner.
		c.proc.args = slices.Insert(c.proc.args, 1, "--quiet")
		env = append(env, "MINIO_BROWSER=off")
	}
	c.proc.env, c.proc.settings = append(c.proc.env, env...), env
	c.prepare = func(context.Context) error {
		var err error
		c.proc.path, err = ToolPath(s.cfg.Root, "minio")
		return err
	}
	return c
}

// ---------------------------------------------------------------------------------------------
// mailpit

func (s *Stack) mailpit() *Component {
	dir := s.statePath("mailpit")
	// Any credentials, even over plain SMTP, as the services' dev settings send them.
	c := mailpitComponent(s.newProc("mailpit"), dir, HostPort(s.cfg.Ports.SMTP), HostPort(s.cfg.Ports.MailHTTP),
		s.cfg.StartTimeout, "--smtp-auth-accept-any", "--smtp-auth-allow-insecure")
	c.reuse = true
	c.prepare = func(context.Context) error {
		var err error
		c.proc.path, err = ToolPath(s.cfg.Root, "mailpit")
		return err
	}
	return c
}

// MailpitComponent makes p (mailpit, its binary set) listen for SMTP on smtpAddr and for its UI
// and API on httpAddr, with its database in dir, then adds the extra flags. Auth flags are the
// caller's: mailpit refuses --smtp-auth-allow-insecure beside --smtp-require-starttls. It is
// ready once the API answers and SMTP accepts a TCP connection: nothing more is checked there,
// since under --smtp-require-tls the SMTP port speaks TLS from the first byte.
func mailpitComponent(p *process, dir, smtpAddr, httpAddr string, within time.Duration, extra ...string) *Component {
	p.args = append([]string{"--smtp", smtpAddr, "--listen", httpAddr,
		"--database", filepath.Join(dir, "mailpit.db"), "--smtp-disable-rdns", "--disable-version-check"}, extra...)
	livez := "http://" + httpAddr + "/livez"
	return &Component{name: p.name, proc: p, addr: smtpAddr, within: within,
		ready: func(ctx context.Context) error {
			if err := httpOK(ctx, http.MethodGet, livez); err != nil {
				return err
			}
			return tcpOpen(ctx, smtpAddr)
		}}
}

// StartMailpit starts the pinned mailpit on free ports in dir with extra flags after the
// stack's own and waits until it is ready: for tests that need a mail server configured unlike
// the stack's. It returns the component and the HTTP API base URL.
func StartMailpit(ctx context.Context, root, dir string, extra ...string) (*Component, string, error) {
	bin, err := ToolPath(root, "mailpit")
	if err != nil {
		return nil, "", err
	}
	smtpPort, err := FreePort()
	if err != nil {
		return nil, "", err
	}
	httpPort := smtpPort
	for httpPort == smtpPort { // picked, not held: a second pick may return the same port
		if httpPort, err = FreePort(); err != nil {
			return nil, "", err
		}
	}
	p := newProcess("mailpit", filepath.Join(dir, "mailpit.log"), bin)
	c := mailpitComponent(p, dir, HostPort(smtpPort), HostPort(httpPort), 30*time.Second, extra...)
	return c, "http://" + HostPort(httpPort), c.start(ctx)
}

// ---------------------------------------------------------------------------------------------
// The OIDC issuer and the certificates (devstack programs)

const (
	oidcdevPkg  = "./devstack/cmd/oidcdev"
	devcertsPkg = "./devstack/cmd/devcerts"
)

func (s *Stack) oidc() *Component {
	discovery := s.cfg.IssuerURL() + "/.well-known/openid-configuration"
	c := s.component("oidc", s.cfg.Ports.OIDC, func(ctx context.Context) error { return httpOK(ctx, http.MethodGet, discovery) })
	c.proc.args = []string{"-addr", c.addr, "-issuer", s.cfg.IssuerURL(), "-key-file", s.statePath("oidc", "signing-key.pem"),
		"-client-secrets-dir", s.statePath("oidc", "clients")}
	c.prepare = func(context.Context) error {
		if err := os.MkdirAll(s.statePath("oidc"), 0o700); err != nil {
			return err
		}
		var err error
		c.proc.path, err = s.binary(oidcdevPkg)
		return err
	}
	return c
}

// writeCerts runs devcerts into the stack's certs folder, keeping what is still valid.
func (s *Stack) writeCerts(ctx context.Context) (string, error) {
	bin, err := s.binary(devcertsPkg)
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, bin, "-dir", s.cfg.CertsDir()).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("certs: devcerts -dir %s: %v\n%s", s.cfg.CertsDir(), err, out)
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "devcerts: "), nil
}

// ---------------------------------------------------------------------------------------------
// Single components, for tests that own one dependency (testkit.StartNATS, testkit.StartTransit)

// StartOne starts the dependency name ("nats", "vault") of a private stack of its own, on a
// free port with its state in dir, and waits until it is ready. The component is returned even
// when it failed to become ready, so the caller can stop it.
func StartOne(ctx context.Context, root, dir, name string, tune func(*Config)) (*Component, error) {
	cfg, err := PrivateConfig(root, dir)
	if err != nil {
		return nil, err
	}
	cfg.Without = slices.DeleteFunc(slices.Clone(Dependencies), func(d string) bool { return d == name })
	if tune != nil {
		tune(&cfg)
	}
	s := New(cfg)
	var c *Component
	for _, dep := range s.Components() {
		if dep.name == name {
			c = dep
		}
	}
	if c == nil {
		return nil, fmt.Errorf("no dependency %q", name)
	}
	_, err = c.bring(ctx, s.logf)
	return c, err
}

// ---------------------------------------------------------------------------------------------
// HTTP and waiting

// httpClient never goes through a proxy: everything the supervisor talks to is on loopback.
var httpClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}

// httpOK succeeds when a request to url answers 200.
func httpOK(ctx context.Context, method, url string) error {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return err
	}
	_, code, err := httpDo(req)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("%s %s: status %d", method, url, code)
	}
	return err
}

func httpDo(req *http.Request) (string, int, error) {
	resp, err := httpClient.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer func() { _ = resp.Body.Close() }() // read-only: the body was read
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return strings.TrimSpace(string(body)), resp.StatusCode, err
}

// poll calls ready until it succeeds or within passes (for what the stack does not run itself).
func poll(ctx context.Context, within time.Duration, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for interval := 10 * time.Millisecond; ; interval = min(2*interval, 250*time.Millisecond) {
		err := ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready within %s: %w", within, err)
		case <-time.After(interval): // polling for readiness, not synchronising
		}
	}
}

func writeFile(path, body string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if old, err := os.ReadFile(path); err == nil && string(old) == body {
		return nil
	}
	return os.WriteFile(path, []byte(body), 0o644)
}
