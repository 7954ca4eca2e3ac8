package config_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/securemsg/securemsg/services/internal/platform/config"
)

// serviceConfig is how a service composes its configuration.
type serviceConfig struct {
	Server     config.Server
	Log        config.Log
	Postgres   config.Postgres
	NATS       config.NATS
	Vault      config.Vault
	OIDC       config.OIDC
	Attachment config.Client `envPrefix:"ATTACHMENT_"`
}

// files writes empty placeholder files and returns their paths by name.
func files(t *testing.T, names ...string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	out := map[string]string{}
	for _, n := range names {
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		out[n] = p
	}
	return out
}

func validEnv(t *testing.T) map[string]string {
	f := files(t, "cert.pem", "key.pem", "ca.pem")
	return map[string]string{
		"SECUREMSG_TLS_CERT_FILE":              f["cert.pem"],
		"SECUREMSG_TLS_KEY_FILE":               f["key.pem"],
		"SECUREMSG_TLS_CLIENT_CA_FILE":         f["ca.pem"],
		"SECUREMSG_VAULT_TOKEN":                "hvs.secret-token-value",
		"SECUREMSG_OIDC_ISSUER":                "http://127.0.0.1:8400",
		"SECUREMSG_OIDC_AUDIENCE":              "securemsg",
		"SECUREMSG_ATTACHMENT_ADDR":            "127.0.0.1:7002",
		"SECUREMSG_ATTACHMENT_TLS_CERT_FILE":   f["cert.pem"],
		"SECUREMSG_ATTACHMENT_TLS_KEY_FILE":    f["key.pem"],
		"SECUREMSG_ATTACHMENT_TLS_CA_FILE":     f["ca.pem"],
		"SECUREMSG_ATTACHMENT_TLS_SERVER_NAME": "attachment",
	}
}

func TestLoadDefaults(t *testing.T) {
	t.Parallel()
	env := validEnv(t)
	var cfg serviceConfig
	if err := config.Load(&cfg, config.WithEnvironment(env), config.WithDefault("SECUREMSG_GRPC_ADDR", ":7001")); err != nil {
		t.Fatalf("Load(valid env) = %v, want nil", err)
	}
	want := serviceConfig{
		Server: config.Server{
			GRPCAddr:             ":7001", // WithDefault beats envDefault
			TLSCertFile:          env["SECUREMSG_TLS_CERT_FILE"],
			TLSKeyFile:           env["SECUREMSG_TLS_KEY_FILE"],
			TLSClientCAFile:      env["SECUREMSG_TLS_CLIENT_CA_FILE"],
			ShutdownTimeout:      20 * time.Second,
			ShutdownDrain:        2 * time.Second,
			MaxRecvMsgBytes:      4 << 20,
			MaxConcurrentStreams: 128,
			TrustedProxyHeader:   "X-Forwarded-For",
		},
		Log:      config.Log{Level: slog.LevelInfo},
		Postgres: config.Postgres{URL: "postgres://postgres@127.0.0.1:5432/securemsg?sslmode=disable", MaxConns: 10},
		NATS:     config.NATS{URL: "nats://127.0.0.1:4222", StreamReplicas: 1},
		Vault: config.Vault{
			Addr: "http://127.0.0.1:8200", Token: "hvs.secret-token-value",
			KubernetesMount: "kubernetes", TransitMount: "transit",
		},
		OIDC: config.OIDC{Issuer: "http://127.0.0.1:8400", Audience: "securemsg"},
		Attachment: config.Client{
			Addr: "127.0.0.1:7002", CertFile: env["SECUREMSG_TLS_CERT_FILE"], KeyFile: env["SECUREMSG_TLS_KEY_FILE"],
			CAFile: env["SECUREMSG_TLS_CLIENT_CA_FILE"], ServerName: "attachment",
		},
	}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("Load(valid env) mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadParses(t *testing.T) {
	t.Parallel()
	env := validEnv(t)
	env["SECUREMSG_GRPC_ADDR"] = "0.0.0.0:9999" // the environment beats WithDefault
	env["SECUREMSG_LOG_LEVEL"] = "debug"
	env["SECUREMSG_DEV"] = "true"
	env["SECUREMSG_TLS_REQUIRE_CLIENT_CERT"] = "true"
	env["SECUREMSG_SHUTDOWN_TIMEOUT"] = "45s"
	env["SECUREMSG_METRICS_ADDR"] = "127.0.0.1:9090"
	env["SECUREMSG_PG_MAX_CONNS"] = "32"
	var cfg serviceConfig
	if err := config.Load(&cfg, config.WithEnvironment(env), config.WithDefault("SECUREMSG_GRPC_ADDR", ":7001")); err != nil {
		t.Fatalf("Load() = %v, want nil", err)
	}
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"GRPCAddr", cfg.Server.GRPCAddr, "0.0.0.0:9999"},
		{"Level", cfg.Log.Level, slog.LevelDebug},
		{"Dev", cfg.Server.Dev, true},
		{"RequireClientCert", cfg.Server.RequireClientCert, true},
		{"ShutdownTimeout", cfg.Server.ShutdownTimeout, 45 * time.Second},
		{"MetricsAddr", cfg.Server.MetricsAddr, "127.0.0.1:9090"},
		{"MaxConns", cfg.Postgres.MaxConns, int32(32)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
			}
		})
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"SECUREMSG_LOG_LEVEL":               "loud", // parse error
		"SECUREMSG_SHUTDOWN_TIMEOUT":        "soon", // parse error
		"SECUREMSG_TLS_REQUIRE_CLIENT_CERT": "true", // needs a CA
		"SECUREMSG_PG_URL":                  "postgres://app:pg-password-xyz@db.internal/securemsg",
		"SECUREMSG_VAULT_ADDR":              "http://vault.internal:8200",
		"SECUREMSG_VAULT_TOKEN":             "hvs.secret-token-value",
		"SECUREMSG_VAULT_K8S_ROLE":          "messaging",
		"SECUREMSG_OIDC_ISSUER":             "http://idp.example.org",
	}
	var cfg serviceConfig
	err := config.Load(&cfg, config.WithEnvironment(env))
	if err == nil {
		t.Fatal("Load(broken env) = nil, want an error")
	}
	msg := err.Error()
	for _, want := range []string{
		"SECUREMSG_LOG_LEVEL: cannot parse",
		"SECUREMSG_SHUTDOWN_TIMEOUT: cannot parse",
		"SECUREMSG_TLS_CERT_FILE must be set",
		"SECUREMSG_TLS_KEY_FILE must be set",
		"SECUREMSG_TLS_REQUIRE_CLIENT_CERT needs SECUREMSG_TLS_CLIENT_CA_FILE",
		"SECUREMSG_PG_URL must set sslmode=verify-full",
		"SECUREMSG_VAULT_ADDR must use https",
		"set only one of SECUREMSG_VAULT_TOKEN and SECUREMSG_VAULT_K8S_ROLE",
		"SECUREMSG_OIDC_ISSUER must use https",
		"SECUREMSG_OIDC_AUDIENCE must be set",
		"Attachment: <peer>_ADDR must be set",
		"Attachment: <peer>_TLS_CA_FILE must be set",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("Load(broken env) error lacks %q; got:\n%s", want, msg)
		}
	}
	for _, secret := range []string{"pg-password-xyz", "hvs.secret-token-value"} {
		if strings.Contains(msg, secret) {
			t.Errorf("Load(broken env) error leaks secret %q:\n%s", secret, msg)
		}
	}
}

func TestLoadRejectsNonStruct(t *testing.T) {
	t.Parallel()
	var s string
	if err := config.Load(&s, config.WithEnvironment(nil)); err == nil {
		t.Error("Load(*string) = nil, want an error")
	}
}

func TestSecretNeverPrints(t *testing.T) {
	t.Parallel()
	const value = "hvs.secret-token-value"
	v := config.Vault{Token: value}
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("cfg", "vault", v, "token", v.Token)
	tests := []struct {
		name string
		out  string
	}{
		{"%v", fmt.Sprintf("%v", v)},
		{"%+v", fmt.Sprintf("%+v", v)},
		{"%#v", fmt.Sprintf("%#v", v)},
		{"%s", fmt.Sprintf("%s", v.Token)},
		{"%q", fmt.Sprintf("%q", v.Token)},
		{"%x", fmt.Sprintf("%x", v.Token)},
		{"json", string(js)},
		{"slog", logged.String()},
		{"error", fmt.Errorf("login with %v", v.Token).Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.Contains(tt.out, value) || strings.Contains(tt.out, fmt.Sprintf("%x", value)) {
				t.Errorf("%s rendering = %q, leaks the secret", tt.name, tt.out)
			}
		})
	}
	if got := v.Token.Reveal(); got != value {
		t.Errorf("Reveal() = %q, want %q", got, value)
	}
}

type crossCheck struct {
	Server config.Server
	bad    bool
}

func (c crossCheck) Validate() error {
	if c.bad {
		return errors.New("cross-section rule failed")
	}
	return nil
}

func TestValidateAllUsesTopLevelValidator(t *testing.T) {
	t.Parallel()
	// A service-level Validate owns its sections: ValidateAll must not descend past it.
	if err := config.ValidateAll(crossCheck{bad: true}); err == nil || !strings.Contains(err.Error(), "cross-section") {
		t.Errorf("ValidateAll(crossCheck{bad}) = %v, want the cross-section error", err)
	}
	if err := config.ValidateAll(&crossCheck{}); err != nil {
		t.Errorf("ValidateAll(&crossCheck{}) = %v, want nil", err)
	}
}

func TestHTTPEdgeAndTrustedProxySettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		wantErr []string // substrings of the error; none: Load succeeds
	}{
		{"no HTTP surface", nil, nil},
		{"HTTP surface with origins and proxies", map[string]string{
			"SECUREMSG_HTTP_ADDR":            "0.0.0.0:8443",
			"SECUREMSG_HTTP_ALLOWED_ORIGINS": "https://portal.example.org,https://care.example.org:8443,http://localhost:5173,http://127.0.0.1:3000",
			"SECUREMSG_TRUSTED_PROXIES":      "10.0.0.0/8, fd00::/8",
			"SECUREMSG_TRUSTED_PROXY_HEADER": "forwarded",
		}, nil},
		{"bad listen address", map[string]string{"SECUREMSG_HTTP_ADDR": "8443"}, []string{"SECUREMSG_HTTP_ADDR must be host:port"}},
		{"wildcard origin", map[string]string{"SECUREMSG_HTTP_ALLOWED_ORIGINS": "*"}, []string{"wildcards are not allowed"}},
		{"wildcard subdomain", map[string]string{"SECUREMSG_HTTP_ALLOWED_ORIGINS": "https://*.example.org"}, []string{"wildcards are not allowed"}},
		{"plain http to a public host", map[string]string{"SECUREMSG_HTTP_ALLOWED_ORIGINS": "http://portal.example.org"}, []string{"must use https"}},
		{"origin with a path", map[string]string{"SECUREMSG_HTTP_ALLOWED_ORIGINS": "https://portal.example.org/app"}, []string{"without path"}},
		{"origin in upper case", map[string]string{"SECUREMSG_HTTP_ALLOWED_ORIGINS": "https://Portal.example.org"}, []string{"lower-case origin"}},
		{"not an origin", map[string]string{"SECUREMSG_HTTP_ALLOWED_ORIGINS": "portal.example.org"}, []string{"is not an origin"}},
		{"bad proxy CIDR", map[string]string{"SECUREMSG_TRUSTED_PROXIES": "10.0.0.0/8,ingress"}, []string{`SECUREMSG_TRUSTED_PROXIES: "ingress" is not a CIDR prefix`}},
		{"unknown forwarding header", map[string]string{"SECUREMSG_TRUSTED_PROXY_HEADER": "X-Real-IP"}, []string{"SECUREMSG_TRUSTED_PROXY_HEADER must be X-Forwarded-For or Forwarded"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := validEnv(t)
			for k, v := range tt.env {
				env[k] = v
			}
			var cfg serviceConfig
			err := config.Load(&cfg, config.WithEnvironment(env))
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Load() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Load() = nil, want an error with %q", tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Load() error lacks %q; got:\n%v", want, err)
				}
			}
		})
	}
}

func TestRateLimitStoreSettings(t *testing.T) {
	t.Parallel()
	type accessOnly struct{ Access config.Access }
	tests := []struct {
		name    string
		env     map[string]string
		want    func(config.Access) string // "" when the loaded value is right
		wantErr []string                   // substrings of the error; none: Load succeeds
	}{
		{"per-process by default, failing open", nil, func(a config.Access) string {
			if a.RateRedisURL != "" || a.RateRedisFailure != "open" || a.RateRedisTimeout != 100*time.Millisecond {
				return fmt.Sprintf("url set %v, failure %q, timeout %s; want unset, open, 100ms", a.RateRedisURL != "", a.RateRedisFailure, a.RateRedisTimeout)
			}
			return ""
		}, nil},
		{"loopback redis with a database, failing closed", map[string]string{
			"SECUREMSG_RATE_REDIS_URL": "redis://127.0.0.1:6379/7", "SECUREMSG_RATE_REDIS_FAILURE": "closed", "SECUREMSG_RATE_REDIS_TIMEOUT": "50ms",
		}, func(a config.Access) string {
			if a.RateRedisURL.Reveal() != "redis://127.0.0.1:6379/7" || a.RateRedisFailure != "closed" || a.RateRedisTimeout != 50*time.Millisecond {
				return fmt.Sprintf("failure %q, timeout %s", a.RateRedisFailure, a.RateRedisTimeout)
			}
			return ""
		}, nil},
		{"remote redis over TLS", map[string]string{"SECUREMSG_RATE_REDIS_URL": "rediss://:redis-pw-xyz@redis.internal:6380/0"}, nil, nil},
		{"remote redis in plaintext", map[string]string{"SECUREMSG_RATE_REDIS_URL": "redis://:redis-pw-xyz@redis.internal:6379/0"}, nil,
			[]string{"SECUREMSG_RATE_REDIS_URL must use rediss://"}},
		{"not a redis URL", map[string]string{"SECUREMSG_RATE_REDIS_URL": "http://127.0.0.1:6379"}, nil,
			[]string{"SECUREMSG_RATE_REDIS_URL must be a redis:// or rediss:// URL"}},
		{"database is not a number", map[string]string{"SECUREMSG_RATE_REDIS_URL": "redis://127.0.0.1:6379/rate"}, nil,
			[]string{"SECUREMSG_RATE_REDIS_URL: the path must be a database number"}},
		{"unknown failure mode", map[string]string{"SECUREMSG_RATE_REDIS_FAILURE": "ajar"}, nil,
			[]string{`SECUREMSG_RATE_REDIS_FAILURE must be open or closed, got "ajar"`}},
		{"timeout too long", map[string]string{"SECUREMSG_RATE_REDIS_TIMEOUT": "5s"}, nil,
			[]string{"SECUREMSG_RATE_REDIS_TIMEOUT must be positive and at most 1s"}},
		{"timeout zero", map[string]string{"SECUREMSG_RATE_REDIS_TIMEOUT": "0s"}, nil,
			[]string{"SECUREMSG_RATE_REDIS_TIMEOUT must be positive"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{} // never the process's: a SECUREMSG_RATE_* there would change the answer
			for k, v := range tt.env {
				env[k] = v
			}
			var cfg accessOnly
			err := config.Load(&cfg, config.WithEnvironment(env))
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Load() = %v, want nil", err)
				}
				if tt.want != nil {
					if problem := tt.want(cfg.Access); problem != "" {
						t.Errorf("Load() Access: %s", problem)
					}
				}
				return
			}
			if err == nil {
				t.Fatalf("Load() = nil, want an error with %q", tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Load() error lacks %q; got:\n%v", want, err)
				}
			}
			if strings.Contains(err.Error(), "redis-pw-xyz") {
				t.Errorf("Load() error shows the Redis password:\n%v", err)
			}
		})
	}
}
