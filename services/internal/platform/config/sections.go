package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"
)

// Server configures a service's gRPC listener (package grpcserver) and its metrics endpoint.
//
// TLS is not optional: every hop is encrypted (COMPLIANCE.md #7), so there is no plaintext mode.
// Setting TLSClientCAFile verifies client certificates that are presented; RequireClientCert
// additionally refuses callers without one (mTLS, for services only other services call).
type Server struct {
	// GRPCAddr is the host:port the gRPC server listens on.
	GRPCAddr string `env:"GRPC_ADDR" envDefault:"127.0.0.1:7000"`
	// TLSCertFile and TLSKeyFile hold the server's PEM certificate chain and key. The files are
	// re-read when they change, so rotated certificates need no restart.
	TLSCertFile string `env:"TLS_CERT_FILE"`
	TLSKeyFile  string `env:"TLS_KEY_FILE"`
	// TLSClientCAFile, when set, holds the PEM CA bundle client certificates are verified against.
	TLSClientCAFile string `env:"TLS_CLIENT_CA_FILE"`
	// RequireClientCert refuses connections without a valid client certificate (mTLS). It needs
	// TLSClientCAFile.
	RequireClientCert bool `env:"TLS_REQUIRE_CLIENT_CERT"`
	// Dev turns on developer conveniences that must stay off in production: gRPC reflection.
	Dev bool `env:"DEV"`
	// ShutdownTimeout bounds graceful shutdown; when it passes, open RPCs are cut off.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`
	// ShutdownDrain is how long the server keeps serving after reporting NOT_SERVING, so load
	// balancers and clients watching health stop sending new work before GracefulStop.
	ShutdownDrain time.Duration `env:"SHUTDOWN_DRAIN" envDefault:"2s"`
	// MetricsAddr, when set, serves Prometheus metrics over HTTP at /metrics on this host:port.
	MetricsAddr string `env:"METRICS_ADDR"`
	// HealthAddr, when set, serves only grpc.health.v1 in plaintext on this host:port, for
	// probes that cannot speak TLS (Kubernetes' native gRPC probes). It carries no data: the
	// API itself is served only over TLS on GRPCAddr.
	HealthAddr string `env:"HEALTH_ADDR"`
	// MaxRecvMsgBytes caps one received message; attachments stream in chunks well below it.
	MaxRecvMsgBytes int `env:"GRPC_MAX_RECV_BYTES" envDefault:"4194304"`
	// MaxConcurrentStreams caps concurrent streams per HTTP/2 connection; it also bounds the work
	// an HTTP/2 rapid-reset flood can start on one connection.
	MaxConcurrentStreams uint32 `env:"GRPC_MAX_CONCURRENT_STREAMS" envDefault:"128"`

	// HTTPAddr, when set, serves the browser surface (package httpedge: Connect, gRPC-Web and
	// REST over HTTP/1.1 and HTTP/2) on this host:port, with the same certificate as GRPCAddr
	// and never a client certificate. Unset, the service has no HTTP surface. It is a listener
	// of its own because GRPCAddr may require client certificates (service mTLS), which
	// browsers never present, and so that it gets its own ingress and network policy.
	HTTPAddr string `env:"HTTP_ADDR"`
	// HTTPAllowedOrigins are the browser origins ("https://portal.example.org") that may call
	// the HTTP surface cross-origin (CORS). Exact origins only: no wildcard, no path; http only
	// for a loopback host (a portal's dev server). Empty: no cross-origin browser access.
	HTTPAllowedOrigins []string `env:"HTTP_ALLOWED_ORIGINS" envSeparator:","`

	// TrustedProxies are the CIDRs of the reverse proxies (the ingress) in front of the service.
	// Only when the TCP peer is in one of them is the client's address taken from
	// TrustedProxyHeader — the rightmost address in it that is not itself a trusted proxy —
	// and used by the IP lists, the rate limits, the access log and the audit source_ip.
	// Empty: the TCP peer is the client and forwarding headers are ignored.
	TrustedProxies []string `env:"TRUSTED_PROXIES" envSeparator:","`
	// TrustedProxyHeader is the one header the trusted proxies maintain: X-Forwarded-For or
	// Forwarded (RFC 7239). Only one is read: a proxy that appends to one passes the other
	// through as the client wrote it, so reading both would let a client choose its address.
	TrustedProxyHeader string `env:"TRUSTED_PROXY_HEADER" envDefault:"X-Forwarded-For"`
}

// Validate reports every problem with the server settings.
func (s Server) Validate() error {
	var p problems
	checkHostPort(&p, "SECUREMSG_GRPC_ADDR", s.GRPCAddr, true)
	checkFile(&p, "SECUREMSG_TLS_CERT_FILE", s.TLSCertFile, true)
	checkFile(&p, "SECUREMSG_TLS_KEY_FILE", s.TLSKeyFile, true)
	checkFile(&p, "SECUREMSG_TLS_CLIENT_CA_FILE", s.TLSClientCAFile, false)
	if s.RequireClientCert && s.TLSClientCAFile == "" {
		p.addf("SECUREMSG_TLS_REQUIRE_CLIENT_CERT needs SECUREMSG_TLS_CLIENT_CA_FILE")
	}
	if s.ShutdownTimeout <= 0 {
		p.addf("SECUREMSG_SHUTDOWN_TIMEOUT must be positive")
	}
	if s.ShutdownDrain < 0 || s.ShutdownDrain >= s.ShutdownTimeout {
		p.addf("SECUREMSG_SHUTDOWN_DRAIN must be at least 0 and shorter than SECUREMSG_SHUTDOWN_TIMEOUT")
	}
	checkHostPort(&p, "SECUREMSG_METRICS_ADDR", s.MetricsAddr, false)
	checkHostPort(&p, "SECUREMSG_HEALTH_ADDR", s.HealthAddr, false)
	if s.MaxRecvMsgBytes <= 0 {
		p.addf("SECUREMSG_GRPC_MAX_RECV_BYTES must be positive")
	}
	if s.MaxConcurrentStreams == 0 {
		p.addf("SECUREMSG_GRPC_MAX_CONCURRENT_STREAMS must be positive")
	}
	checkHostPort(&p, "SECUREMSG_HTTP_ADDR", s.HTTPAddr, false)
	for _, origin := range s.HTTPAllowedOrigins {
		checkOrigin(&p, "SECUREMSG_HTTP_ALLOWED_ORIGINS", origin)
	}
	checkCIDRs(&p, "SECUREMSG_TRUSTED_PROXIES", s.TrustedProxies)
	if h := http.CanonicalHeaderKey(s.TrustedProxyHeader); h != "X-Forwarded-For" && h != "Forwarded" {
		p.addf("SECUREMSG_TRUSTED_PROXY_HEADER must be X-Forwarded-For or Forwarded, got %q", s.TrustedProxyHeader)
	}
	return p.err()
}

// checkOrigin wants an exact, lower-case browser origin: scheme://host[:port], https unless the
// host is loopback. A wildcard is refused: with credentials allowed, "*" would hand every
// site's scripts the caller's responses.
func checkOrigin(p *problems, name, origin string) {
	u, err := url.Parse(origin)
	switch {
	case strings.Contains(origin, "*"):
		p.addf("%s: %q: wildcards are not allowed; list each origin", name, origin)
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		p.addf("%s: %q is not an origin like https://portal.example.org", name, origin)
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		p.addf("%s: %q must use https for a non-loopback host", name, origin)
	case origin != strings.ToLower(u.Scheme+"://"+u.Host):
		p.addf("%s: %q must be a lower-case origin without path, query or credentials", name, origin)
	}
}

// checkCIDRs reports every entry that is not a CIDR prefix.
func checkCIDRs(p *problems, name string, cidrs []string) {
	for _, cidr := range cidrs {
		if _, err := netip.ParsePrefix(strings.TrimSpace(cidr)); err != nil {
			p.addf("%s: %q is not a CIDR prefix", name, cidr)
		}
	}
}

// Log configures structured logging (package logging).
type Log struct {
	// Level is the minimum level logged: debug, info, warn or error (slog.Level's text form).
	Level slog.Level `env:"LOG_LEVEL" envDefault:"info"`
}

// Postgres configures the connection pool.
type Postgres struct {
	// URL is the connection string (postgres://...). It may carry a password, hence Secret.
	// A non-loopback host must use sslmode=verify-full or verify-ca (TLS on every hop).
	URL Secret `env:"PG_URL" envDefault:"postgres://postgres@127.0.0.1:5432/securemsg?sslmode=disable"`
	// MaxConns caps the pool.
	MaxConns int32 `env:"PG_MAX_CONNS" envDefault:"10"`
}

// Validate reports every problem with the Postgres settings, without echoing the URL.
func (c Postgres) Validate() error {
	var p problems
	switch u, err := url.Parse(c.URL.Reveal()); {
	case c.URL == "":
		p.addf("SECUREMSG_PG_URL must be set")
	case err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql"):
		p.addf("SECUREMSG_PG_URL must be a postgres:// URL")
	case !isLoopback(u.Hostname()):
		if mode := u.Query().Get("sslmode"); mode != "verify-full" && mode != "verify-ca" {
			p.addf("SECUREMSG_PG_URL must set sslmode=verify-full (or verify-ca) for a non-loopback host")
		}
	}
	if c.MaxConns < 1 {
		p.addf("SECUREMSG_PG_MAX_CONNS must be at least 1")
	}
	return p.err()
}

// NATS configures the NATS (JetStream) connection.
type NATS struct {
	// URL is the server URL, or a comma-separated list of them.
	URL string `env:"NATS_URL" envDefault:"nats://127.0.0.1:4222"`
	// CredsFile is an optional NATS credentials file (JWT + nkey seed).
	CredsFile string `env:"NATS_CREDS_FILE"`
	// CACert is an optional PEM CA bundle for the server's TLS certificate.
	CACert string `env:"NATS_CACERT"`
	// StreamReplicas is the replication factor of the JetStream streams the services declare:
	// 1 for a single dev server, 3 in production so a node loss loses no event.
	StreamReplicas int `env:"NATS_STREAM_REPLICAS" envDefault:"1"`
}

// Validate reports every problem with the NATS settings.
func (c NATS) Validate() error {
	var p problems
	if c.StreamReplicas < 1 || c.StreamReplicas > 5 {
		p.addf("SECUREMSG_NATS_STREAM_REPLICAS must be between 1 and 5")
	}
	if c.URL == "" {
		p.addf("SECUREMSG_NATS_URL must be set")
	}
	for u := range strings.SplitSeq(c.URL, ",") {
		if pu, err := url.Parse(strings.TrimSpace(u)); c.URL != "" && (err != nil || pu.Host == "") {
			p.addf("SECUREMSG_NATS_URL must be a list of URLs like nats://host:4222")
			break
		}
	}
	checkFile(&p, "SECUREMSG_NATS_CREDS_FILE", c.CredsFile, false)
	checkFile(&p, "SECUREMSG_NATS_CACERT", c.CACert, false)
	return p.err()
}

// Vault configures the Vault (Transit) client. Exactly one way to log in is set: a Token (dev
// and tests) or a KubernetesRole (production, service-account login at KubernetesMount).
type Vault struct {
	// Addr is Vault's URL. Plain http is accepted only for a loopback host.
	Addr string `env:"VAULT_ADDR" envDefault:"http://127.0.0.1:8200"`
	// Token is a Vault token; never logged.
	Token Secret `env:"VAULT_TOKEN"`
	// CACert is an optional PEM CA bundle for Vault's TLS certificate.
	CACert string `env:"VAULT_CACERT"`
	// KubernetesRole is the Vault role for Kubernetes auth.
	KubernetesRole string `env:"VAULT_K8S_ROLE"`
	// KubernetesMount is the path the Kubernetes auth method is mounted at.
	KubernetesMount string `env:"VAULT_K8S_MOUNT" envDefault:"kubernetes"`
	// TransitMount is the path the Transit secrets engine is mounted at.
	TransitMount string `env:"VAULT_TRANSIT_MOUNT" envDefault:"transit"`
}

// Validate reports every problem with the Vault settings.
func (c Vault) Validate() error {
	var p problems
	checkServiceURL(&p, "SECUREMSG_VAULT_ADDR", c.Addr)
	switch {
	case c.Token == "" && c.KubernetesRole == "":
		p.addf("one of SECUREMSG_VAULT_TOKEN or SECUREMSG_VAULT_K8S_ROLE must be set")
	case c.Token != "" && c.KubernetesRole != "":
		p.addf("set only one of SECUREMSG_VAULT_TOKEN and SECUREMSG_VAULT_K8S_ROLE")
	}
	if c.KubernetesRole != "" && c.KubernetesMount == "" {
		p.addf("SECUREMSG_VAULT_K8S_MOUNT must be set with SECUREMSG_VAULT_K8S_ROLE")
	}
	if c.TransitMount == "" {
		p.addf("SECUREMSG_VAULT_TRANSIT_MOUNT must be set")
	}
	checkFile(&p, "SECUREMSG_VAULT_CACERT", c.CACert, false)
	return p.err()
}

// OIDC configures access-token verification.
type OIDC struct {
	// Issuer is the issuer URL (the token's iss; discovery and JWKS are found under it). Plain
	// http is accepted only for a loopback host (the dev issuer).
	Issuer string `env:"OIDC_ISSUER"`
	// Audience is the value tokens must carry in aud.
	Audience string `env:"OIDC_AUDIENCE"`
}

// Validate reports every problem with the OIDC settings.
func (c OIDC) Validate() error {
	var p problems
	checkServiceURL(&p, "SECUREMSG_OIDC_ISSUER", c.Issuer)
	if c.Audience == "" {
		p.addf("SECUREMSG_OIDC_AUDIENCE must be set")
	}
	return p.err()
}

// Client configures a gRPC connection to another service (grpcserver.Dial) over mTLS. Embed it
// with an envPrefix naming the peer, e.g. `envPrefix:"ATTACHMENT_"` reads
// SECUREMSG_ATTACHMENT_ADDR, SECUREMSG_ATTACHMENT_TLS_CERT_FILE, ...
type Client struct {
	// Addr is the gRPC target (host:port or a grpc-go target URI such as dns:///host:port).
	Addr string `env:"ADDR"`
	// CertFile and KeyFile hold this service's client certificate and key.
	CertFile string `env:"TLS_CERT_FILE"`
	KeyFile  string `env:"TLS_KEY_FILE"`
	// CAFile holds the PEM CA bundle the peer's server certificate is verified against.
	CAFile string `env:"TLS_CA_FILE"`
	// ServerName overrides the name checked in the server certificate (default: Addr's host).
	ServerName string `env:"TLS_SERVER_NAME"`
}

// Validate reports every problem with the client settings. Variable names are given without
// the section's prefix, which the caller chose.
func (c Client) Validate() error {
	var p problems
	if c.Addr == "" {
		p.addf("<peer>_ADDR must be set")
	}
	checkFile(&p, "<peer>_TLS_CERT_FILE", c.CertFile, true)
	checkFile(&p, "<peer>_TLS_KEY_FILE", c.KeyFile, true)
	checkFile(&p, "<peer>_TLS_CA_FILE", c.CAFile, true)
	return p.err()
}

// Secret is a string that never prints: String, GoString, Format, LogValue and MarshalJSON all
// render "[REDACTED]", so a config struct can be logged or wrapped in an error safely. Call
// Reveal where the value is really needed.
type Secret string

const redacted = "[REDACTED]"

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer and hides the value.
func (Secret) String() string { return redacted }

// GoString implements fmt.GoStringer and hides the value.
func (Secret) GoString() string { return redacted }

// Format implements fmt.Formatter so no verb (%s, %q, %x, %v, %+v ...) shows the value.
func (Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer and hides the value.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON hides the value.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

func checkHostPort(p *problems, name, value string, required bool) {
	if value == "" {
		if required {
			p.addf("%s must be set", name)
		}
		return
	}
	if _, _, err := net.SplitHostPort(value); err != nil {
		p.addf("%s must be host:port, got %q", name, value)
	}
}

// checkFile reports a missing or unreadable file; the path is not secret, its content may be.
func checkFile(p *problems, name, path string, required bool) {
	if path == "" {
		if required {
			p.addf("%s must be set", name)
		}
		return
	}
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		p.addf("%s: cannot read %s: %w", name, path, err)
	case fi.IsDir():
		p.addf("%s: %s is a directory", name, path)
	}
}

// checkServiceURL wants an absolute http(s) URL; plain http only on loopback.
func checkServiceURL(p *problems, name, value string) {
	if value == "" {
		p.addf("%s must be set", name)
		return
	}
	u, err := url.Parse(value)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		p.addf("%s must be an absolute http(s) URL", name)
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		p.addf("%s must use https for a non-loopback host", name)
	case u.User != nil:
		p.addf("%s must not carry credentials", name)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
