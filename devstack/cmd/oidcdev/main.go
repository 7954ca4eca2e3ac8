// Command oidcdev is the dev stack's OIDC issuer (see package oidcdev). It refuses to listen on
// anything but loopback, because its mint endpoint hands out any token to anyone.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/securemsg/securemsg/devstack/internal/devserver"
	"github.com/securemsg/securemsg/devstack/internal/oidcdev"
)

func main() { devserver.Main("oidcdev", run) }

func run() error {
	addr := flag.String("addr", "127.0.0.1:8400", "listen address (loopback only)")
	issuer := flag.String("issuer", "", "issuer URL (default http://<addr>)")
	keyFile := flag.String("key-file", ".tmp/stack/oidc/signing-key.pem", "ECDSA P-256 signing key, created on first run")
	secretsDir := flag.String("client-secrets-dir", ".tmp/stack/oidc/clients", "machine clients' secrets (<client_id>.secret), created on first run")
	redirects := flag.String("portal-redirect-uris", oidcdev.DefaultPortalRedirectURI, "comma-separated redirect URIs of the portal's browser client "+oidcdev.ClientID+" (loopback only)")
	flag.Parse()

	if loopback, err := devserver.IsLoopback(*addr); err != nil {
		return err
	} else if !loopback {
		return fmt.Errorf("-addr %q: the dev issuer mints tokens for anyone, so it only binds to loopback", *addr)
	}
	if *issuer == "" {
		*issuer = "http://" + *addr
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))

	key, err := oidcdev.LoadOrCreateKey(*keyFile)
	if err != nil {
		return err
	}
	iss, err := oidcdev.New(*issuer, key)
	if err != nil {
		return err
	}
	secrets, err := oidcdev.LoadOrCreateClientSecrets(*secretsDir)
	if err != nil {
		return err
	}
	iss.SetClientSecrets(secrets)
	portal, err := oidcdev.ParseRedirectURIs(*redirects)
	if err != nil {
		return fmt.Errorf("-portal-redirect-uris: %w", err)
	}
	iss.SetBrowserClient(oidcdev.BrowserClient{ClientID: oidcdev.ClientID, RedirectURIs: portal})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: iss.Handler(log), ReadHeaderTimeout: 5 * time.Second}
	return devserver.ServeUntilSignal(srv, func() error { return srv.Serve(ln) }, func() {
		log.Info("dev OIDC issuer listening", "addr", ln.Addr().String(), "issuer", iss.URL())
	})
}
