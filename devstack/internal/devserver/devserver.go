// Package devserver is what the dev stack's small HTTP commands (oidcdev, transitdev) share: the
// exit-1 main, the loopback test for their listen address, and serving until SIGINT or SIGTERM
// with a bounded graceful shutdown. Each command keeps its own flags and its own words for a
// refused address, because what makes a remote bind dangerous differs between them.
package devserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// ShutdownTimeout bounds the graceful shutdown after a signal; requests still running then are cut.
const ShutdownTimeout = 5 * time.Second

// Main runs run and, when it fails, prints "<name>: <error>" to stderr and exits 1.
func Main(name string, run func() error) {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// IsLoopback reports whether addr (host:port, as given to -addr) names "localhost" or a loopback
// IP. The error is a malformed address, worded for the -addr flag.
func IsLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("-addr %q: %w", addr, err)
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback()), nil
}

// ServeUntilSignal runs serve (srv.Serve or srv.ServeTLS on a bound listener) until it fails or
// the process gets SIGINT or SIGTERM, then shuts srv down within ShutdownTimeout. listening is
// called once signals are caught and serve has been started, so a supervisor that acts on what it
// logs can stop the server gracefully at once.
func ServeUntilSignal(srv *http.Server, serve func() error, listening func()) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	listening()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
