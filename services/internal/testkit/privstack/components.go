package privstack

import (
	"bufio"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
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

// Component is one private dependency (Postgres, NATS, MinIO, clamd, mailpit, the OIDC issuer):
// a process the test can stop, kill and start again on the same port with the same data. Its
// methods return errors rather than failing a test, so a fault test may call them from any
// goroutine (say, while a burst of sends runs).
type Component struct {
	stack  *Stack
	proc   *process
	addr   string
	ready  func(context.Context) error
	within time.Duration
}

// Name is the component's name ("postgres", "nats", "minio", "clamd", "mailpit", "oidc").
func (c *Component) Name() string { return c.proc.name }

// Addr is the host:port the component listens on; it stays the same across restarts.
func (c *Component) Addr() string { return c.addr }

// LogFile is the file the component's output goes to, appended to across restarts.
func (c *Component) LogFile() string { return c.proc.logPath }

// PID is the running process's id, or 0 while it is stopped.
func (c *Component) PID() int { return c.proc.pid() }

// Running reports whether the process runs (it may not be ready yet).
func (c *Component) Running() bool { return c.proc.running() }

// Stop shuts the component down gracefully (Postgres: fast shutdown) and waits until it has
// exited; connections to Addr are then refused. Stopping a stopped component does nothing.
func (c *Component) Stop() error { return c.proc.stop() }

// Kill ends the component with SIGKILL, as a crash would (Postgres then recovers from its WAL
// on the next Start).
func (c *Component) Kill() error { return c.proc.kill() }

// Start starts a stopped component again, same port and data, and waits until it is ready.
func (c *Component) Start() error { return c.start(context.Background()) }

// Restart stops the component (gracefully) and starts it again.
func (c *Component) Restart() error {
	if err := c.Stop(); err != nil {
		return err
	}
	return c.Start()
}

func (c *Component) start(ctx context.Context) error {
	if err := c.proc.start(); err != nil {
		return err
	}
	return c.proc.waitReady(ctx, c.within, c.ready)
}

// newProcess prepares a component's process with its log under the stack's logs folder.
func (s *Stack) newProcess(name, path string, args ...string) *process {
	return newProcess(filepath.Join(s.dir, "logs"), name, path, args...)
}

// newProcess prepares a process logging to logDir/<name>.log, stopped with SIGTERM.
func newProcess(logDir, name, path string, args ...string) *process {
	return &process{
		name: name, path: path, args: args, env: os.Environ(),
		logPath: filepath.Join(logDir, name+".log"),
		stopSig: syscall.SIGTERM, stopWait: 15 * time.Second,
	}
}

// ---------------------------------------------------------------------------------------------
// Postgres

// postgresBinDir finds the newest installed PostgreSQL's bin folder (Debian layout).
func postgresBinDir() (string, error) {
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(found) == 0 {
		return "", &unavailableError{component: "postgres", err: errors.New("no /usr/lib/postgresql/<version>/bin/postgres (install postgresql)")}
	}
	version := func(p string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
		return v
	}
	slices.SortFunc(found, func(a, b string) int { return version(a) - version(b) })
	return filepath.Dir(found[len(found)-1]), nil
}

// startPostgres creates a private cluster (initdb) and starts it with fsync on: fault tests
// restart and kill it, and only a durable cluster makes "no acknowledged message lost" testable.
func (s *Stack) startPostgres(ctx context.Context) error {
	bin, err := postgresBinDir()
	if err != nil {
		return err
	}
	dir := filepath.Join(s.dir, "postgres")
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("privstack: postgres: %w", err)
	}
	// initdb and postgres refuse to run as root: run them as the postgres system user, owning
	// the cluster folder.
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return &unavailableError{component: "postgres", err: fmt.Errorf("running as root needs a `postgres` system user: %w", err)}
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return fmt.Errorf("privstack: postgres: chown cluster folder: %w", err)
		}
		// t.TempDir()'s parent is 0700: let the postgres user pass through (not list) it.
		for _, d := range []string{filepath.Dir(s.dir), s.dir} {
			if err := os.Chmod(d, 0o711); err != nil {
				return fmt.Errorf("privstack: postgres: open %s for the postgres user: %w", d, err)
			}
		}
	}
	p := s.newProcess("postgres", filepath.Join(bin, "postgres"),
		"-D", data, "-p", strconv.Itoa(s.ports.postgres),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=", // TCP only: nothing in the shared /var/run/postgresql
		"-c", "fsync=on", "-c", "synchronous_commit=on",
		"-c", "max_connections=200",
		"-c", "shared_buffers=32MB",
	)
	p.cred = cred
	// SIGINT is Postgres's fast shutdown. SIGTERM (smart) would wait for every client to
	// disconnect, and the services' pools never do.
	p.stopSig = syscall.SIGINT

	// --no-sync: only initdb's own final fsync is skipped, to start faster; the running server
	// has fsync on, and the cluster is thrown away after the test.
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres",
		"-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := os.MkdirAll(filepath.Dir(p.logPath), 0o755); err != nil {
		return err
	}
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

	// Readiness is checked on the maintenance database, which exists from the first start on.
	admin := fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable&connect_timeout=2", hostPort(s.ports.postgres))
	s.Postgres = &Component{stack: s, proc: p, addr: hostPort(s.ports.postgres), within: s.opts.StartTimeout,
		ready: func(ctx context.Context) error { return pgPing(ctx, admin) }}
	if err := s.Postgres.start(ctx); err != nil {
		return err
	}
	if err := pgCreateDatabase(ctx, admin, "securemsg"); err != nil {
		return p.failure("create database securemsg", err)
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

func pgCreateDatabase(ctx context.Context, adminURL, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database
		return nil
	}
	return err
}

// ---------------------------------------------------------------------------------------------
// NATS

// startNATS runs the pinned nats-server with JetStream, its store in the temp dir, syncing
// every write to disk (sync_interval: always) so a kill loses nothing JetStream acknowledged.
func (s *Stack) startNATS(ctx context.Context) error {
	bin, err := toolPath("nats-server")
	if err != nil {
		return err
	}
	dir := filepath.Join(s.dir, "nats")
	if err := os.MkdirAll(filepath.Join(dir, "store"), 0o755); err != nil {
		return fmt.Errorf("privstack: nats: %w", err)
	}
	conf := filepath.Join(dir, "nats.conf")
	body := fmt.Sprintf(`# Written by privstack for one test.
server_name: privstack
listen: %s
max_payload: 8MB
jetstream {
  store_dir: %q
  max_memory_store: 256MB
  max_file_store: 2GB
  sync_interval: always
}
`, hostPort(s.ports.nats), filepath.Join(dir, "store"))
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		return fmt.Errorf("privstack: nats: %w", err)
	}
	url := s.NATSURL()
	s.NATS = &Component{stack: s, proc: s.newProcess("nats", bin, "-c", conf), addr: hostPort(s.ports.nats),
		within: s.opts.StartTimeout, ready: func(ctx context.Context) error { return natsReady(ctx, url) }}
	return s.NATS.start(ctx)
}

// natsReady succeeds once JetStream answers, not merely the client port.
func natsReady(ctx context.Context, url string) error {
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	_, err = js.AccountInfo(ctx)
	return err
}

// ---------------------------------------------------------------------------------------------
// MinIO

func (s *Stack) startMinIO(ctx context.Context) error {
	bin, err := toolPath("minio")
	if err != nil {
		return err
	}
	dir := filepath.Join(s.dir, "minio")
	p := s.newProcess("minio", bin, "server", "--quiet",
		"--address", hostPort(s.ports.minio), "--console-address", hostPort(s.ports.minioConsole),
		"--certs-dir", filepath.Join(dir, "certs"), // never ~/.minio
		filepath.Join(dir, "data"))
	p.env = append(p.env, "MINIO_ROOT_USER="+s.s3Access, "MINIO_ROOT_PASSWORD="+s.s3Secret,
		"MINIO_UPDATE=off", "MINIO_BROWSER=off")
	client, err := minio.New(hostPort(s.ports.minio), &minio.Options{Creds: credentials.NewStaticV4(s.s3Access, s.s3Secret, "")})
	if err != nil {
		return fmt.Errorf("privstack: minio client: %w", err)
	}
	live := "http://" + hostPort(s.ports.minio) + "/minio/health/live"
	s.MinIO = &Component{stack: s, proc: p, addr: hostPort(s.ports.minio), within: s.opts.StartTimeout,
		// Ready means the bucket answers; the first start creates it (MinIO may refuse bucket
		// calls for a moment after it reports live, hence inside the polled check).
		ready: func(ctx context.Context) error {
			if err := httpOK(ctx, http.MethodGet, live); err != nil {
				return err
			}
			ok, err := client.BucketExists(ctx, s.s3Bucket)
			if err != nil || ok {
				return err
			}
			return client.MakeBucket(ctx, s.s3Bucket, minio.MakeBucketOptions{})
		}}
	return s.MinIO.start(ctx)
}

// ---------------------------------------------------------------------------------------------
// clamd

// eicar is the EICAR anti-virus test file, split so that this source never looks like it.
const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR` + `-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// startClamd runs Debian's clamd with a private config like scripts/stack.sh's: the only
// signature is the EICAR test file (an .hdb line), so it starts in about a second.
func (s *Stack) startClamd(ctx context.Context) error {
	bin, err := exec.LookPath("clamd")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/clamd"); serr != nil {
			return &unavailableError{component: "clamd", err: errors.New("no clamd binary (apt-get install clamav-daemon, or run `make up` once)")}
		}
		bin = "/usr/sbin/clamd"
	}
	dir := filepath.Join(s.dir, "clamd")
	for _, d := range []string{"db", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("privstack: clamd: %w", err)
		}
	}
	sum := md5.Sum([]byte(eicar))
	hdb := fmt.Sprintf("%s:%d:Eicar-Test-Signature\n", hex.EncodeToString(sum[:]), len(eicar))
	if err := os.WriteFile(filepath.Join(dir, "db", "eicar.hdb"), []byte(hdb), 0o644); err != nil {
		return fmt.Errorf("privstack: clamd: %w", err)
	}
	p := s.newProcess("clamd", bin)
	conf := filepath.Join(dir, "clamd.conf")
	body := fmt.Sprintf(`# Written by privstack for one test (see deploy/dev/clamd.conf.tmpl).
TCPSocket %d
TCPAddr 127.0.0.1
DatabaseDirectory %s
TemporaryDirectory %s
# No LogFile: in the foreground clamd logs to stderr, which privstack writes to its log file.
LogTime yes
Foreground yes
StreamMaxLength 100M
MaxFileSize 100M
MaxScanSize 400M
SelfCheck 0
ConcurrentDatabaseReload no
MaxThreads 4
`, s.ports.clamd, filepath.Join(dir, "db"), filepath.Join(dir, "tmp"))
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		return fmt.Errorf("privstack: clamd: %w", err)
	}
	p.args = []string{"--config-file=" + conf}
	addr := hostPort(s.ports.clamd)
	s.Clamd = &Component{stack: s, proc: p, addr: addr, within: s.opts.StartTimeout,
		ready: func(ctx context.Context) error { return clamdPing(ctx, addr) }}
	return s.Clamd.start(ctx)
}

// clamdPing sends clamd's PING command and expects PONG.
func clamdPing(ctx context.Context, addr string) error {
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte("zPING\x00")); err != nil {
		return err
	}
	reply, err := bufio.NewReader(conn).ReadString(0)
	if err != nil {
		return err
	}
	if r := strings.TrimRight(reply, "\x00\n"); r != "PONG" {
		return fmt.Errorf("clamd PING answered %q, want PONG", r)
	}
	return nil
}

// ---------------------------------------------------------------------------------------------
// mailpit

func (s *Stack) startMailpit(ctx context.Context) error {
	bin, err := toolPath("mailpit")
	if err != nil {
		return err
	}
	dir := filepath.Join(s.dir, "mailpit")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("privstack: mailpit: %w", err)
	}
	// Any credentials, even over plain SMTP, as the dev stack's mailpit takes them.
	s.Mail = mailpitComponent(s.newProcess("mailpit", bin), dir, hostPort(s.ports.smtp), hostPort(s.ports.mailHTTP),
		s.opts.StartTimeout, "--smtp-auth-accept-any", "--smtp-auth-allow-insecure")
	s.Mail.stack = s
	return s.Mail.start(ctx)
}

// mailpitComponent makes p (mailpit, no arguments yet) listen for SMTP on smtpAddr and for its
// UI and API on httpAddr, with its database in dir, then adds the extra flags. Auth flags are
// the caller's: mailpit refuses --smtp-auth-allow-insecure beside --smtp-require-starttls. It is
// ready once the API answers and SMTP accepts a TCP connection: nothing more is checked there,
// since under --smtp-require-tls the SMTP port speaks TLS from the first byte.
func mailpitComponent(p *process, dir, smtpAddr, httpAddr string, within time.Duration, extra ...string) *Component {
	p.args = append([]string{"--smtp", smtpAddr, "--listen", httpAddr,
		"--database", filepath.Join(dir, "mailpit.db"), "--smtp-disable-rdns", "--disable-version-check"}, extra...)
	livez := "http://" + httpAddr + "/livez"
	return &Component{proc: p, addr: smtpAddr, within: within,
		ready: func(ctx context.Context) error {
			if err := httpOK(ctx, http.MethodGet, livez); err != nil {
				return err
			}
			return tcpOpen(ctx, smtpAddr)
		}}
}

// ---------------------------------------------------------------------------------------------
// OIDC issuer and certificates (devstack programs)

func (s *Stack) startOIDC(ctx context.Context, bin string) error {
	dir := filepath.Join(s.dir, "oidc")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("privstack: oidc: %w", err)
	}
	p := s.newProcess("oidc", bin, "-addr", hostPort(s.ports.oidc), "-issuer", s.IssuerURL(),
		"-key-file", filepath.Join(dir, "signing-key.pem"))
	discovery := s.IssuerURL() + "/.well-known/openid-configuration"
	s.OIDC = &Component{stack: s, proc: p, addr: hostPort(s.ports.oidc), within: s.opts.StartTimeout,
		ready: func(ctx context.Context) error { return httpOK(ctx, http.MethodGet, discovery) }}
	return s.OIDC.start(ctx)
}

// writeCerts runs devcerts into the stack's certs folder: a fresh dev CA per stack.
func (s *Stack) writeCerts(ctx context.Context, bin string) error {
	cmd := exec.CommandContext(ctx, bin, "-dir", s.CertsDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("privstack: devcerts -dir %s: %v\n%s", s.CertsDir(), err, out)
	}
	return nil
}

// httpClient never goes through a proxy: everything privstack talks to is on loopback.
var httpClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}

var dialer = &net.Dialer{Timeout: 3 * time.Second}

// httpOK succeeds when a request to url answers 200.
func httpOK(ctx context.Context, method, url string) error {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: status %d", method, url, resp.StatusCode)
	}
	return nil
}
