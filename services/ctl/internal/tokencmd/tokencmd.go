// Package tokencmd implements `securemsgctl token <user>`: it asks the dev stack's OIDC issuer
// (devstack/cmd/oidcdev) to mint an access token for one of the seeded demo users and prints it,
// for grpcurl and demos. The dev issuer mints for anyone, so it only ever runs on loopback; this
// command refuses other issuers so a token request never leaves the machine by mistake.
package tokencmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/securemsg/securemsg/services/ctl/internal/exitcode"
)

// DefaultIssuer is where `make up` serves the dev issuer.
const DefaultIssuer = "http://127.0.0.1:8400"

type options struct {
	issuer  string
	ttl     time.Duration
	authAge time.Duration
	scope   string
	verbose bool
	client  *http.Client
}

// NewCommand returns the `token` command.
func NewCommand() *cobra.Command {
	o := &options{client: &http.Client{Timeout: 10 * time.Second}}
	cmd := &cobra.Command{
		Use:   "token <user>",
		Short: "Mint a dev access token for a seeded demo user (dev stack only)",
		Long: `Mint an access token from the dev stack's OIDC issuer for a seeded demo user
(patient, proxy, teen, clinician, triage, staff-nomfa, auditor, admin) and print it on stdout.

  grpcurl -H "authorization: Bearer $(securemsgctl token patient)" ...`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := o.mint(cmd, args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
			return err
		},
	}
	cmd.Flags().StringVar(&o.issuer, "issuer", DefaultIssuer, "dev issuer URL (loopback only)")
	cmd.Flags().DurationVar(&o.ttl, "ttl", 0, "token lifetime (default: the issuer's)")
	cmd.Flags().DurationVar(&o.authAge, "auth-age", 0, "pretend the user logged in this long ago (tests freshness rules)")
	cmd.Flags().StringVar(&o.scope, "scope", "", "space-separated OAuth scopes replacing the user's")
	cmd.Flags().BoolVarP(&o.verbose, "verbose", "v", false, "also print the expiry and scopes on stderr")
	return cmd
}

func (o *options) mint(cmd *cobra.Command, user string) (string, error) {
	base, err := url.Parse(o.issuer)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return "", exitcode.Usage(fmt.Errorf("--issuer %q: want an http(s) URL", o.issuer))
	}
	if !isLoopback(base.Hostname()) {
		return "", exitcode.Usage(fmt.Errorf("--issuer %q: the dev issuer only runs on loopback", o.issuer))
	}
	if o.ttl < 0 || o.authAge < 0 {
		return "", exitcode.Usage(errors.New("--ttl and --auth-age must not be negative"))
	}
	q := url.Values{"user": {user}}
	if o.ttl > 0 {
		q.Set("ttl", o.ttl.String())
	}
	if o.authAge > 0 {
		q.Set("auth_age", o.authAge.String())
	}
	if o.scope != "" {
		q.Set("scope", o.scope)
	}
	u := base.JoinPath("dev", "token")
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost, u.String(), nil)
	if err != nil {
		return "", err
	}
	resp, err := o.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("dev issuer at %s unreachable (is the stack up? `make up`): %w", base.Redacted(), err)
	}
	defer func() { _ = resp.Body.Close() }() // read-only: everything needed was read above
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("read dev issuer response: %w", err)
	}
	var out struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
		Scope       string `json:"scope"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return "", fmt.Errorf("dev issuer: unexpected response (status %d)", resp.StatusCode)
	}
	if resp.StatusCode != http.StatusOK || out.AccessToken == "" {
		if out.Description != "" {
			return "", fmt.Errorf("dev issuer refused: %s", out.Description)
		}
		return "", fmt.Errorf("dev issuer refused (status %d)", resp.StatusCode)
	}
	if o.verbose {
		// A diagnostic on stderr: failing to print it must not withhold the token.
		_, _ = fmt.Fprintf(cmd.ErrOrStderr(), "expires in %s, scope %q\n", time.Duration(out.ExpiresIn)*time.Second, out.Scope)
	}
	return strings.TrimSpace(out.AccessToken), nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
