package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The reference portal (web/portal, a TypeScript single-page app) and its server
// (devstack/cmd/portal), which only the dev stack runs: tests of the services need no browser
// app, and the app's browser tests run against the dev stack.

const portalPkg = "./devstack/cmd/portal"

// portal serves the built app on Ports.Portal, with the stack's issuer and the four services'
// browser edges in its /config.json and CSP. Its prepare builds the app first (npm, through
// scripts/lib/portal.sh, which skips what is current), so `make up` serves what web/portal holds
// now; the server reads the build on every request, so a rebuild needs no restart. Its command
// line is its settings: a change of port or origin restarts it.
func (s *Stack) portal() *Component {
	url := s.cfg.PortalURL()
	c := s.component("portal", s.cfg.Ports.Portal, func(ctx context.Context) error { return httpOK(ctx, http.MethodGet, url+"/healthz") })
	origins := make([]string, 0, len(Services))
	for _, svc := range Services {
		origins = append(origins, svc+"=https://"+HostPort(s.cfg.Ports.HTTP[svc]))
	}
	c.proc.args = []string{"-addr", c.addr, "-dir", filepath.Join(s.cfg.Root, "web", "portal", "dist"),
		"-issuer", s.cfg.IssuerURL(), "-client-id", PortalClientID,
		// On the dev port this is PortalRedirectURI, the one the issuer registers by default.
		"-redirect-uri", url + "/callback",
		"-service", strings.Join(origins, ",")}
	if s.Mail != nil {
		c.proc.args = append(c.proc.args, "-mailpit", s.cfg.MailAPIURL())
	}
	c.prepare = func(ctx context.Context) error {
		t0 := time.Now()
		how, err := s.portalScript(ctx, "portal_build", "build.log")
		if err != nil {
			return fmt.Errorf("portal: build web/portal (scripts/lib/portal.sh portal_build): %w", err)
		}
		s.step("portal build", "web/portal/dist", how, t0)
		// The browser tests need Chromium, the portal does not: a failed install is reported,
		// and the portal starts all the same.
		if _, err := s.portalScript(ctx, "portal_browser", "browser.log"); err != nil {
			s.logf("  portal: no Chromium for the browser tests: %v", err)
		}
		c.proc.path, err = s.binary(portalPkg)
		return err
	}
	return c
}

// portalScript runs fn of scripts/lib/portal.sh at the repository root, its progress and npm's
// output appended to the portal's log file logName, and returns what fn printed (portal_build:
// "built" or "up to date"). The error carries the log's last lines: npm says there what failed.
func (s *Stack) portalScript(ctx context.Context, fn, logName string) (string, error) {
	logPath := s.statePath("portal", logName)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return "", err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return "", err
	}
	defer func() { _ = logf.Close() }() // the script's output went to it; nothing buffered here
	_, _ = fmt.Fprintf(logf, "--- supervisor: %s at %s\n", fn, time.Now().Format(time.RFC3339Nano))
	cmd := exec.CommandContext(ctx, "bash", "-c", `source scripts/lib/portal.sh && "$1"`, "_", fn)
	cmd.Dir = s.cfg.Root
	cmd.Env = append(os.Environ(), "SECUREMSG_ROOT="+s.cfg.Root, "DEBIAN_FRONTEND=noninteractive")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, logf
	if err := cmd.Run(); err != nil {
		msg := fmt.Sprintf("%v; log %s", err, logPath)
		if tail := LogTail(logPath, 15); tail != "" {
			msg += "\n" + tail
		}
		return "", errors.New(msg)
	}
	return strings.TrimSpace(out.String()), nil
}
