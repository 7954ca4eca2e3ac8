// Package clamd is a client for ClamAV's daemon over TCP: PING and the INSTREAM scan.
//
// INSTREAM (clamd(8)): the client sends "zINSTREAM\0", then the data as chunks, each a 4-byte
// big-endian length followed by that many bytes, then a zero-length chunk; clamd answers one
// NUL-terminated line: "stream: OK", "stream: <signature> FOUND", or "<text> ERROR" (for example
// "INSTREAM size limit exceeded. ERROR", which clamd may send before the stream ends, closing the
// connection). No Go client for this small protocol is well kept, so it is written here, against
// the protocol description, and tested against a real clamd.
package clamd

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

	"github.com/securemsg/securemsg/services/attachment/internal/domain"
)

// ErrScanner is wrapped by every error that means the scan did not produce a verdict (clamd
// unreachable, refused the stream, answered something unexpected).
var ErrScanner = errors.New("clamd: no verdict")

// chunkSize is how much is sent per INSTREAM chunk; clamd's default StreamMaxLength is 25 MiB
// and it reads chunks into a buffer of its own, so a modest size keeps both sides' memory small.
const chunkSize = 64 << 10

// Client talks to one clamd address. It holds no connection between calls; each scan opens
// its own, so it is safe for concurrent use.
type Client struct {
	Addr string
	// DialTimeout bounds connecting; Timeout bounds the wait for the verdict after the last
	// chunk (clamd scans only then).
	DialTimeout time.Duration
	Timeout     time.Duration
}

// New returns a client for addr (host:port) with default timeouts.
func New(addr string) *Client {
	return &Client{Addr: addr, DialTimeout: 3 * time.Second, Timeout: 2 * time.Minute}
}

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: c.DialTimeout}
	conn, err := d.DialContext(ctx, "tcp", c.Addr)
	if err != nil {
		return nil, fmt.Errorf("%w: connect: %v", ErrScanner, err)
	}
	return conn, nil
}

// Ping checks clamd answers PONG.
func (c *Client) Ping(ctx context.Context) error {
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	stop := context.AfterFunc(ctx, func() { expire(conn) })
	defer stop()
	if err := conn.SetDeadline(time.Now().Add(c.DialTimeout)); err != nil {
		return fmt.Errorf("%w: ping: %v", ErrScanner, err)
	}
	if _, err := conn.Write([]byte("zPING\x00")); err != nil {
		return fmt.Errorf("%w: ping: %v", ErrScanner, err)
	}
	reply, err := readReply(conn)
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return fmt.Errorf("%w: ping: unexpected reply", ErrScanner)
	}
	return nil
}

// Scan streams r to clamd with INSTREAM and returns the verdict. It reads r to its end even
// when clamd fails part-way (draining it), so a writer feeding r through a pipe never blocks;
// the returned error then wraps ErrScanner.
func (c *Client) Scan(ctx context.Context, r io.Reader) (domain.Verdict, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		_, _ = io.Copy(io.Discard, r)
		return domain.Verdict{}, err
	}
	defer closeConn(conn)
	stop := context.AfterFunc(ctx, func() { expire(conn) })
	defer stop()

	v, err := c.instream(conn, r)
	if err != nil {
		_, _ = io.Copy(io.Discard, r)
		if ctx.Err() != nil {
			return domain.Verdict{}, fmt.Errorf("%w: %v", ErrScanner, ctx.Err())
		}
	}
	return v, err
}

func (c *Client) instream(conn net.Conn, r io.Reader) (domain.Verdict, error) {
	if _, err := conn.Write([]byte("zINSTREAM\x00")); err != nil {
		return domain.Verdict{}, fmt.Errorf("%w: send command: %v", ErrScanner, err)
	}
	buf := make([]byte, 4+chunkSize)
	for {
		n, rerr := io.ReadFull(r, buf[4:])
		if n > 0 {
			binary.BigEndian.PutUint32(buf[:4], uint32(n)) //nolint:gosec // G115: n is at most chunkSize
			if _, err := conn.Write(buf[:4+n]); err != nil {
				// clamd closes the connection after refusing a stream (size limit); its reply
				// explains why, so read it before giving up.
				if reply, rerr := readReply(conn); rerr == nil {
					return domain.Verdict{}, fmt.Errorf("%w: %s", ErrScanner, sanitize(reply))
				}
				return domain.Verdict{}, fmt.Errorf("%w: send chunk: %v", ErrScanner, err)
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return domain.Verdict{}, fmt.Errorf("read stream: %w", rerr)
		}
	}
	if _, err := conn.Write([]byte{0, 0, 0, 0}); err != nil {
		return domain.Verdict{}, fmt.Errorf("%w: send end: %v", ErrScanner, err)
	}
	if c.Timeout > 0 {
		if err := conn.SetReadDeadline(time.Now().Add(c.Timeout)); err != nil {
			return domain.Verdict{}, fmt.Errorf("%w: set read deadline: %v", ErrScanner, err)
		}
	}
	reply, err := readReply(conn)
	if err != nil {
		return domain.Verdict{}, err
	}
	return ParseReply(reply)
}

// closeConn ends a conversation with clamd whose outcome is already known (a verdict read, or
// an error returned): a failed close changes neither.
func closeConn(conn net.Conn) { _ = conn.Close() }

// expire makes the connection's pending reads and writes fail now, so that a cancelled request
// stops waiting for clamd. It fails only on a closed connection, which waits for nothing.
func expire(conn net.Conn) { _ = conn.SetDeadline(time.Now()) }

// readReply reads one NUL- (or newline-) terminated reply.
func readReply(conn net.Conn) (string, error) {
	line, err := bufio.NewReaderSize(io.LimitReader(conn, 4096), 512).ReadString(0)
	if err != nil && (err != io.EOF || line == "") {
		return "", fmt.Errorf("%w: read reply: %v", ErrScanner, err)
	}
	return strings.TrimRight(line, "\x00\n"), nil
}

// ParseReply interprets an INSTREAM reply: "stream: OK" is clean, "stream: <sig> FOUND" is
// infected, anything else (an ERROR) is no verdict.
func ParseReply(reply string) (domain.Verdict, error) {
	rest, ok := strings.CutPrefix(reply, "stream: ")
	switch {
	case ok && rest == "OK":
		return domain.Verdict{}, nil
	case ok && strings.HasSuffix(rest, " FOUND"):
		sig := sanitize(strings.TrimSpace(strings.TrimSuffix(rest, " FOUND")))
		if sig == "" {
			return domain.Verdict{}, fmt.Errorf("%w: FOUND without a signature", ErrScanner)
		}
		return domain.Verdict{Infected: true, Signature: sig}, nil
	}
	return domain.Verdict{}, fmt.Errorf("%w: %s", ErrScanner, sanitize(reply))
}

// sanitize keeps a reply printable and short before it reaches logs, events or errors.
func sanitize(s string) string {
	var b bytes.Buffer
	for _, r := range s {
		if b.Len() >= 120 {
			break
		}
		if r >= 0x20 && r < 0x7f {
			b.WriteRune(r)
		}
	}
	return b.String()
}
