package clamd_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/securemsg/securemsg/services/attachment/internal/adapters/clamd"
	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// EICAR is the standard antivirus test file, assembled at run time so this source file is not
// itself flagged by scanners.
func EICAR() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")
}

func client(t testing.TB) *clamd.Client {
	t.Helper()
	addr := testkit.LoadStack().ClamdAddr
	testkit.RequireTCP(t, "clamd", addr)
	return clamd.New(addr)
}

func TestScanRealClamd(t *testing.T) {
	t.Parallel()
	c := client(t)
	if err := c.Ping(t.Context()); err != nil {
		t.Fatalf("Ping() = %v", err)
	}
	big := bytes.Repeat([]byte("clean text line\n"), 1<<20/16*3) // 3 MiB: many chunks
	embedded := slices.Concat([]byte("before\n"), EICAR(), []byte("\nafter\n"))
	tests := []struct {
		name     string
		data     []byte
		infected bool
	}{
		{name: "clean small", data: []byte("hello")},
		{name: "clean multi-chunk", data: big},
		{name: "empty", data: nil},
		{name: "eicar", data: EICAR(), infected: true},
		// EICAR with text around it, so the file's hash is not the test file's: found only by
		// a signature that looks inside a file, after clamd has unpacked the container.
		{name: "eicar in a zip member", data: testkit.Zip(t, testkit.ZipMember{Name: "notes.txt", Body: embedded}), infected: true},
		{name: "eicar in a docx", data: testkit.Zip(t, testkit.ZipMember{Name: "[Content_Types].xml", Body: []byte("<Types/>")}, testkit.ZipMember{Name: "word/document.xml", Body: embedded}), infected: true},
		{name: "eicar behind a PDF header", data: slices.Concat([]byte("%PDF-1.7\n"), embedded), infected: true},
		{name: "eicar in a PDF stream", data: testkit.PDFStream(t, embedded), infected: true},
		{name: "clean zip", data: testkit.Zip(t, testkit.ZipMember{Name: "notes.txt", Body: []byte("harmless\n")})},
		{name: "clean PDF", data: testkit.PDFStream(t, []byte("harmless"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := c.Scan(t.Context(), bytes.NewReader(tt.data))
			if err != nil {
				t.Fatalf("Scan(%s) = %v", tt.name, err)
			}
			if v.Infected != tt.infected {
				t.Errorf("Scan(%s).Infected = %v, want %v", tt.name, v.Infected, tt.infected)
			}
			if tt.infected && !strings.Contains(strings.ToLower(v.Signature), "eicar") {
				t.Errorf("Scan(%s).Signature = %q, want an EICAR signature", tt.name, v.Signature)
			}
		})
	}
}

func TestScanUnreachableDrainsReader(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil { // nothing listens there now
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	written := make(chan error, 1)
	go func() {
		// The writer must not block even though the scanner cannot connect.
		_, err := pw.Write(make([]byte, 1<<20))
		written <- errors.Join(err, pw.Close())
	}()
	_, err = clamd.New(addr).Scan(t.Context(), pr)
	if !errors.Is(err, clamd.ErrScanner) {
		t.Errorf("Scan(unreachable) = %v, want ErrScanner", err)
	}
	select {
	case err := <-written:
		if err != nil {
			t.Errorf("the writer feeding Scan failed: %v, want its bytes drained", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("the writer feeding Scan is still blocked after Scan returned")
	}
}

func TestScanClosedMidStream(t *testing.T) {
	t.Parallel()
	// A fake clamd that reads a little and hangs up, as clamd does past StreamMaxLength.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		// The client may hang up first; the test judges only what Scan returns.
		buf := make([]byte, 1000)
		_, _ = io.ReadFull(c, buf)
		_, _ = c.Write([]byte("INSTREAM size limit exceeded. ERROR\x00"))
		_ = c.Close()
	}()
	_, err = clamd.New(l.Addr().String()).Scan(t.Context(), bytes.NewReader(make([]byte, 8<<20)))
	if !errors.Is(err, clamd.ErrScanner) {
		t.Errorf("Scan(refused stream) = %v, want ErrScanner", err)
	}
}

func TestParseReply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		reply   string
		want    domain.Verdict
		wantErr bool
	}{
		{reply: "stream: OK", want: domain.Verdict{}},
		{reply: "stream: Eicar-Test-Signature FOUND", want: domain.Verdict{Infected: true, Signature: "Eicar-Test-Signature"}},
		{reply: "stream:  FOUND", wantErr: true},
		{reply: "INSTREAM size limit exceeded. ERROR", wantErr: true},
		{reply: "", wantErr: true},
		{reply: "stream: OK extra", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.reply, func(t *testing.T) {
			got, err := clamd.ParseReply(tt.reply)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseReply(%q) = %+v, %v, want %+v, error %v", tt.reply, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func FuzzParseReply(f *testing.F) {
	for _, s := range []string{"stream: OK", "stream: X FOUND", "x ERROR", "stream: \x00\xff FOUND"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, reply string) {
		v, err := clamd.ParseReply(reply)
		if err == nil && v.Infected && (v.Signature == "" || len(v.Signature) > 120) {
			t.Fatalf("ParseReply(%q) = %+v: bad signature", reply, v)
		}
		for _, r := range v.Signature {
			if r < 0x20 || r >= 0x7f {
				t.Fatalf("ParseReply(%q) signature keeps %U", reply, r)
			}
		}
	})
}
