// Package portalserve serves the built reference portal (web/portal/dist, a single-page app) to
// a browser on this machine, as the dev stack's `portal` component. Three things make it more
// than a file server:
//
//   - /config.json tells the app where the issuer and the four services' browser edges are, so
//     the built app carries no host or port and one build runs against any stack;
//   - every path that is not a file (/callback, /inbox, ...) answers index.html, so the app's
//     own router sees deep links and the issuer's redirect back;
//   - every response carries a strict Content-Security-Policy (scripts and styles from this
//     origin only, nothing inline, connections to the issuer and the services only), so the
//     browser tests run the app under the policy a production deployment must keep.
//
// It only listens on loopback (Listen): the app it serves signs people in through the dev
// issuer, which signs anything for anyone who reaches it.
package portalserve

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/securemsg/securemsg/devstack/internal/devserver"
)

// ServiceNames are the services whose browser edges the app calls; Config.Services names each
// of them and no other.
var ServiceNames = []string{"messaging", "attachment", "notification", "audit"}

// Config is what the server serves: the built app and the settings /config.json hands it.
type Config struct {
	// Dir is the app's build output (vite's dist: index.html, assets/). It is read on every
	// request, so a rebuild is served without a restart.
	Dir string
	// Issuer is the OIDC issuer the app signs in with, exactly as the tokens' iss names it.
	Issuer string
	// ClientID and RedirectURI are the app's browser client at the issuer (code flow, PKCE).
	ClientID, RedirectURI string
	// Services maps each of ServiceNames to the origin of its browser edge
	// ("https://127.0.0.1:8441").
	Services map[string]string
	// Mailpit is the dev stack's mail UI, which the app only names in its demo text ("" leaves
	// it out of /config.json).
	Mailpit string
}

// appConfig is the body of /config.json; the field names are the app's (web/portal).
type appConfig struct {
	Issuer      string            `json:"issuer"`
	ClientID    string            `json:"clientId"`
	RedirectURI string            `json:"redirectUri"`
	Services    map[string]string `json:"services"`
	Mailpit     string            `json:"mailpit,omitempty"`
}

// server is the handler New returns.
type server struct {
	dir    string
	config []byte // the body of /config.json, encoded once
	csp    string
}

// New checks cfg, reporting every problem at once, and returns the portal's handler.
func New(cfg Config) (http.Handler, error) {
	var errs []error
	if cfg.Dir == "" {
		errs = append(errs, errors.New("no app directory (-dir)"))
	}
	issuerOrigin, err := originOf(cfg.Issuer, true)
	if err != nil {
		errs = append(errs, fmt.Errorf("issuer %q: %w", cfg.Issuer, err))
	}
	if cfg.ClientID == "" {
		errs = append(errs, errors.New("no client id"))
	}
	if _, err := originOf(cfg.RedirectURI, true); err != nil {
		errs = append(errs, fmt.Errorf("redirect URI %q: %w", cfg.RedirectURI, err))
	}
	if cfg.Mailpit != "" {
		if _, err := originOf(cfg.Mailpit, true); err != nil {
			errs = append(errs, fmt.Errorf("mailpit %q: %w", cfg.Mailpit, err))
		}
	}
	services := map[string]string{}
	connect := []string{"'self'", issuerOrigin}
	for _, name := range ServiceNames {
		raw, ok := cfg.Services[name]
		if !ok {
			errs = append(errs, fmt.Errorf("no origin for service %s (-service %s=https://127.0.0.1:<port>)", name, name))
			continue
		}
		origin, err := originOf(raw, false)
		if err != nil {
			errs = append(errs, fmt.Errorf("service %s %q: %w", name, raw, err))
			continue
		}
		services[name] = origin
		if !slices.Contains(connect, origin) {
			connect = append(connect, origin)
		}
	}
	for name := range cfg.Services {
		if !slices.Contains(ServiceNames, name) {
			errs = append(errs, fmt.Errorf("unknown service %q (want %s)", name, strings.Join(ServiceNames, ", ")))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	body, err := json.Marshal(appConfig{Issuer: cfg.Issuer, ClientID: cfg.ClientID, RedirectURI: cfg.RedirectURI,
		Services: services, Mailpit: cfg.Mailpit})
	if err != nil {
		return nil, err
	}
	return &server{dir: cfg.Dir, config: body, csp: contentSecurityPolicy(connect)}, nil
}

// contentSecurityPolicy is the policy of every response. Nothing is allowed by default; scripts,
// styles, fonts and images come from this origin only (images also as data: URLs, for the empty
// favicon), with no 'unsafe-inline' or 'unsafe-eval' anywhere; the app may only talk to this
// origin, the issuer and the services. Trusted Types with no policy at all make the browser
// refuse every HTML sink (innerHTML and the like), which enforces the app's text-only rendering.
// No form posts anywhere (sign-in is a redirect to the issuer, not a form of ours), no framing,
// no <base>, no plugins.
func contentSecurityPolicy(connect []string) string {
	return strings.Join([]string{
		"default-src 'none'",
		"script-src 'self'",
		"style-src 'self'",
		"img-src 'self' data:",
		"font-src 'self'",
		"connect-src " + strings.Join(connect, " "),
		"form-action 'none'",
		"frame-ancestors 'none'",
		"base-uri 'none'",
		"object-src 'none'",
		"require-trusted-types-for 'script'",
		"trusted-types 'none'",
	}, "; ")
}

// originOf returns the origin (scheme://host[:port], lower case) of raw, an absolute http or
// https URL. A path is allowed only when withPath is set: a service's setting is a base URL the
// app appends rpc paths to, so anything after the origin would be lost or misread. The host may
// hold only the characters of a host name or IP literal, because the origin goes verbatim into
// the CSP header, where a space or a semicolon would change the policy.
func originOf(raw string, withPath bool) (string, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "", err
	case u.Scheme != "http" && u.Scheme != "https":
		return "", errors.New("want an http:// or https:// URL")
	case u.Host == "" || strings.ContainsFunc(u.Host, notHostChar):
		return "", errors.New("want a host name or IP address, and a port if any")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return "", errors.New("want no user, query or fragment")
	case !withPath && u.Path != "" && u.Path != "/":
		return "", errors.New("want an origin (scheme://host:port) without a path")
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// notHostChar reports a character no host name, IP literal or port holds.
func notHostChar(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return false
	}
	return !strings.ContainsRune(".-:[]", r)
}

// Listen listens on addr, which must be a loopback address (127.0.0.0/8, [::1], localhost), and
// checks the address it got as well, in case localhost resolves elsewhere on this machine.
func Listen(addr string) (net.Listener, error) {
	loopback, err := devserver.IsLoopback(addr)
	if err != nil {
		return nil, err
	}
	if !loopback {
		return nil, fmt.Errorf("-addr %q: the portal signs in through the dev issuer, which signs anything for anyone, so it only listens on loopback", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); !ok || !tcp.IP.IsLoopback() {
		_ = ln.Close() // never served
		return nil, fmt.Errorf("-addr %q resolved to %s, which is not loopback", addr, ln.Addr())
	}
	return ln, nil
}

// ServiceOrigins is the -service flag's value: name=origin, given once per service or as a
// comma-separated list (messaging=https://127.0.0.1:8441,attachment=...). New checks the names
// and origins.
type ServiceOrigins map[string]string

// String lists the services as the flag takes them, in ServiceNames order.
func (s ServiceOrigins) String() string {
	var parts []string
	for _, name := range ServiceNames {
		if origin, ok := s[name]; ok {
			parts = append(parts, name+"="+origin)
		}
	}
	return strings.Join(parts, ",")
}

// Set adds one name=origin or a comma-separated list of them; a service given twice is refused.
func (s ServiceOrigins) Set(value string) error {
	for part := range strings.SplitSeq(value, ",") {
		name, origin, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || name == "" || origin == "" {
			return fmt.Errorf("%q: want name=origin", part)
		}
		if _, dup := s[name]; dup {
			return fmt.Errorf("service %s given twice", name)
		}
		s[name] = origin
	}
	return nil
}
