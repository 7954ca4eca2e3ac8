package testkit

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
)

// LogCapture holds everything the code under test wrote to stderr (the services' loggers write
// there), so a test package can prove that no PHI marker it wrote ever reached a log line.
type LogCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Contains reports whether s appears anywhere in what was captured so far.
func (c *LogCapture) Contains(s string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Contains(c.buf.Bytes(), []byte(s))
}

// Bytes returns a copy of what was captured so far.
func (c *LogCapture) Bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf.Bytes())
}

// RunCapturingLogs is a test package's TestMain body: it runs m with stderr captured into c
// (echoed when -v is given), then fails the run if any of forbidden appears in the capture, and
// exits with the result. Use it as
//
//	var logs testkit.LogCapture
//	func TestMain(m *testing.M) { testkit.RunCapturingLogs(m, &logs, markerPrefix) }
func RunCapturingLogs(m *testing.M, c *LogCapture, forbidden ...string) {
	realStderr := os.Stderr
	r, w, err := os.Pipe()
	if err != nil {
		_, _ = fmt.Fprintln(realStderr, "pipe:", err)
		os.Exit(1)
	}
	os.Stderr = w
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			c.mu.Lock()
			c.buf.Write(sc.Bytes())
			c.buf.WriteByte('\n')
			c.mu.Unlock()
			if testing.Verbose() {
				_, _ = fmt.Fprintln(realStderr, sc.Text())
			}
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	code := m.Run()
	os.Stderr = realStderr
	_ = w.Close()
	<-done
	for _, f := range forbidden {
		if c.Contains(f) {
			_, _ = fmt.Fprintf(realStderr, "FAIL: forbidden text %q found in the captured logs\n", f)
			code = 1
		}
	}
	os.Exit(code)
}
