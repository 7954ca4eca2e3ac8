package config

import (
	"net/netip"
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
	if c.MaxTokenAge <= 0 || c.MaxSessionAge <= 0 {
		p.addf("SECUREMSG_MAX_TOKEN_AGE and SECUREMSG_MAX_SESSION_AGE must be positive")
	}
	if c.ClockSkew < 0 || c.ClockSkew > 5*time.Minute {
		p.addf("SECUREMSG_CLOCK_SKEW must be between 0 and 5m")
	}
	return p.err()
}
