// Package stackcheck holds the readiness probes of the dev stack that a TCP connect cannot
// answer: whether NATS has JetStream enabled, and whether clamd answers and actually detects the
// EICAR test file with the stack's test signature database.
package stackcheck

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStreamEnabled connects to the NATS server at url and reports an error unless JetStream
// answers for the account (the services' outbox relay and consumers need it).
func JetStreamEnabled(ctx context.Context, url string) error {
	timeout := 3 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	nc, err := nats.Connect(url, nats.Name("securemsg-stack-probe"), nats.Timeout(timeout), nats.NoReconnect())
	if err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream context: %w", err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("jetstream account info: %w", err)
	}
	return nil
}

// EICAR returns the 68-byte EICAR anti-virus test file. It is assembled from two halves so that
// this source file itself never matches a scanner's EICAR signature.
func EICAR() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR` + `-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`)
}

// ClamdPing sends PING to clamd at addr and expects PONG.
func ClamdPing(ctx context.Context, addr string) error {
	reply, err := clamdCommand(ctx, addr, "PING", nil)
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return fmt.Errorf("clamd PING answered %q, want PONG", reply)
	}
	return nil
}

// ClamdScan streams r to clamd with INSTREAM and returns its verdict without the "stream: "
// prefix: "OK", or "<signature> FOUND". clamd's errors (e.g. size limit exceeded) come back as
// errors.
func ClamdScan(ctx context.Context, addr string, r io.Reader) (string, error) {
	reply, err := clamdCommand(ctx, addr, "INSTREAM", r)
	if err != nil {
		return "", err
	}
	verdict := strings.TrimPrefix(reply, "stream: ")
	if strings.HasSuffix(verdict, " ERROR") {
		return "", fmt.Errorf("clamd: %s", verdict)
	}
	return verdict, nil
}

// clamdCommand speaks clamd's NUL-terminated ("z") protocol: one command per connection, the
// INSTREAM body as length-prefixed chunks ending with a zero-length chunk.
func clamdCommand(ctx context.Context, addr, cmd string, body io.Reader) (string, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("connect to clamd: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	w := bufio.NewWriter(conn)
	if _, err := w.WriteString("z" + cmd + "\x00"); err != nil {
		return "", fmt.Errorf("clamd %s: %w", cmd, err)
	}
	if body != nil {
		buf := make([]byte, 32<<10)
		var size [4]byte
		for {
			n, rerr := body.Read(buf)
			if n > 0 {
				binary.BigEndian.PutUint32(size[:], uint32(n))
				if _, err := w.Write(size[:]); err != nil {
					return "", fmt.Errorf("clamd %s: %w", cmd, err)
				}
				if _, err := w.Write(buf[:n]); err != nil {
					return "", fmt.Errorf("clamd %s: %w", cmd, err)
				}
			}
			if errors.Is(rerr, io.EOF) {
				break
			}
			if rerr != nil {
				return "", fmt.Errorf("read scan input: %w", rerr)
			}
		}
		if _, err := w.Write([]byte{0, 0, 0, 0}); err != nil {
			return "", fmt.Errorf("clamd %s: %w", cmd, err)
		}
	}
	if err := w.Flush(); err != nil {
		return "", fmt.Errorf("clamd %s: %w", cmd, err)
	}
	reply, err := bufio.NewReader(conn).ReadBytes(0)
	if err != nil && !(errors.Is(err, io.EOF) && len(reply) > 0) {
		return "", fmt.Errorf("clamd %s reply: %w", cmd, err)
	}
	return string(bytes.TrimRight(reply, "\x00\n")), nil
}
