package supervisor

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Services lists the suite's services in start order.
var Services = []string{"messaging", "attachment", "notification", "audit"}

// Dependencies lists the dependency components a private stack may leave out.
var Dependencies = []string{"postgres", "nats", "vault", "minio", "clamd", "mailpit"}

// Ports is where every component of a stack listens, on 127.0.0.1. A zero port is not opened
// (NATSMonitor and Portal in private stacks).
type Ports struct {
	Postgres, NATS, NATSMonitor, Vault, MinIO, MinIOConsole, Clamd, SMTP, MailHTTP, OIDC int
	// Portal is the reference portal's server (devstack/cmd/portal), which only the dev stack
	// runs; its origin is the one the dev issuer registers the portal's redirect URI under.
	Portal int
	// GRPC, HTTP and Metrics are each service's gRPC listener, browser edge (Connect,
	// gRPC-Web, REST) and Prometheus endpoint.
	GRPC, HTTP, Metrics map[string]int
}

// DevPorts are the dev stack's fixed ports, the ones the README, `make status` and the tests'
// defaults (testkit.LoadStack) name. NATS is on 4223: the machine's Debian nats-server on 4222
// (2.9) lacks what the suite relies on (consumers with several filter subjects, per-server
// sync_interval always). Prometheus /metrics and the browser edge sit beside each gRPC port:
// 7001 -> 9101 and 8441, ... The portal is on 8080, where the dev issuer's default redirect URI
// for it points (oidcdev.DefaultPortalRedirectURI).
func DevPorts() Ports {
	p := Ports{Postgres: 5432, NATS: 4223, NATSMonitor: 8223, Vault: 8200, MinIO: 9000, MinIOConsole: 9001,
		Clamd: 3310, SMTP: 1025, MailHTTP: 8025, OIDC: 8400, Portal: 8080,
		GRPC: map[string]int{}, HTTP: map[string]int{}, Metrics: map[string]int{}}
	for i, svc := range Services {
		p.GRPC[svc], p.HTTP[svc], p.Metrics[svc] = 7001+i, 8441+i, 9101+i
	}
	return p
}

// RandomPorts picks a free port for every component (no NATS monitor, no portal: private stacks
// run neither). A port is only picked, not held: a component that loses it to another process
// fails to start with a clear error.
func RandomPorts() (Ports, error) {
	p := Ports{GRPC: map[string]int{}, HTTP: map[string]int{}, Metrics: map[string]int{}}
	seen := map[int]bool{}
	var err error
	pick := func() int {
		for err == nil {
			port, perr := FreePort()
			if perr != nil {
				err = perr
				return 0
			}
			if !seen[port] { // two picks may coincide
				seen[port] = true
				return port
			}
		}
		return 0
	}
	for _, t := range []*int{&p.Postgres, &p.NATS, &p.Vault, &p.MinIO, &p.MinIOConsole, &p.Clamd, &p.SMTP, &p.MailHTTP, &p.OIDC} {
		*t = pick()
	}
	for _, svc := range Services {
		p.GRPC[svc], p.HTTP[svc], p.Metrics[svc] = pick(), pick(), pick()
	}
	return p, err
}

// Config describes one stack.
type Config struct {
	// Detached is the dev stack (`make up`): fixed ports, processes that outlive the supervisor
	// and are found again through their records, the machine's own Postgres, real Vault where a
	// vault binary exists, clamd installed with apt-get when missing, and the reference portal
	// (built with npm, on Ports.Portal) after the services. Otherwise the stack is a
	// test's private one: children of the test binary, their own Postgres cluster, the Transit
	// dev server, everything gone when the test ends.
	Detached bool
	Root     string // the repository (go.work) root
	Dir      string // state: one folder per component, with its log <name>/<name>.log
	Ports    Ports
	// Database is the services' database; the dev stack's is per checkout (DevConfig).
	Database                           string
	S3AccessKey, S3SecretKey, S3Bucket string
	VaultToken                         string
	NATSMaxStore                       int64    // JetStream file storage cap in bytes (0: 4 GiB)
	Services                           []string // services to run, in Services order
	Without                            []string // dependencies not to run (private stacks); "portal" in the dev stack
	Env                                map[string]string
	ServiceEnv                         map[string]map[string]string
	StartTimeout                       time.Duration
	Logf                               func(format string, args ...any) // progress lines; nil: quiet
	BuildDir                           string                           // where binaries go; "": one folder per process
	// Traces runs the dev stack's Jaeger and has the services export their spans to it
	// (SECUREMSG_TRACES=1 make up); dev stack only.
	Traces bool
}

// The dev stack's well-known MinIO credentials, on loopback only (`make status` prints them).
const devS3AccessKey, devS3SecretKey = "securemsg-dev", "securemsg-dev-secret" //nolint:gosec // G101: dev-only, documented

// DevConfig is the dev stack of the checkout at root, its state in root/.tmp/stack.
func DevConfig(root string) Config {
	return Config{
		Detached: true, Root: root, Dir: filepath.Join(root, ".tmp", "stack"), Ports: DevPorts(),
		Database:    DevDatabase(root),
		S3AccessKey: devS3AccessKey, S3SecretKey: devS3SecretKey, S3Bucket: "securemsg-attachments",
		VaultToken: "root", Services: Services, StartTimeout: 60 * time.Second,
		BuildDir: filepath.Join(root, ".tmp", "stack", "bin"),
	}
}

// PrivateConfig is a private stack on free ports with its state in dir.
func PrivateConfig(root, dir string) (Config, error) {
	ports, err := RandomPorts()
	return Config{
		Root: root, Dir: dir, Ports: ports, Database: "securemsg",
		S3AccessKey: "privstack", S3SecretKey: "privstack-" + RandomHex(12), S3Bucket: "securemsg-attachments",
		VaultToken: "root-" + RandomHex(8), StartTimeout: 60 * time.Second,
	}, err
}

// DevDatabase is the dev stack's database: one per checkout, because the machine's Postgres is
// shared and each checkout's stack has its own audit signing key, so two checkouts writing one
// audit log would sign each other's history.
func DevDatabase(root string) string {
	sum := sha256.Sum256([]byte(root))
	return "securemsg_dev_" + hex.EncodeToString(sum[:])[:8]
}

// HostPort formats a loopback address.
func HostPort(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// PostgresURL is database name on the stack's Postgres, as the services use it.
func (c Config) PostgresURL(name string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", HostPort(c.Ports.Postgres), name)
}

// NATSURL is the NATS client URL.
func (c Config) NATSURL() string { return "nats://" + HostPort(c.Ports.NATS) }

// VaultAddr is the Vault (Transit) URL.
func (c Config) VaultAddr() string { return "http://" + HostPort(c.Ports.Vault) }

// IssuerURL is the dev OIDC issuer.
func (c Config) IssuerURL() string { return "http://" + HostPort(c.Ports.OIDC) }

// PortalURL is the reference portal's origin ("" when the stack runs no portal).
func (c Config) PortalURL() string {
	if c.Ports.Portal == 0 {
		return ""
	}
	return "http://" + HostPort(c.Ports.Portal)
}

// MailAPIURL is mailpit's HTTP API base URL.
func (c Config) MailAPIURL() string { return "http://" + HostPort(c.Ports.MailHTTP) }

// CertsDir holds the stack's dev CA (ca.pem) and the service and client certificates.
func (c Config) CertsDir() string { return filepath.Join(c.Dir, "certs") }

// ToolsDir holds the pinned tools (scripts/lib/tools.sh).
func (c Config) ToolsDir() string { return filepath.Join(c.Root, ".tmp", "bin") }

// TestEnv is the SECUREMSG_TEST_* environment that points the tests at this stack
// (testkit.LoadStack reads it), in a stable order.
func (c Config) TestEnv() [][2]string {
	env := [][2]string{
		{"PG_URL", c.PostgresURL(c.Database)},
		{"NATS_URL", c.NATSURL()},
		{"VAULT_ADDR", c.VaultAddr()},
		{"VAULT_TOKEN", c.VaultToken},
		{"S3_ENDPOINT", HostPort(c.Ports.MinIO)},
		{"S3_ACCESS_KEY", c.S3AccessKey},
		{"S3_SECRET_KEY", c.S3SecretKey},
		{"S3_BUCKET", c.S3Bucket},
		{"CLAMD_ADDR", HostPort(c.Ports.Clamd)},
		{"SMTP_ADDR", HostPort(c.Ports.SMTP)},
		{"MAIL_API_URL", c.MailAPIURL()},
		{"OIDC_ISSUER", c.IssuerURL()},
		{"CERTS_DIR", c.CertsDir()},
		{"STACK_DIR", c.Dir},
		{"TOOLS_DIR", c.ToolsDir()},
	}
	for _, svc := range Services {
		env = append(env, [2]string{strings.ToUpper(svc) + "_ADDR", HostPort(c.Ports.GRPC[svc])})
	}
	for i := range env {
		env[i][0] = "SECUREMSG_TEST_" + env[i][0]
	}
	return env
}

// FreePort returns a port nothing listens on at the moment.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer func() { _ = l.Close() }() // only the port number was wanted
	return l.Addr().(*net.TCPAddr).Port, nil
}

// RandomHex returns n random bytes, hex-encoded.
func RandomHex(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(buf)
}

// RepoRoot finds the repository root by walking up from the working directory to go.work.
func RepoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return "."
	}
	for d := dir; ; {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d
		}
		parent := filepath.Dir(d)
		if parent == d {
			return dir
		}
		d = parent
	}
}
