package smtpsender_test

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/privstack"
	"github.com/securemsg/securemsg/services/notification/internal/adapters/smtpsender"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

// TestSendTLSModes sends through every TLS mode, over real connections, to private mailpits
// that require STARTTLS, require implicit TLS, or offer no TLS at all, and reads back through
// mailpit's API what arrived. The mailpit requiring STARTTLS answers a plain MAIL FROM with 530,
// so whatever arrives there came over TLS.
func TestSendTLSModes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, otherCA := newCA(t, dir, "ca"), newCA(t, dir, "other-ca")
	cert, key := ca.issueServerCert(t, dir)
	// Any credentials are accepted. mailpit offers AUTH PLAIN only inside TLS, and go-mail fails a
	// send whose PLAIN login is not offered or is refused, so a delivery with a username proves
	// the login ran inside TLS. (mailpit records no username for PLAIN logins, so the
	// message itself cannot show it.)
	tlsFlags := []string{"--smtp-tls-cert", cert, "--smtp-tls-key", key, "--smtp-auth-accept-any"}
	starttls := privstack.StartMailpit(t, append(tlsFlags, "--smtp-require-starttls")...)
	implicit := privstack.StartMailpit(t, append(tlsFlags, "--smtp-require-tls")...)
	plain := privstack.StartMailpit(t)

	const (
		mandatory     = smtpsender.TLSStartTLSMandatory
		opportunistic = smtpsender.TLSStartTLSOpportunistic
	)
	tests := []struct {
		name       string
		server     *privstack.Mailpit
		mode       smtpsender.TLSMode
		caFile     string
		serverName string
		username   string        // when set, log in (AUTH PLAIN) after the TLS handshake
		timeout    time.Duration // of the send's context; 10s when zero
		// wantCode is the SendError code, "" when the alert must arrive. Every failure must
		// leave nothing in the mailbox.
		wantCode      string
		wantPermanent bool
	}{
		{name: "starttls mandatory delivers", server: starttls, mode: mandatory, caFile: ca.file},
		{name: "starttls mandatory checks the configured server name", server: starttls, mode: mandatory, caFile: ca.file, serverName: "localhost"},
		{name: "starttls mandatory refuses a certificate from another CA", server: starttls, mode: mandatory, caFile: otherCA.file, wantCode: "smtp_certificate"},
		{name: "starttls mandatory refuses a certificate for another name", server: starttls, mode: mandatory, caFile: ca.file, serverName: "mail.elsewhere.test", wantCode: "smtp_certificate"},
		{name: "starttls mandatory never falls back to plain", server: plain, mode: mandatory, caFile: ca.file, wantCode: "smtp_connect"},
		// The server above takes plain mail, so the refusal there was the sender's.
		{name: "plain delivers to a plain loopback server", server: plain, mode: smtpsender.TLSNone},
		{name: "opportunistic upgrades when offered", server: starttls, mode: opportunistic, caFile: ca.file},
		{name: "opportunistic refuses a bad certificate rather than send in clear", server: starttls, mode: opportunistic, caFile: otherCA.file, wantCode: "smtp_certificate"},
		{name: "implicit TLS delivers", server: implicit, mode: smtpsender.TLSImplicit, caFile: ca.file},
		{name: "starttls mandatory authenticates", server: starttls, mode: mandatory, caFile: ca.file, username: "alerts"},
		{name: "implicit TLS authenticates", server: implicit, mode: smtpsender.TLSImplicit, caFile: ca.file, username: "alerts"},
		{name: "implicit TLS refuses a certificate from another CA", server: implicit, mode: smtpsender.TLSImplicit, caFile: otherCA.file, wantCode: "smtp_certificate"},
		{name: "plain is refused where STARTTLS is required", server: starttls, mode: smtpsender.TLSNone, wantCode: "smtp_5xx", wantPermanent: true},
		// An implicit-TLS port never greets a client waiting for the greeting: the send must
		// end with its context (it used to hang for good, whatever the deadline).
		{name: "starttls against an implicit TLS port ends at the deadline", server: implicit, mode: mandatory, caFile: ca.file, timeout: 300 * time.Millisecond, wantCode: "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := smtpsender.New(smtpsender.Config{Addr: tt.server.Addr(), From: "alerts@riverside.test", Mode: tt.mode,
				CAFile: tt.caFile, ServerName: tt.serverName, Username: tt.username, Password: "not-checked"})
			if err != nil {
				t.Fatalf("New() = %v", err)
			}
			id := uuid.NewString()
			to, subject := "patient-"+id+"@notify.test", "New secure message "+id
			timeout := cmp.Or(tt.timeout, 10*time.Second)
			err = sendWithin(t, s, domain.Alert{DeliveryID: id, Channel: domain.ChannelEmail, Address: to,
				Text: domain.Rendered{Subject: subject, Body: "Log in to read it."}}, timeout)

			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("Send() = %v, want delivered", err)
				}
				got := waitMail(t, tt.server, to)
				if len(got.To) != 1 || got.To[0].Address != to || got.Subject != subject {
					t.Errorf("mailpit holds To %v, Subject %q; want %s, %q", got.To, got.Subject, to, subject)
				}
				return
			}
			var se *domain.SendError
			if !errors.As(err, &se) || se.Code != tt.wantCode || se.Permanent != tt.wantPermanent {
				t.Fatalf("Send() = %#v, want SendError{Code: %q, Permanent: %v}", err, tt.wantCode, tt.wantPermanent)
			}
			// A failed send never completed DATA, and mailpit stores a message before it
			// answers DATA: what is not there now never arrives.
			if n := len(mailsTo(t, tt.server, to)); n != 0 {
				t.Errorf("mailpit holds %d messages to %s after a failed send, want 0", n, to)
			}
		})
	}
}

// sendWithin sends a with a context of the given timeout and fails the test if Send outlives
// that deadline by more than a few seconds, rather than hanging until go test's -timeout.
func sendWithin(t *testing.T, s *smtpsender.Sender, a domain.Alert, timeout time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Send(ctx, a) }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout + 5*time.Second):
		t.Fatalf("Send() still running 5s after its %s deadline", timeout)
		return nil
	}
}

// mailMessage is the part of mailpit's message summary the test checks.
type mailMessage struct {
	Subject string
	To      []struct{ Address string }
}

// mailsTo searches m for messages to addr through mailpit's HTTP API.
func mailsTo(t *testing.T, m *privstack.Mailpit, addr string) []mailMessage {
	t.Helper()
	u := m.APIURL() + "/api/v1/search?" + url.Values{"query": {`to:"` + addr + `"`}}.Encode()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	var res struct{ Messages []mailMessage }
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		t.Fatalf("decode %s: %v", u, err)
	}
	return res.Messages
}

// waitMail returns the one message to addr, polling in case mailpit indexes it a moment after
// it answered DATA.
func waitMail(t *testing.T, m *privstack.Mailpit, addr string) mailMessage {
	t.Helper()
	var found []mailMessage
	testkit.WaitFor(t, 5*time.Second, "the message to "+addr, func() bool {
		found = mailsTo(t, m, addr)
		return len(found) > 0
	})
	if len(found) != 1 {
		t.Fatalf("mailpit holds %d messages to %s, want 1", len(found), addr)
	}
	return found[0]
}

// testCA is a throwaway certificate authority; file holds its certificate (PEM), the CA file a
// sender trusts.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newCA(t *testing.T, dir, name string) testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, name+".pem")
	writePEM(t, file, "CERTIFICATE", der)
	return testCA{cert: cert, key: key, file: file}
}

// issueServerCert writes a server certificate for 127.0.0.1 and localhost, and its key, into
// dir.
func (ca testCA) issueServerCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", pkcs8)
	return certFile, keyFile
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func writePEM(t *testing.T, file, blockType string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
