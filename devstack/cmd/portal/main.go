// Command portal serves the built reference portal (web/portal/dist) and its /config.json on
// loopback for the dev stack (see package portalserve). `make up` builds the app and runs it on
// http://127.0.0.1:8080 with the stack's issuer and service origins.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/securemsg/securemsg/devstack/internal/devserver"
	"github.com/securemsg/securemsg/devstack/internal/oidcdev"
	"github.com/securemsg/securemsg/devstack/internal/portalserve"
)

func main() { devserver.Main("portal", run) }

func run() error {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address (loopback only)")
	dir := flag.String("dir", "web/portal/dist", "the built app (vite's output: index.html, assets/)")
	issuer := flag.String("issuer", "http://127.0.0.1:8400", "the OIDC issuer the app signs in with")
	clientID := flag.String("client-id", oidcdev.ClientID, "the app's browser client at the issuer")
	redirectURI := flag.String("redirect-uri", oidcdev.DefaultPortalRedirectURI, "where the issuer sends the app its code")
	services := portalserve.ServiceOrigins{}
	flag.Var(services, "service", "name=origin of a service's browser edge, repeated or comma-separated, for each of "+
		"messaging, attachment, notification and audit (messaging=https://127.0.0.1:8441,...)")
	mailpit := flag.String("mailpit", "", "the dev mail UI, named in the app's demo text (optional)")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}

	handler, err := portalserve.New(portalserve.Config{Dir: *dir, Issuer: *issuer, ClientID: *clientID,
		RedirectURI: *redirectURI, Services: services, Mailpit: *mailpit})
	if err != nil {
		return err
	}
	ln, err := portalserve.Listen(*addr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	return devserver.ServeUntilSignal(srv, func() error { return srv.Serve(ln) }, func() {
		log.Info("portal server listening", "url", "http://"+ln.Addr().String(), "dir", *dir, "issuer", *issuer,
			"services", services.String())
	})
}
