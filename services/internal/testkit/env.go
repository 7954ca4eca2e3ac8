package testkit

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// Stack describes where the dev stack's dependencies listen. Zero values never occur: every
// field falls back to the address `make up` uses.
type Stack struct {
	PostgresURL   string // SECUREMSG_TEST_PG_URL
	NATSURL       string // SECUREMSG_TEST_NATS_URL
	VaultAddr     string // SECUREMSG_TEST_VAULT_ADDR
	VaultToken    string // SECUREMSG_TEST_VAULT_TOKEN
	S3Endpoint    string // SECUREMSG_TEST_S3_ENDPOINT (host:port)
	S3AccessKey   string // SECUREMSG_TEST_S3_ACCESS_KEY
	S3SecretKey   string // SECUREMSG_TEST_S3_SECRET_KEY
	S3Bucket      string // SECUREMSG_TEST_S3_BUCKET
	ClamdAddr     string // SECUREMSG_TEST_CLAMD_ADDR (host:port)
	SMTPAddr      string // SECUREMSG_TEST_SMTP_ADDR (host:port)
	MailAPIURL    string // SECUREMSG_TEST_MAIL_API_URL
	OIDCIssuerURL string // SECUREMSG_TEST_OIDC_ISSUER
	CertsDir      string // SECUREMSG_TEST_CERTS_DIR: the dev CA and service certificates
	StackDir      string // SECUREMSG_TEST_STACK_DIR: the dev stack's state folder (.tmp/stack)
	ToolsDir      string // SECUREMSG_TEST_TOOLS_DIR: pinned tool binaries (.tmp/bin)
}

// LoadStack reads the stack's addresses from the environment.
func LoadStack() Stack {
	root := RepoRoot()
	return Stack{
		PostgresURL:   env("SECUREMSG_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/securemsg?sslmode=disable"),
		NATSURL:       env("SECUREMSG_TEST_NATS_URL", "nats://127.0.0.1:4223"),
		VaultAddr:     env("SECUREMSG_TEST_VAULT_ADDR", "http://127.0.0.1:8200"),
		VaultToken:    env("SECUREMSG_TEST_VAULT_TOKEN", "root"),
		S3Endpoint:    env("SECUREMSG_TEST_S3_ENDPOINT", "127.0.0.1:9000"),
		S3AccessKey:   env("SECUREMSG_TEST_S3_ACCESS_KEY", "securemsg-dev"),
		S3SecretKey:   env("SECUREMSG_TEST_S3_SECRET_KEY", "securemsg-dev-secret"),
		S3Bucket:      env("SECUREMSG_TEST_S3_BUCKET", "securemsg-attachments"),
		ClamdAddr:     env("SECUREMSG_TEST_CLAMD_ADDR", "127.0.0.1:3310"),
		SMTPAddr:      env("SECUREMSG_TEST_SMTP_ADDR", "127.0.0.1:1025"),
		MailAPIURL:    env("SECUREMSG_TEST_MAIL_API_URL", "http://127.0.0.1:8025"),
		OIDCIssuerURL: env("SECUREMSG_TEST_OIDC_ISSUER", "http://127.0.0.1:8400"),
		CertsDir:      env("SECUREMSG_TEST_CERTS_DIR", root+"/.tmp/stack/certs"),
		StackDir:      env("SECUREMSG_TEST_STACK_DIR", root+"/.tmp/stack"),
		ToolsDir:      env("SECUREMSG_TEST_TOOLS_DIR", root+"/.tmp/bin"),
	}
}

func env(key, fallback string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return fallback
}

// InCI reports whether the tests run under CI (CI=true), where missing dependencies fail.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// Unavailable ends the test because a dependency is missing: a failure in CI, a skip elsewhere.
func Unavailable(tb testing.TB, dependency string, err error) {
	tb.Helper()
	if InCI() {
		tb.Fatalf("%s is not available (CI=true, so this fails instead of skipping): %v", dependency, err)
	}
	tb.Skipf("%s is not available (run `make up`): %v", dependency, err)
}

// RequireTCP ends the test (see Unavailable) unless something accepts connections at addr.
func RequireTCP(tb testing.TB, dependency, addr string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		Unavailable(tb, dependency, err)
		return
	}
	_ = conn.Close()
}

// RepoRoot finds the repository root by walking up from the working directory to go.work.
func RepoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return "."
	}
	for d := dir; ; {
		if _, err := os.Stat(d + "/go.work"); err == nil {
			return d
		}
		parent := d[:max(strings.LastIndex(d, "/"), 0)]
		if parent == "" || parent == d {
			return dir
		}
		d = parent
	}
}
