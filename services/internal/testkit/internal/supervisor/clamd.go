package supervisor

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"crypto/md5" //nolint:gosec // G501: clamd's .hdb signatures are MD5 digests; nothing is protected by it
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
)

// clamd is Debian's clamd with a config of the stack's own: it never uses the system service,
// its config or its signature database. The only signatures are the EICAR test file's, so
// clamd starts in a second and detects exactly the test file; no freshclam. There are two
// (clamdSignatures): the file's MD5 (an .hdb line), and its 68 bytes as a body signature
// anywhere in anything clamd scans (an .ndb line), which is what finds EICAR inside a zip or a
// docx once clamd has unpacked it, and behind a PDF header or inside a PDF's compressed stream.
// The databases are part of the settings, so an existing dev stack restarts clamd on the next
// `up` when they change; the readiness check asks for the embedded detection too, so a clamd
// with an older database is never taken as ready. The dev stack installs clamav-daemon with
// apt-get on first use; a private stack without clamd ends its test through Unavailable.
func (s *Stack) clamd() *Component {
	addr := HostPort(s.cfg.Ports.Clamd)
	c := s.component("clamd", s.cfg.Ports.Clamd, func(ctx context.Context) error { return ClamdDetectsEICAR(ctx, addr) })
	c.reuse = true
	conf := s.statePath("clamd", "clamd.conf")
	body := clamdConfig(s.cfg.Ports.Clamd, s.statePath("clamd", "db"), s.statePath("clamd", "tmp"))
	sigs := clamdSignatures()
	c.proc.args, c.proc.settings = []string{"--config-file=" + conf}, []string{body}
	for _, f := range sigs {
		c.proc.settings = append(c.proc.settings, f.name+"\n"+f.body)
	}
	c.prepare = func(ctx context.Context) error {
		bin, err := s.clamdBinary(ctx)
		if err != nil {
			return err
		}
		c.proc.path = bin
		if err := os.MkdirAll(s.statePath("clamd", "tmp"), 0o755); err != nil {
			return err
		}
		for _, f := range sigs {
			if err := writeFile(s.statePath("clamd", "db", f.name), f.body); err != nil {
				return err
			}
		}
		return writeFile(conf, body)
	}
	return c
}

// signatureFile is one file of clamd's signature database directory.
type signatureFile struct{ name, body string }

// clamdSignatures is the stack's signature database: the EICAR file by its MD5 and size
// (.hdb: "md5:size:name"), and by its bytes anywhere in a file of any type (.ndb:
// "name:target type:offset:hex", target type 0 any file, offset * anywhere). A hash names only
// the whole file, so without the body signature EICAR with one byte around it, or inside a
// document, passes.
func clamdSignatures() []signatureFile {
	sum := md5.Sum(EICAR()) //nolint:gosec // G401: the .hdb format names a file by its MD5
	return []signatureFile{
		{name: "eicar.hdb", body: fmt.Sprintf("%s:%d:Eicar-Test-Signature\n", hex.EncodeToString(sum[:]), len(EICAR()))},
		{name: "eicar.ndb", body: fmt.Sprintf("Eicar-Test-Signature-Embedded:0:*:%s\n", hex.EncodeToString(EICAR()))},
	}
}

func clamdConfig(port int, dbDir, tmpDir string) string {
	return fmt.Sprintf(`# Written by the stack supervisor (services/internal/testkit/internal/supervisor).
TCPSocket %d
TCPAddr 127.0.0.1
DatabaseDirectory %s
TemporaryDirectory %s
# No LogFile: in the foreground clamd logs to stderr, which goes to the component's log.
LogTime yes
Foreground yes
# Attachments may be 25 MiB and more; INSTREAM refuses anything above StreamMaxLength.
StreamMaxLength 100M
MaxFileSize 100M
MaxScanSize 400M
# Unpack what it scans, so a signature finds what a container holds: zip archives (and docx,
# which is one) and PDF streams. These are clamd's defaults, written out because the tests of
# embedded malware depend on them.
ScanArchive yes
ScanPDF yes
# The test database never changes while clamd runs (a change restarts it).
SelfCheck 0
ConcurrentDatabaseReload no
MaxThreads 4
`, port, dbDir, tmpDir)
}

// clamdBinary finds clamd, installing Debian's clamav-daemon first in the dev stack.
func (s *Stack) clamdBinary(ctx context.Context) (string, error) {
	find := func() (string, error) {
		if bin, err := exec.LookPath("clamd"); err == nil {
			return bin, nil
		}
		if _, err := os.Stat("/usr/sbin/clamd"); err != nil {
			return "", err
		}
		return "/usr/sbin/clamd", nil
	}
	bin, err := find()
	if err == nil || !s.cfg.Detached {
		if err != nil {
			err = &UnavailableError{Component: "clamd", Err: errors.New("no clamd binary (apt-get install clamav-daemon, or run `make up` once)")}
		}
		return bin, err
	}
	s.logf("  clamd: installing clamav-daemon with apt-get (first run only)...")
	log := s.statePath("clamd", "apt.log")
	if err := os.MkdirAll(s.statePath("clamd"), 0o755); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "bash", "-c",
		`{ apt-get update -qq && apt-get install -y -qq --no-install-recommends clamav-daemon; } >>"$1" 2>&1`, "_", log)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("clamd: apt-get install clamav-daemon failed (%v); see %s\n%s", err, log, out)
	}
	return find()
}

// EICAR returns the 68-byte EICAR anti-virus test file. It is assembled from two halves so that
// this source file itself never matches a scanner's EICAR signature.
func EICAR() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR` + `-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`)
}

// ClamdDetectsEICAR succeeds when clamd at addr answers PING and, with the stack's test
// signature database, finds the EICAR test file, finds it inside a compressed zip member with
// text around it (the body signature, and archive scanning), and passes clean data.
func ClamdDetectsEICAR(ctx context.Context, addr string) error {
	if err := ClamdPing(ctx, addr); err != nil {
		return err
	}
	zipped, err := eicarInZip()
	if err != nil {
		return err
	}
	for _, probe := range []struct {
		what, hint string
		data       []byte
	}{
		{what: "EICAR", hint: "is the test signature database loaded?", data: EICAR()},
		{what: "EICAR inside a zip", hint: "is the body signature eicar.ndb loaded, and ScanArchive on?", data: zipped},
	} {
		verdict, err := ClamdScan(ctx, addr, bytes.NewReader(probe.data))
		if err != nil {
			return err
		}
		if !strings.HasSuffix(verdict, " FOUND") {
			return fmt.Errorf("clamd answers PONG but scanned %s as %q, want FOUND (%s)", probe.what, verdict, probe.hint)
		}
	}
	verdict, err := ClamdScan(ctx, addr, strings.NewReader("clean sample\n"))
	if err != nil {
		return err
	}
	if verdict != "OK" {
		return fmt.Errorf("clamd scanned a clean sample as %q, want OK", verdict)
	}
	return nil
}

// eicarInZip is a zip whose one deflated member holds EICAR between lines of text: neither the
// file's hash nor its raw bytes appear, so only unpacking and the body signature find it.
func eicarInZip() ([]byte, error) {
	var b bytes.Buffer
	z := zip.NewWriter(&b)
	w, err := z.Create("notes.txt")
	if err == nil {
		_, err = w.Write(slices.Concat([]byte("first line\n"), EICAR(), []byte("\nlast line\n")))
	}
	if err = errors.Join(err, z.Close()); err != nil {
		return nil, fmt.Errorf("build the EICAR zip: %w", err)
	}
	return b.Bytes(), nil
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
	defer func() { _ = conn.Close() }() // the reply was read or the command failed
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
				binary.BigEndian.PutUint32(size[:], uint32(n)) //nolint:gosec // n <= 32 KiB
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
	if err != nil && (!errors.Is(err, io.EOF) || len(reply) == 0) {
		return "", fmt.Errorf("clamd %s reply: %w", cmd, err)
	}
	return string(bytes.TrimRight(reply, "\x00\n")), nil
}
