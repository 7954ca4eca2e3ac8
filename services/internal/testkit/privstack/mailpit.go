package privstack

import (
	"testing"

	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/internal/supervisor"
)

// Mailpit is a mailpit process of its own, outside any Stack, started by StartMailpit. Its
// Component methods (Addr is the SMTP host:port, Stop, Start, LogFile) work as a Stack's do.
type Mailpit struct {
	*Component
	apiURL string
}

// APIURL is the mailpit's HTTP API base URL (e.g. APIURL()+"/api/v1/messages").
func (m *Mailpit) APIURL() string { return m.apiURL }

// StartMailpit starts the pinned mailpit on free 127.0.0.1 ports with extra flags after
// privstack's own (the SMTP TLS ones, say: --smtp-tls-cert, --smtp-tls-key,
// --smtp-require-starttls, --smtp-require-tls), waits until it is ready and stops it when tb
// ends. It is for tests that need a mail server configured unlike the stack's, without the rest
// of a Stack. A machine without the mailpit binary ends tb through testkit.Unavailable.
func StartMailpit(tb testing.TB, extra ...string) *Mailpit {
	tb.Helper()
	c, apiURL, err := supervisor.StartMailpit(tb.Context(), testkit.RepoRoot(), tb.TempDir(), extra...)
	if c != nil {
		// The log lives in tb's temp dir, which goes with the test: a failed test gets its tail now.
		tb.Cleanup(func() {
			if err := c.Stop(); err != nil {
				tb.Error(err)
			}
			if tb.Failed() {
				tb.Logf("privstack: mailpit %s log:\n%s", c.Addr(), supervisor.LogTail(c.LogFile(), 30))
			}
		})
	}
	if missing, ok := supervisor.Unavailable(err); ok {
		testkit.Unavailable(tb, missing.Component, err)
		return nil
	}
	if err != nil {
		tb.Fatalf("privstack: %v (extra flags %q)", err, extra)
	}
	return &Mailpit{Component: c, apiURL: apiURL}
}
