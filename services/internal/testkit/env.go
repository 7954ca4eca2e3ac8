package testkit

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/securemsg/securemsg/services/internal/testkit/internal/supervisor"
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

// LoadStack reads the stack's addresses from the environment (`source <(scripts/stack.sh env)`
// sets it), falling back to the dev stack's own (the supervisor's DevConfig).
func LoadStack() Stack {
	dev := map[string]string{}
	for _, kv := range supervisor.DevConfig(RepoRoot()).TestEnv() {
		dev[kv[0]] = kv[1]
	}
	get := func(key string) string { return env("SECUREMSG_TEST_"+key, dev["SECUREMSG_TEST_"+key]) }
	return Stack{
		PostgresURL:   get("PG_URL"),
		NATSURL:       get("NATS_URL"),
		VaultAddr:     get("VAULT_ADDR"),
		VaultToken:    get("VAULT_TOKEN"),
		S3Endpoint:    get("S3_ENDPOINT"),
		S3AccessKey:   get("S3_ACCESS_KEY"),
		S3SecretKey:   get("S3_SECRET_KEY"),
		S3Bucket:      get("S3_BUCKET"),
		ClamdAddr:     get("CLAMD_ADDR"),
		SMTPAddr:      get("SMTP_ADDR"),
		MailAPIURL:    get("MAIL_API_URL"),
		OIDCIssuerURL: get("OIDC_ISSUER"),
		CertsDir:      get("CERTS_DIR"),
		StackDir:      get("STACK_DIR"),
		ToolsDir:      get("TOOLS_DIR"),
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
func RepoRoot() string { return supervisor.RepoRoot() }
