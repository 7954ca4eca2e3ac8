package config

import (
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Access configures who may reach a service and how often: the policy folder the Cedar engine
// loads, CIDR allow/deny lists at the edge, rate limits, and token age limits. The defaults suit
// a portal: the numbers are configuration, the rules they feed are in deploy/policies.
type Access struct {
	// PolicyDir is the folder of Cedar policies, their schema and settings.json.
	PolicyDir string `env:"POLICY_DIR" envDefault:"deploy/policies"`
	// PolicyReloadInterval is how often the policy files are checked for changes (SIGHUP also
	// reloads them); 0 disables the file check.
	PolicyReloadInterval time.Duration `env:"POLICY_RELOAD_INTERVAL" envDefault:"30s"`
	// IPAllow, when non-empty, admits only callers in these CIDRs; IPDeny refuses callers in
	// these CIDRs and wins over IPAllow. Comma-separated, e.g. "10.0.0.0/8,127.0.0.1/32". The
	// caller's address is the TCP peer's, or behind Server.TrustedProxies the forwarded client's.
	IPAllow []string `env:"IP_ALLOW" envSeparator:","`
	IPDeny  []string `env:"IP_DENY" envSeparator:","`
	// RatePerPrincipal and BurstPerPrincipal bound each person or service (requests/second,
	// burst); RatePerClient and BurstPerClient bound each client app across its users.
	RatePerPrincipal  float64 `env:"RATE_PER_PRINCIPAL" envDefault:"20"`
	BurstPerPrincipal int     `env:"BURST_PER_PRINCIPAL" envDefault:"40"`
	RatePerClient     float64 `env:"RATE_PER_CLIENT" envDefault:"500"`
	BurstPerClient    int     `env:"BURST_PER_CLIENT" envDefault:"1000"`
	// RateRedisURL, when set, keeps those buckets in Redis (redis://host:6379/N, rediss:// for
	// TLS, which a non-loopback host must use) so that the limits hold across all replicas of a
	// service; unset, each process keeps its own and N replicas admit N times the limits. It may
	// carry a password, hence Secret.
	RateRedisURL Secret `env:"RATE_REDIS_URL"`
	// RateRedisFailure is what the limiter does while Redis does not answer: "open" decides with
	// per-process buckets of the same limits (so up to N times them across N replicas), "closed"
	// refuses every call with Unavailable. Open is the default: patients and care teams losing
	// messaging because a rate-limit cache is down is the worse harm, and every call is still
	// authenticated, admitted and authorised; choose closed where abuse costs more than outage.
	RateRedisFailure string `env:"RATE_REDIS_FAILURE" envDefault:"open"`
	// RateRedisTimeout bounds the Redis calls of one rpc's decision, so a slow Redis delays an
	// rpc by at most this much (and then, for a second, not at all: decisions skip it).
	RateRedisTimeout time.Duration `env:"RATE_REDIS_TIMEOUT" envDefault:"100ms"`
	// RateRedisCACert is the PEM file of the CA that signed a rediss:// server's certificate,
	// when it is not a public one (an in-cluster Redis usually is not); empty: the system roots.
	RateRedisCACert string `env:"RATE_REDIS_CACERT"`
	// MaxTokenAge bounds how long after issue a token is accepted, whatever its exp says;
	// MaxSessionAge bounds the time since the person last logged in (auth_time).
	MaxTokenAge   time.Duration `env:"MAX_TOKEN_AGE" envDefault:"1h"`
	MaxSessionAge time.Duration `env:"MAX_SESSION_AGE" envDefault:"12h"`
	// ClockSkew tolerated on exp, nbf and iat.
	ClockSkew time.Duration `env:"CLOCK_SKEW" envDefault:"30s"`
}

// Validate reports every problem with the access settings.
func (c Access) Validate() error {
	var p problems
	if c.PolicyDir == "" {
		p.addf("SECUREMSG_POLICY_DIR must be set")
	}
	for _, list := range []struct {
		name  string
		cidrs []string
	}{{"SECUREMSG_IP_ALLOW", c.IPAllow}, {"SECUREMSG_IP_DENY", c.IPDeny}} {
		for _, cidr := range list.cidrs {
			if _, err := netip.ParsePrefix(cidr); err != nil {
				p.addf("%s: %q is not a CIDR prefix", list.name, cidr)
			}
		}
	}
	if c.RatePerPrincipal < 0 || c.RatePerClient < 0 || c.BurstPerPrincipal < 0 || c.BurstPerClient < 0 {
		p.addf("SECUREMSG_RATE_* and SECUREMSG_BURST_* must not be negative")
	}
	checkRedisURL(&p, "SECUREMSG_RATE_REDIS_URL", c.RateRedisURL)
	checkFile(&p, "SECUREMSG_RATE_REDIS_CACERT", c.RateRedisCACert, false)
	if c.RateRedisFailure != "open" && c.RateRedisFailure != "closed" {
		p.addf("SECUREMSG_RATE_REDIS_FAILURE must be open or closed, got %q", c.RateRedisFailure)
	}
	if c.RateRedisTimeout <= 0 || c.RateRedisTimeout > time.Second {
		p.addf("SECUREMSG_RATE_REDIS_TIMEOUT must be positive and at most 1s (every rpc may wait it out)")
	}
	if c.MaxTokenAge <= 0 || c.MaxSessionAge <= 0 {
		p.addf("SECUREMSG_MAX_TOKEN_AGE and SECUREMSG_MAX_SESSION_AGE must be positive")
	}
	if c.ClockSkew < 0 || c.ClockSkew > 5*time.Minute {
		p.addf("SECUREMSG_CLOCK_SKEW must be between 0 and 5m")
	}
	return p.err()
}

// checkRedisURL wants an empty value or redis://host[:port][/db]; a non-loopback host must use
// rediss:// (TLS on every hop). The URL may carry a password, so messages never echo it.
func checkRedisURL(p *problems, name string, value Secret) {
	if value == "" {
		return
	}
	u, err := url.Parse(value.Reveal())
	switch {
	case err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Hostname() == "":
		p.addf("%s must be a redis:// or rediss:// URL with a host", name)
	case u.Scheme == "redis" && !isLoopback(u.Hostname()):
		p.addf("%s must use rediss:// (TLS) for a non-loopback host", name)
	}
	if err != nil {
		return
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		if n, err := strconv.Atoi(db); err != nil || n < 0 {
			p.addf("%s: the path must be a database number, like /7", name)
		}
	}
}
