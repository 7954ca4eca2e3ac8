// Command transitdev runs the dev stack's Vault Transit-compatible server (see package transit)
// where no vault binary is available. It binds to loopback only unless -allow-remote is given:
// it has a single root token and stores keys unencrypted.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/securemsg/securemsg/devstack/internal/devserver"
	"github.com/securemsg/securemsg/devstack/internal/transit"
)

func main() { devserver.Main("transitdev", run) }

func run() error {
	addr := flag.String("addr", "127.0.0.1:8200", "listen address")
	rootToken := flag.String("root-token", "root", "the only accepted X-Vault-Token")
	dataDir := flag.String("data-dir", "", "directory that keeps mounts and keys across restarts (empty: memory only)")
	tlsCert := flag.String("tls-cert", "", "PEM certificate; serve HTTPS when set (with -tls-key)")
	tlsKey := flag.String("tls-key", "", "PEM private key for -tls-cert")
	allowRemote := flag.Bool("allow-remote", false, "allow a non-loopback -addr (this is a dev server: don't)")
	flag.Parse()

	if err := checkAddr(*addr, *allowRemote); err != nil {
		return err
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return errors.New("-tls-cert and -tls-key go together")
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))

	srv, err := transit.New(transit.Config{RootToken: *rootToken, DataDir: *dataDir, Logger: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	httpSrv := &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}

	serve, scheme := func() error { return httpSrv.Serve(ln) }, "http"
	if *tlsCert != "" {
		serve, scheme = func() error { return httpSrv.ServeTLS(ln, *tlsCert, *tlsKey) }, "https"
	}
	err = devserver.ServeUntilSignal(httpSrv, serve, func() {
		// The line tests and scripts wait for: the bound address (useful with -addr 127.0.0.1:0).
		log.Info("listening", slog.String("addr", scheme+"://"+ln.Addr().String()), slog.Bool("persistent", *dataDir != ""))
	})
	if err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// checkAddr refuses non-loopback addresses unless allowRemote.
func checkAddr(addr string, allowRemote bool) error {
	loopback, err := devserver.IsLoopback(addr)
	if err != nil {
		return err
	}
	if !loopback && !allowRemote {
		return fmt.Errorf("-addr %q is not loopback: the dev server has one root token and unencrypted keys; pass -allow-remote to insist", addr)
	}
	return nil
}
