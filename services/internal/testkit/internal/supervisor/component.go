package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// Component is one dependency of the stack (Postgres, NATS, Transit, MinIO, clamd, mailpit, the
// OIDC issuer): a process that can be stopped, killed and started again on the same port with
// the same data. Its methods return errors rather than failing a test, so a fault test may call
// them from any goroutine (say, while a burst of sends runs).
type Component struct {
	name string
	proc *process // nil for the machine's own Postgres, which the dev stack never runs
	addr string
	// ready is polled after a start until it succeeds; it may do idempotent setup (create the
	// bucket, mount transit/). check answers `status` without side effects (nil: ready).
	ready, check func(context.Context) error
	within       time.Duration
	// reuse lets the dev stack use a healthy server on the component's port that it did not
	// start (MinIO, Vault, clamd and mailpit are interchangeable; an issuer or a NATS server of
	// another checkout is not).
	reuse bool
	// prepare runs once before the first start: find or build the binary, write config files.
	prepare func(context.Context) error
	// ensure replaces start for a component the stack does not run (the machine's Postgres).
	ensure func(context.Context) (string, error)
}

// Name is the component's name ("postgres", "nats", "vault", "minio", "clamd", "mailpit", "oidc").
func (c *Component) Name() string { return c.name }

// Addr is the host:port the component listens on; it stays the same across restarts.
func (c *Component) Addr() string { return c.addr }

// LogFile is the file the component's output goes to, appended to across restarts.
func (c *Component) LogFile() string {
	if c.proc == nil {
		return ""
	}
	return c.proc.logPath
}

// PID is the running process's id, or 0 while it is stopped (or not run by the stack).
func (c *Component) PID() int {
	if c.proc == nil {
		return 0
	}
	return c.proc.pid()
}

// Running reports whether the process runs (it may not be ready yet).
func (c *Component) Running() bool { return c.PID() != 0 }

// Stop shuts the component down gracefully (Postgres: fast shutdown) and waits until it has
// exited; connections to Addr are then refused. Stopping a stopped component does nothing.
func (c *Component) Stop() error {
	if c.proc == nil {
		return nil
	}
	return c.proc.stop()
}

// Kill ends the component with SIGKILL, as a crash would (Postgres then recovers from its WAL
// on the next Start).
func (c *Component) Kill() error {
	if c.proc == nil {
		return nil
	}
	return c.proc.kill()
}

// Start starts a stopped component again, same port and data, and waits until it is ready.
func (c *Component) Start() error { return c.start(context.Background()) }

// Restart stops the component (gracefully) and starts it again.
func (c *Component) Restart() error {
	if err := c.Stop(); err != nil {
		return err
	}
	return c.Start()
}

func (c *Component) start(ctx context.Context) error {
	if c.proc == nil {
		return fmt.Errorf("%s is not run by the stack", c.name)
	}
	if err := c.proc.start(); err != nil {
		return err
	}
	return c.proc.waitReady(ctx, c.within, c.ready)
}

// Healthy runs the component's status check.
func (c *Component) Healthy(ctx context.Context) error {
	if c.check != nil {
		return c.check(ctx)
	}
	return c.ready(ctx)
}

// bring makes the component available and says how: a process an earlier run started is left
// alone while it is current and healthy, and restarted when its binary or settings changed or
// it stopped answering; otherwise it is started. Only the dev stack has earlier runs.
func (c *Component) bring(ctx context.Context, logf func(string, ...any)) (string, error) {
	if c.ensure != nil {
		return c.ensure(ctx)
	}
	if c.prepare != nil {
		if err := c.prepare(ctx); err != nil {
			return "", err
		}
	}
	if rec, ok := c.proc.adopt(); ok {
		what := c.proc.changed(rec)
		if what == "" {
			if err := c.proc.waitReady(ctx, 15*time.Second, c.ready); err == nil {
				return "running", nil
			}
			what = "health"
		}
		if what == "health" {
			logf("  %s: running but not healthy; restarting it (log: %s)", c.name, c.proc.logPath)
		} else {
			logf("  %s: %s changed, restarting", c.name, what)
		}
		if err := c.proc.stop(); err != nil {
			return "", err
		}
	}
	if c.proc.recordPath != "" && tcpOpen(ctx, c.addr) == nil {
		if c.reuse && c.ready(ctx) == nil {
			return "a server the stack did not start answers; reusing it", nil
		}
		return "", fmt.Errorf("%s: something else listens on %s (another checkout's stack? run its `make down`)", c.name, c.addr)
	}
	if err := c.start(ctx); err != nil {
		return "", err
	}
	return "started", nil
}

// owner says who runs the component, for `status`.
func (c *Component) owner(healthy bool) string {
	if pid := c.PID(); pid != 0 {
		return fmt.Sprintf("stack (pid %d)", pid)
	}
	if healthy {
		return "machine (not started by the stack)"
	}
	return "not running; log: " + c.LogFile()
}

// UnavailableError marks a dependency the machine lacks (a binary that is not installed and
// cannot be): a test ends through testkit.Unavailable rather than failing outright.
type UnavailableError struct {
	Component string
	Err       error
}

func (e *UnavailableError) Error() string { return e.Component + ": " + e.Err.Error() }
func (e *UnavailableError) Unwrap() error { return e.Err }

// Unavailable returns the UnavailableError in err when every error joined in err is one.
func Unavailable(err error) (*UnavailableError, bool) {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	var missing *UnavailableError
	for _, e := range errs {
		if !errors.As(e, &missing) {
			return nil, false
		}
	}
	return missing, missing != nil
}

// tcpOpen reports whether something accepts connections at addr.
func tcpOpen(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}
