package wire_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/adapters/clamd"
	"github.com/securemsg/securemsg/services/internal/platform/auth/authtest"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver/grpctest"
	"github.com/securemsg/securemsg/services/internal/platform/natsx"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

// service is the attachment binary running as a subprocess, so its memory can be measured
// honestly (/proc/<pid>/status), apart from the test's client.
type service struct {
	cmd    *exec.Cmd
	api    attachmentv1.AttachmentServiceClient
	token  string
	prefix string
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// buildService compiles the attachment command into dir.
func buildService(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "attachment")
	cmd := exec.Command("go", "build", "-o", bin, "./services/attachment/cmd/attachment")
	cmd.Dir = testkit.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build attachment: %v\n%s", err, out)
	}
	return bin
}

// startScratchClamd runs a clamd of the test's own with the dev stack's test signatures and a
// stream limit of maxBytes (the stack's is 100 MiB; the 1 GiB test needs more).
func startScratchClamd(t testing.TB, maxBytes int64) string {
	t.Helper()
	bin, err := exec.LookPath("clamd")
	if err != nil {
		bin = "/usr/sbin/clamd"
	}
	db := filepath.Join(testkit.LoadStack().StackDir, "clamd", "db")
	if _, err := os.Stat(bin); err != nil {
		testkit.Unavailable(t, "clamd binary", err)
	}
	if _, err := os.Stat(db); err != nil {
		testkit.Unavailable(t, "clamd test database (make up)", err)
	}
	dir := t.TempDir()
	addr := deadAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	mb := strconv.FormatInt(maxBytes>>20+1, 10) + "M"
	conf := strings.Join([]string{
		"TCPSocket " + port, "TCPAddr 127.0.0.1", "PidFile " + filepath.Join(dir, "clamd.pid"),
		"TemporaryDirectory " + dir, "DatabaseDirectory " + db, "Foreground yes",
		"StreamMaxLength " + mb, "MaxFileSize " + mb, "MaxScanSize " + mb, "SelfCheck 0", "MaxThreads 20",
	}, "\n") + "\n"
	confFile := filepath.Join(dir, "clamd.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config-file="+confFile)
	if err := cmd.Start(); err != nil {
		testkit.Unavailable(t, "clamd", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c := clamd.New(addr)
	testkit.WaitFor(t, 60*time.Second, "scratch clamd answering", func() bool { return c.Ping(context.Background()) == nil })
	return addr
}

// startService runs the binary with its own schema, an embedded NATS, the stack's Postgres,
// Vault and MinIO (under a unique prefix), a scratch clamd, and a stub messaging service.
// extra overrides environment variables.
func startService(t testing.TB, bin string, extra map[string]string) *service {
	t.Helper()
	stack := testkit.LoadStack()
	testkit.RequireTCP(t, "postgres", "127.0.0.1:5432")
	testkit.RequireTCP(t, "minio", stack.S3Endpoint)
	testkit.RequireTCP(t, "vault (transit)", strings.TrimPrefix(stack.VaultAddr, "http://"))
	pki := grpctest.NewPKI(t)
	issuer := authtest.NewIssuer(t)
	stub := startMessagingStub(t)
	nats := testkit.StartNATS(t, nil)
	servicetest.SeedDirectory(t, nats.Connect(t), natsx.DefaultTopology())
	schema := testkit.NewSchema(t, testkit.Postgres(t))
	addr := deadAddr(t)
	s := &service{prefix: testkit.UniqueName(t, "test-attachment-mem-", 60) + "/", logs: &syncBuffer{}}
	env := map[string]string{
		"SECUREMSG_GRPC_ADDR": addr, "SECUREMSG_TLS_CERT_FILE": pki.ServerCertFile, "SECUREMSG_TLS_KEY_FILE": pki.ServerKeyFile,
		"SECUREMSG_TLS_CLIENT_CA_FILE": pki.CAFile,
		"SECUREMSG_OIDC_ISSUER":        issuer.URL, "SECUREMSG_OIDC_AUDIENCE": authtest.Audience,
		"SECUREMSG_POLICY_DIR": filepath.Join(testkit.RepoRoot(), "deploy", "policies"),
		"SECUREMSG_PG_URL":     stack.PostgresURL, "SECUREMSG_ATTACHMENT_PG_SCHEMA": schema,
		"SECUREMSG_NATS_URL":   nats.URL(),
		"SECUREMSG_VAULT_ADDR": stack.VaultAddr, "SECUREMSG_VAULT_TOKEN": stack.VaultToken,
		"SECUREMSG_ATTACHMENT_TRANSIT_KEY": testkit.UniqueName(t, "securemsg-attachment-", 60),
		"SECUREMSG_S3_ENDPOINT":            stack.S3Endpoint, "SECUREMSG_S3_ACCESS_KEY": stack.S3AccessKey,
		"SECUREMSG_S3_SECRET_KEY": stack.S3SecretKey, "SECUREMSG_S3_BUCKET": stack.S3Bucket, "SECUREMSG_S3_PREFIX": s.prefix,
		"SECUREMSG_MESSAGING_ADDR": stub.clientConfig.Addr, "SECUREMSG_MESSAGING_TLS_CERT_FILE": stub.clientConfig.CertFile,
		"SECUREMSG_MESSAGING_TLS_KEY_FILE": stub.clientConfig.KeyFile, "SECUREMSG_MESSAGING_TLS_CA_FILE": stub.clientConfig.CAFile,
		"SECUREMSG_MESSAGING_TLS_SERVER_NAME": stub.clientConfig.ServerName,
		"SECUREMSG_RATE_PER_PRINCIPAL":        "10000", "SECUREMSG_BURST_PER_PRINCIPAL": "10000",
		"SECUREMSG_LOG_LEVEL": "warn",
	}
	if _, ok := extra["SECUREMSG_CLAMD_ADDR"]; !ok {
		env["SECUREMSG_CLAMD_ADDR"] = stack.ClamdAddr
	}
	for k, v := range extra {
		env[k] = v
	}
	s.cmd = exec.Command(bin)
	s.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		s.cmd.Env = append(s.cmd.Env, k+"="+v)
	}
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start attachment: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = s.cmd.Process.Kill()
			<-exited
		}
		emptyPrefix(s.prefix)
		if strings.Contains(s.logs.String(), markerPrefix) {
			t.Errorf("PHI marker text found in the attachment subprocess's logs")
		}
	})
	testkit.WaitFor(t, 60*time.Second, "attachment subprocess listening", func() bool {
		select {
		case <-exited:
			t.Fatalf("attachment exited early:\n%s", s.logs.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close() // only that it answered matters
		}
		return err == nil
	})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(false))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	s.api = attachmentv1.NewAttachmentServiceClient(conn)
	s.token = issuer.Mint(t, servicetest.Patient.Claims(issuer))
	return s
}

func (s *service) ctx(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+s.token)
}

// statusKB reads one "Name: N kB" line of the subprocess's /proc status, in bytes; -1 when the
// process is gone.
func (s *service) statusKB(name string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return -1
			}
			return kb << 10
		}
	}
	return -1
}

// watchPeakAnon samples the subprocess's anonymous resident memory (RssAnon: heap, stacks,
// buffers — what a transfer costs) every 2 ms until the returned function is called, which
// returns the largest sample. The kernel keeps a peak only of the whole RSS (VmHWM), which
// also counts the binary's file-backed pages: shared, reclaimable, and larger with every
// library linked in, so not what a bound on a transfer's memory is about.
func (s *service) watchPeakAnon() (stop func() int64) {
	done := make(chan struct{})
	peak := make(chan int64, 1)
	go func() {
		var highest int64
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			highest = max(highest, s.statusKB("RssAnon"))
			select {
			case <-done:
				peak <- highest
				return
			case <-tick.C:
			}
		}
	}()
	return func() int64 {
		close(done)
		return <-peak
	}
}

// peakRSS reads the subprocess's peak resident set size (VmHWM) in bytes.
func (s *service) peakRSS(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read /proc status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("parse VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// memStatus returns the subprocess's memory lines of /proc/<pid>/status, for the log.
func (s *service) memStatus(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		for _, k := range []string{"VmHWM:", "VmRSS:", "RssAnon:", "RssFile:"} {
			if strings.HasPrefix(line, k) {
				out = append(out, strings.Join(strings.Fields(line), " "))
			}
		}
	}
	return strings.Join(out, ", ")
}

// resetPeakRSS starts a new peak measurement (Linux: "5" to clear_refs resets VmHWM).
func (s *service) resetPeakRSS(t testing.TB) {
	t.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", s.cmd.Process.Pid), []byte("5"), 0); err != nil {
		t.Fatalf("reset VmHWM: %v", err)
	}
}

// emptyPrefix removes the objects under prefix in the stack's bucket.
func emptyPrefix(prefix string) {
	st := testkit.LoadStack()
	cfg := wireS3(st, prefix)
	store, err := newStoreNoTest(cfg)
	if err != nil {
		return
	}
	e := &env{store: store}
	e.emptyStore(nil)
}
