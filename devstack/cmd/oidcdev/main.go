// Command oidcdev is the dev stack's OIDC issuer (see package oidcdev). It refuses to listen on
// anything but loopback, because its mint endpoint hands out any token to anyone.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/securemsg/securemsg/devstack/internal/oidcdev"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "oidcdev:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:8400", "listen address (loopback only)")
	issuer := flag.String("issuer", "", "issuer URL (default http://<addr>)")
	keyFile := flag.String("key-file", ".tmp/stack/oidc/signing-key.pem", "ECDSA P-256 signing key, created on first run")
	flag.Parse()

	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", *addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
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
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: iss.Handler(log), ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("dev OIDC issuer listening", "addr", ln.Addr().String(), "issuer", iss.URL())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
