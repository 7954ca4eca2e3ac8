package devca

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func ensureDir(t *testing.T, now time.Time) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	written, err := Ensure(dir, now)
	if err != nil {
		t.Fatalf("Ensure(%s) error = %v", dir, err)
	}
	if want := 2 + 2*len(Leaves()); len(written) != want {
		t.Fatalf("Ensure(empty dir) wrote %d files, want %d", len(written), want)
	}
	return dir
}

// keyPair loads <name>.pem and <name>-key.pem from dir as a TLS certificate.
func keyPair(t *testing.T, dir, name string) tls.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
	if err != nil {
		t.Fatalf("LoadX509KeyPair(%s) error = %v", name, err)
	}
	return pair
}

// caPool is the trust pool that holds dir's CA certificate.
func caPool(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("ca.pem holds no certificate")
	}
	return roots
}

func TestChainsAndSANs(t *testing.T) {
	t.Parallel()
	dir := ensureDir(t, time.Now())
	roots := caPool(t, dir)

	tests := []struct {
		name   string
		uri    string
		names  []string // server names the certificate must verify for
		server bool
	}{
		{name: "messaging", uri: "spiffe://securemsg.local/service/messaging", names: []string{"messaging", "messaging.securemsg.svc", "localhost", "127.0.0.1"}, server: true},
		{name: "attachment", uri: "spiffe://securemsg.local/service/attachment", names: []string{"attachment", "attachment.securemsg.svc", "localhost", "127.0.0.1"}, server: true},
		{name: "notification", uri: "spiffe://securemsg.local/service/notification", names: []string{"notification", "notification.securemsg.svc", "localhost", "127.0.0.1"}, server: true},
		{name: "audit", uri: "spiffe://securemsg.local/service/audit", names: []string{"audit", "audit.securemsg.svc", "localhost", "127.0.0.1"}, server: true},
		{name: "careteam-app", uri: "spiffe://securemsg.local/client/careteam-app"},
		{name: "ctl", uri: "spiffe://securemsg.local/client/ctl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cert := keyPair(t, dir, tt.name).Leaf
			if len(cert.URIs) != 1 || cert.URIs[0].String() != tt.uri {
				t.Errorf("URI SANs = %v, want [%s]", cert.URIs, tt.uri)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("Verify(client auth) error = %v", err)
			}
			_, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if tt.server != (err == nil) {
				t.Errorf("Verify(server auth) error = %v, want server=%v", err, tt.server)
			}
			for _, n := range tt.names {
				if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: n}); err != nil {
					t.Errorf("Verify(DNSName %s) error = %v", n, err)
				}
			}
			if cert.IsCA {
				t.Errorf("IsCA = true, want false")
			}
		})
	}
}

// TestMutualTLSHandshake proves a service certificate works on both ends of an mTLS connection
// and that each side sees the other's SPIFFE identity.
func TestMutualTLSHandshake(t *testing.T) {
	t.Parallel()
	dir := ensureDir(t, time.Now())
	roots := caPool(t, dir)
	serverConn, clientConn := net.Pipe()
	server := tls.Server(serverConn, &tls.Config{
		Certificates: []tls.Certificate{keyPair(t, dir, "messaging")},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    roots,
		MinVersion:   tls.VersionTLS13,
	})
	client := tls.Client(clientConn, &tls.Config{
		Certificates: []tls.Certificate{keyPair(t, dir, "attachment")},
		RootCAs:      roots,
		ServerName:   "messaging.securemsg.svc",
		MinVersion:   tls.VersionTLS13,
	})
	errc := make(chan error, 1)
	go func() { errc <- server.HandshakeContext(t.Context()) }()
	if err := client.HandshakeContext(t.Context()); err != nil {
		t.Fatalf("client handshake error = %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake error = %v", err)
	}
	if got := server.ConnectionState().PeerCertificates[0].URIs[0].String(); got != ServiceID("attachment") {
		t.Errorf("server sees client %s, want %s", got, ServiceID("attachment"))
	}
	if got := client.ConnectionState().PeerCertificates[0].URIs[0].String(); got != ServiceID("messaging") {
		t.Errorf("client sees server %s, want %s", got, ServiceID("messaging"))
	}
	_ = client.Close()
	_ = server.Close()
}

func TestEnsureIsIdempotent(t *testing.T) {
	t.Parallel()
	now := time.Now()
	tests := []struct {
		name  string
		alter func(t *testing.T, dir string)
		at    time.Time
		want  []string
	}{
		{name: "nothing changed", alter: func(*testing.T, string) {}, at: now, want: nil},
		{
			name: "one key missing",
			alter: func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, "audit-key.pem")); err != nil {
					t.Fatal(err)
				}
			},
			at:   now,
			want: []string{"audit.pem", "audit-key.pem"},
		},
		{
			name:  "leaves about to expire",
			alter: func(*testing.T, string) {},
			at:    now.Add(LeafValidity - RenewBefore/2),
			want:  allLeafFiles(),
		},
		{
			name: "CA replaced",
			alter: func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, CAKeyFile)); err != nil {
					t.Fatal(err)
				}
			},
			at:   now,
			want: append([]string{CACertFile, CAKeyFile}, allLeafFiles()...),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := ensureDir(t, now)
			tt.alter(t, dir)
			got, err := Ensure(dir, tt.at)
			if err != nil {
				t.Fatalf("Ensure() error = %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Ensure() wrote %v, want %v", got, tt.want)
			}
			if again, err := Ensure(dir, tt.at); err != nil || len(again) != 0 {
				t.Errorf("second Ensure() wrote %v (err %v), want nothing", again, err)
			}
		})
	}
}

func allLeafFiles() []string {
	var out []string
	for _, l := range Leaves() {
		out = append(out, l.Name+".pem", l.Name+"-key.pem")
	}
	return out
}

func TestKeyFilesArePrivate(t *testing.T) {
	t.Parallel()
	dir := ensureDir(t, time.Now())
	for _, name := range append([]string{"ca"}, Services...) {
		info, err := os.Stat(filepath.Join(dir, name+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode().Perm(); got != 0o600 {
			t.Errorf("%s-key.pem mode = %o, want 600", name, got)
		}
	}
}
