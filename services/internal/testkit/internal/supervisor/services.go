package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Service is one service binary of a stack, run as a process of its own. Like Component's, its
// methods return errors, so they may be called from any goroutine.
type Service struct {
	*Component
	stack *Stack
}

func servicePkg(name string) string { return "./services/" + name + "/cmd/" + name }

func (s *Stack) newService(name string) *Service {
	v := &Service{stack: s}
	v.Component = s.component(name, s.cfg.Ports.GRPC[name], v.serving)
	v.proc.stopWait = 30 * time.Second // SECUREMSG_SHUTDOWN_TIMEOUT (20s) plus margin
	env := s.ServiceEnv(name)
	v.proc.settings = slices.Clone(env)
	if name == "messaging" {
		// The directory seed is read at start only: a changed file (a new dev user, a pool's
		// settings) restarts messaging on the next `up`, as a changed variable would.
		v.proc.settings = append(v.proc.settings, "directory-bootstrap:"+fileDigest(filepath.Join(s.cfg.Root, "devstack", "directory-bootstrap.json")))
	}
	// Inherited SECUREMSG_* variables are dropped: a stray SECUREMSG_PG_URL in the caller's
	// environment must never point a stack's service at another stack.
	v.proc.env = slices.DeleteFunc(slices.Clone(v.proc.env), func(kv string) bool { return strings.HasPrefix(kv, "SECUREMSG_") })
	v.proc.env = append(v.proc.env, env...)
	v.prepare = func(ctx context.Context) error {
		// The service's state (audit's signing key) lives beside its log.
		if err := os.MkdirAll(s.statePath(name), 0o700); err != nil {
			return err
		}
		if s.cfg.Detached {
			if err := s.writeEnvFile(name, env); err != nil {
				return err
			}
		}
		var err error
		v.proc.path, err = s.binary(servicePkg(name))
		return err
	}
	return v
}

// fileDigest is the sha256 of a file's bytes, or "missing" when it cannot be read (the service
// itself then reports why).
func fileDigest(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "missing"
	}
	sum := sha256.Sum256(b)
	return base64.RawStdEncoding.EncodeToString(sum[:])
}

// DevRateRedisURL is where the dev stack's services keep their shared rate-limit buckets: the
// machine's Redis (a system service, like its Postgres; the stack never starts one), on a
// database of the dev stack's own so tests, which use others, never see its buckets. Private
// stacks leave SECUREMSG_RATE_REDIS_URL unset: each process limits on its own.
const DevRateRedisURL = "redis://127.0.0.1:6379/7"

// ServiceEnv is the whole configuration of svc in this stack (services read SECUREMSG_* only):
// where its dependencies and peers are and what only it needs (least privilege, even in dev).
// Later entries win (os/exec keeps the last value of a duplicated key), so Config.Env and
// Config.ServiceEnv override the rest.
func (s *Stack) ServiceEnv(svc string) []string {
	var env []string
	set := func(k, v string) { env = append(env, "SECUREMSG_"+k+"="+v) }
	certs := s.cfg.CertsDir()
	set("GRPC_ADDR", HostPort(s.cfg.Ports.GRPC[svc]))
	set("TLS_CERT_FILE", filepath.Join(certs, svc+".pem"))
	set("TLS_KEY_FILE", filepath.Join(certs, svc+"-key.pem"))
	set("TLS_CLIENT_CA_FILE", filepath.Join(certs, "ca.pem"))
	set("PG_URL", s.cfg.PostgresURL(s.cfg.Database))
	set("NATS_URL", s.cfg.NATSURL())
	if s.without("vault") {
		set("VAULT_ADDR", "")
		set("VAULT_TOKEN", "")
	} else {
		set("VAULT_ADDR", s.cfg.VaultAddr())
		set("VAULT_TOKEN", s.cfg.VaultToken)
	}
	set("OIDC_ISSUER", s.cfg.IssuerURL())
	set("OIDC_AUDIENCE", "securemsg")
	set("DEV", "true")
	set("POLICY_DIR", filepath.Join(s.cfg.Root, "deploy", "policies"))
	set("METRICS_ADDR", HostPort(s.cfg.Ports.Metrics[svc]))
	// The browser edge, for the reference portal on this machine: Vite's dev server (its
	// default port) and, where the stack runs it, the built portal's own server.
	set("HTTP_ADDR", HostPort(s.cfg.Ports.HTTP[svc]))
	origins := "http://localhost:5173,http://127.0.0.1:5173"
	if portal := s.cfg.PortalURL(); portal != "" {
		origins += "," + portal
	}
	set("HTTP_ALLOWED_ORIGINS", origins)
	if !s.cfg.Detached {
		// Tests stop services often; the 2s default drain only makes them slower.
		set("SHUTDOWN_DRAIN", "100ms")
	} else {
		set("RATE_REDIS_URL", DevRateRedisURL)
	}
	switch svc {
	case "messaging":
		// Registers the portal, the pools and the seeded users of devstack/cmd/oidcdev.
		set("DIRECTORY_BOOTSTRAP", filepath.Join(s.cfg.Root, "devstack", "directory-bootstrap.json"))
	case "attachment":
		set("S3_ENDPOINT", HostPort(s.cfg.Ports.MinIO))
		set("S3_ACCESS_KEY", s.cfg.S3AccessKey)
		set("S3_SECRET_KEY", s.cfg.S3SecretKey)
		set("S3_BUCKET", s.cfg.S3Bucket)
		set("CLAMD_ADDR", HostPort(s.cfg.Ports.Clamd))
	case "notification":
		set("SMTP_ADDR", HostPort(s.cfg.Ports.SMTP))
		set("SMTP_TLS", "none") // mailpit on loopback offers no STARTTLS; production uses it (the default)
		if s.cfg.Detached {
			set("SMTP_FROM", "no-reply@securemsg.local")
			set("NOTIFY_ORGANISATION_NAME", "Securemsg Demo Clinic")
			set("NOTIFY_PORTAL_LINK", "https://portal.securemsg.local/")
			set("NOTIFY_RETRY_BASE", "2s")
		} else {
			set("NOTIFY_RETRY_BASE", "1s")
		}
	case "audit":
		set("AUDIT_SIGNING_KEY_FILE", s.statePath("audit", "signing-key.pem"))
		if s.cfg.Detached {
			set("AUDIT_CHECKPOINT_INTERVAL", "5s")
		}
	}
	// How to reach every peer over mTLS, presenting this service's own certificate
	// (config.Client: SECUREMSG_<PEER>_ADDR, _TLS_CERT_FILE, _TLS_KEY_FILE, _TLS_CA_FILE). Peers
	// that are not started still get an address (where nothing listens), so a service never
	// falls back to the dev stack's default ports.
	for _, peer := range Services {
		if peer == svc {
			continue
		}
		prefix := strings.ToUpper(peer) + "_"
		set(prefix+"ADDR", HostPort(s.cfg.Ports.GRPC[peer]))
		set(prefix+"TLS_CERT_FILE", filepath.Join(certs, svc+".pem"))
		set(prefix+"TLS_KEY_FILE", filepath.Join(certs, svc+"-key.pem"))
		set(prefix+"TLS_CA_FILE", filepath.Join(certs, "ca.pem"))
	}
	if s.cfg.Traces {
		// The standard variables, as in any deployment: the services' tracing package reads them.
		env = append(env, "OTEL_EXPORTER_OTLP_ENDPOINT="+DevJaegerAddrs.OTLPEndpoint(), "OTEL_BSP_SCHEDULE_DELAY=500")
	}
	for _, extra := range []map[string]string{s.cfg.Env, s.cfg.ServiceEnv[svc]} {
		keys := make([]string, 0, len(extra))
		for k := range extra {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			env = append(env, k+"="+extra[k])
		}
	}
	return env
}

// writeEnvFile writes the dev stack's <dir>/<svc>.env (the README points there): the service's
// settings, in a form `set -a; source` reads.
func (s *Stack) writeEnvFile(svc string, env []string) error {
	var b strings.Builder
	b.WriteString("# Written by `make up` (services/internal/testkit/internal/supervisor); edits are overwritten.\n")
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&b, "%s='%s'\n", k, strings.ReplaceAll(v, "'", `'\''`))
	}
	return os.WriteFile(filepath.Join(s.cfg.Dir, svc+".env"), []byte(b.String()), 0o600)
}

// HTTPAddr is the service's browser edge host:port (https://HTTPAddr: Connect, gRPC-Web, REST).
func (v *Service) HTTPAddr() string { return HostPort(v.stack.cfg.Ports.HTTP[v.name]) }

// MetricsAddr is the service's Prometheus endpoint host:port (http://MetricsAddr/metrics).
func (v *Service) MetricsAddr() string { return HostPort(v.stack.cfg.Ports.Metrics[v.name]) }

// Exited is closed when the current run of the service exits (nil while stopped): a fault test
// can select on it to catch a service that dies when a dependency goes away.
func (v *Service) Exited() <-chan struct{} { return v.proc.exited() }

// SetEnv overrides SECUREMSG_* settings (full variable names) of a stopped service for its next
// Start, e.g. to point it at a restored database or bucket in a backup drill. Later entries of
// a process environment win, so the overrides are appended.
func (v *Service) SetEnv(env map[string]string) error {
	v.proc.mu.Lock()
	defer v.proc.mu.Unlock()
	if v.proc.cmd != nil {
		return fmt.Errorf("%s: SetEnv on a running service (stop it first)", v.name)
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v.proc.env = append(v.proc.env, k+"="+env[k])
	}
	return nil
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
// service's own certificate. Each call dials afresh, so a just-restarted service is seen at once
// rather than after a reconnect backoff.
func (v *Service) Health(ctx context.Context) (healthpb.HealthCheckResponse_ServingStatus, error) {
	cfg, err := v.stack.TLSConfig(v.name, v.name)
	if err != nil {
		return 0, err
	}
	conn, err := grpc.NewClient(v.Addr(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return 0, err
	}
	defer func() { _ = conn.Close() }() // a probe connection; its close error says nothing
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
		return 0, fmt.Errorf("%s is not running", v.name)
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", v.name, err)
	}
	n, err := statusField(data, field)
	if err != nil {
		return 0, fmt.Errorf("%s: /proc/%d/status: %w", v.name, pid, err)
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
		return 0, fmt.Errorf("%s is not running", v.name)
	}
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", v.name, err)
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
		return 0, fmt.Errorf("%s metrics: %w", v.name, err)
	}
	defer func() { _ = resp.Body.Close() }() // read-only: the body was read
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s metrics: status %d", v.name, resp.StatusCode)
	}
	n, err := metricValue(resp.Body, "go_goroutines")
	if err != nil {
		return 0, fmt.Errorf("%s metrics: %w", v.name, err)
	}
	return int(n), nil
}

// metricValue finds an unlabelled sample in Prometheus text format.
func metricValue(r io.Reader, name string) (float64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
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

// TLSConfig trusts the stack's dev CA for server svc and, when identity is not empty, presents
// identity's certificate (a service name, or a client identity the dev CA issues).
func (s *Stack) TLSConfig(svc, identity string) (*tls.Config, error) {
	caFile := filepath.Join(s.cfg.CertsDir(), "ca.pem")
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("dev CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("dev CA %s holds no certificate", caFile)
	}
	cfg := &tls.Config{RootCAs: roots, ServerName: svc, MinVersion: tls.VersionTLS12}
	if identity != "" {
		pair, err := tls.LoadX509KeyPair(filepath.Join(s.cfg.CertsDir(), identity+".pem"), filepath.Join(s.cfg.CertsDir(), identity+"-key.pem"))
		if err != nil {
			return nil, fmt.Errorf("certificate of %s: %w", identity, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// MachineToken gets a client-credentials token for one of the issuer's machine clients
// ("securemsg-scim": the identity provider's provisioning client), authenticating with the
// secret the issuer keeps in the stack's state, as the identity provider would.
func (s *Stack) MachineToken(ctx context.Context, clientID string) (string, error) {
	secret, err := os.ReadFile(s.statePath("oidc", "clients", clientID+".secret"))
	if err != nil {
		return "", fmt.Errorf("secret of %s: %w", clientID, err)
	}
	tok, err := s.postToken(ctx, url.Values{"grant_type": {"client_credentials"}}, func(req *http.Request) {
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(strings.TrimSpace(string(secret))))
	})
	if err != nil {
		return "", fmt.Errorf("client credentials for %s: %w", clientID, err)
	}
	return tok.AccessToken, nil
}

// issuedTokens is the issuer's answer at its token endpoint.
type issuedTokens struct {
	AccessToken string `json:"access_token"`
	IDToken     string `json:"id_token"`
}

// postToken posts form to the issuer's token endpoint (authenticate adds the client's
// credentials, if it has any) and reads the tokens of the answer.
func (s *Stack) postToken(ctx context.Context, form url.Values, authenticate func(*http.Request)) (issuedTokens, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.IssuerURL()+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		return issuedTokens{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if authenticate != nil {
		authenticate(req)
	}
	body, code, err := httpDo(req)
	if err != nil || code != http.StatusOK {
		// The body of a refusal is an OAuth error code and description, never a secret.
		return issuedTokens{}, fmt.Errorf("token endpoint status %d %v: %s", code, err, body)
	}
	var tok issuedTokens
	if err := json.Unmarshal([]byte(body), &tok); err != nil || tok.AccessToken == "" {
		return issuedTokens{}, fmt.Errorf("no access token in the token endpoint's answer")
	}
	return tok, nil
}

// PortalClientID and PortalRedirectURI are the browser client the dev issuer registers for the
// reference portal, and where it takes its codes.
const (
	PortalClientID    = "portal-web"
	PortalRedirectURI = "http://127.0.0.1:8080/callback"
)

// SignIn signs a seeded dev user in the way a portal in the browser does: the authorization code
// flow with a fresh PKCE verifier, the persona picked at the issuer's /authorize, the code
// exchanged at its /token. It returns the access token.
func (s *Stack) SignIn(ctx context.Context, user, scope string) (string, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	verifier := base64.RawURLEncoding.EncodeToString(raw)
	sum := sha256.Sum256([]byte(verifier))
	state := base64.RawURLEncoding.EncodeToString(sum[:8])
	form := url.Values{
		"response_type": {"code"}, "client_id": {PortalClientID}, "redirect_uri": {PortalRedirectURI},
		"scope": {"openid " + scope}, "state": {state}, "user": {user},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.IssuerURL()+"/authorize", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	// The redirect goes to the portal, which is not running here: read it instead of following.
	noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Do(req)
	if err != nil {
		return "", fmt.Errorf("sign in %s: %w", user, err)
	}
	_ = resp.Body.Close() // the redirect's body is not needed
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		return "", fmt.Errorf("sign in %s: /authorize answered %d", user, resp.StatusCode)
	}
	back := loc.Query()
	if back.Get("state") != state || back.Get("code") == "" {
		return "", fmt.Errorf("sign in %s: /authorize redirected with error %q", user, back.Get("error"))
	}
	exchange := url.Values{
		"grant_type": {"authorization_code"}, "client_id": {PortalClientID}, "redirect_uri": {PortalRedirectURI},
		"code": {back.Get("code")}, "code_verifier": {verifier},
	}
	tok, err := s.postToken(ctx, exchange, nil)
	if err != nil {
		return "", fmt.Errorf("sign in %s: code exchange: %w", user, err)
	}
	if tok.IDToken == "" {
		return "", fmt.Errorf("sign in %s: no ID token in the answer", user)
	}
	return tok.AccessToken, nil
}

// Token mints an access token for a seeded dev user (patient, proxy, teen, clinician,
// triage, staff-nomfa, auditor, admin) from the stack's issuer, with the issuer's extra parameters
// (ttl, auth_age, scope; see devstack/internal/oidcdev).
func (s *Stack) Token(ctx context.Context, user string, params url.Values) (string, error) {
	q := url.Values{}
	for k, v := range params {
		q[k] = v
	}
	q.Set("user", user)
	q.Set("format", "raw")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.IssuerURL()+"/dev/token?"+q.Encode(), nil)
	if err != nil {
		return "", err
	}
	body, code, err := httpDo(req)
	if err != nil || code != http.StatusOK {
		// The body of a refusal names the user only, never token material.
		return "", fmt.Errorf("mint token for %s: status %d %v: %s", user, code, err, body)
	}
	return body, nil
}
