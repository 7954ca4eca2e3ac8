// Command stackprobe answers the dev stack's readiness questions a TCP connect cannot:
//
//	stackprobe jetstream -url nats://127.0.0.1:4222    exit 0 when JetStream answers
//	stackprobe clamd -addr 127.0.0.1:3310              exit 0 on PONG
//	stackprobe clamd-eicar -addr 127.0.0.1:3310        exit 0 when EICAR is FOUND and clean data is OK
//
// Every check accepts -timeout; exit code 1 means the check failed, 2 bad usage.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/securemsg/securemsg/devstack/internal/stackcheck"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: stackprobe jetstream|clamd|clamd-eicar [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	url := fs.String("url", "nats://127.0.0.1:4222", "NATS URL (jetstream)")
	addr := fs.String("addr", "127.0.0.1:3310", "clamd TCP address (clamd, clamd-eicar)")
	timeout := fs.Duration("timeout", 5*time.Second, "deadline for the check")
	_ = fs.Parse(os.Args[2:])
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	var err error
	switch os.Args[1] {
	case "jetstream":
		err = stackcheck.JetStreamEnabled(ctx, *url)
	case "clamd":
		err = stackcheck.ClamdPing(ctx, *addr)
	case "clamd-eicar":
		err = eicarDetected(ctx, *addr)
	default:
		fmt.Fprintf(os.Stderr, "stackprobe: unknown check %q\n", os.Args[1])
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "stackprobe %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func eicarDetected(ctx context.Context, addr string) error {
	verdict, err := stackcheck.ClamdScan(ctx, addr, bytes.NewReader(stackcheck.EICAR()))
	if err != nil {
		return err
	}
	if !strings.HasSuffix(verdict, " FOUND") {
		return fmt.Errorf("EICAR scanned as %q, want FOUND (is the test signature database loaded?)", verdict)
	}
	if verdict, err = stackcheck.ClamdScan(ctx, addr, strings.NewReader("clean sample\n")); err != nil {
		return err
	}
	if verdict != "OK" {
		return fmt.Errorf("clean sample scanned as %q, want OK", verdict)
	}
	return nil
}
