// Command stack runs the local dev stack (package supervisor, in its detached, fixed-port mode):
//
//	stack up       install (first run) and start everything, then the four services and the
//	               reference portal (built with npm first)
//	stack status   print every endpoint with its health; exit 1 if anything is down
//	stack down     stop what `up` started; never the machine's Postgres
//	stack env      print `export SECUREMSG_TEST_...` lines for the tests (testkit.LoadStack)
//
// scripts/stack.sh runs it (`make up`, `make down`, `make status`). SECUREMSG_STACK_READY_SECS
// bounds each component's start (default 60). SECUREMSG_TRACES=1 on `up` also runs Jaeger (UI
// and query API on 127.0.0.1:16686) and has the services export their traces to it; an `up`
// without it stops Jaeger again.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/securemsg/securemsg/services/internal/testkit/internal/supervisor"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: stack up|status|down|env")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := supervisor.DevConfig(supervisor.RepoRoot())
	cfg.Traces = os.Getenv("SECUREMSG_TRACES") == "1"
	if secs, err := strconv.Atoi(os.Getenv("SECUREMSG_STACK_READY_SECS")); err == nil && secs > 0 {
		cfg.StartTimeout = time.Duration(secs) * time.Second
	}
	switch args[0] {
	case "env":
		for _, kv := range cfg.TestEnv() {
			fmt.Printf("export %s='%s'\n", kv[0], kv[1])
		}
	case "status":
		if !supervisor.New(cfg).Status(ctx, os.Stdout) {
			return 1
		}
	case "up":
		return up(ctx, cfg)
	case "down":
		lock, err := supervisor.Lock(cfg.Dir, 5*time.Minute)
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			return 1
		}
		defer func() { _ = lock.Close() }() // releases the lock; exiting would too
		stopped, err := supervisor.New(cfg).Down()
		if len(stopped) > 0 {
			fmt.Println("stopped:", strings.Join(stopped, " "))
		} else {
			fmt.Println("nothing of the stack was running")
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			return 1
		}
	default:
		fmt.Fprintf(os.Stderr, "stack: unknown command %q (want up, status, down or env)\n", args[0])
		return 2
	}
	return 0
}

func up(ctx context.Context, cfg supervisor.Config) int {
	began := time.Now()
	lock, err := supervisor.Lock(cfg.Dir, 5*time.Minute)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	defer func() { _ = lock.Close() }() // releases the lock; exiting would too
	cfg.Logf = func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	fmt.Println("securemsg dev stack: up")
	s := supervisor.New(cfg)
	err = s.Up(ctx)
	elapsed := time.Since(began).Round(100 * time.Millisecond)
	fmt.Println()
	s.Status(ctx, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "\nerror: stack up incomplete after %s:\n%v\n", elapsed, err)
		return 1
	}
	fmt.Printf("\nstack up in %s\n", elapsed)
	return 0
}
