// Package grpctest issues throwaway certificates for tests of gRPC servers and clients, so
// tests can run real TLS and mTLS on 127.0.0.1 without the dev stack's CA, and collects a
// server's log output for the test to read (LogBuffer).
//
// It is imported only by tests.
package grpctest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/config"
)

// ServerName is the DNS name in every server certificate NewPKI issues (besides 127.0.0.1,
// ::1 and localhost).
const ServerName = "securemsg.test"

// PKI is a CA with one server and one client certificate, as files (for config structs) and
// as parsed values (for tls.Config).
type PKI struct {
	CAPool *x509.CertPool
	// CAFile holds the CA certificate in PEM.
	CAFile string
	// ServerCertFile/ServerKeyFile and ClientCertFile/ClientKeyFile hold PEM pairs.
	ServerCertFile, ServerKeyFile string
	ClientCertFile, ClientKeyFile string
	ServerCert, ClientCert        tls.Certificate

	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	dir    string
}

// NewPKI creates a CA and issues a server and a client certificate under t.TempDir().
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	p := &PKI{dir: t.TempDir(), CAPool: x509.NewCertPool()}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate CA key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "securemsg test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create CA certificate: %v", err)
	}
	p.caCert, err = x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse CA certificate: %v", err)
	}
	p.caKey = key
	p.CAPool.AddCert(p.caCert)
	p.CAFile = p.write(t, "ca.pem", "CERTIFICATE", der)

	p.ServerCert, p.ServerCertFile, p.ServerKeyFile = p.Issue(t, "server", x509.ExtKeyUsageServerAuth)
	p.ClientCert, p.ClientCertFile, p.ClientKeyFile = p.Issue(t, "client", x509.ExtKeyUsageClientAuth)
	return p
}

// Issue signs a new certificate for name with the given usage, valid for 127.0.0.1, ::1,
// localhost and ServerName, and returns it with its PEM files.
func (p *PKI) Issue(t testing.TB, name string, usage x509.ExtKeyUsage) (cert tls.Certificate, certFile, keyFile string) {
	t.Helper()
	return p.issue(t, name, []x509.ExtKeyUsage{usage}, nil)
}

// IssueService issues a certificate carrying the service identity of a securemsg service (the
// URI SAN spiffe://securemsg.local/service/<service>, as the dev CA and cert-manager issue them),
// usable as both client and server certificate, so tests can call a server as that service.
func (p *PKI) IssueService(t testing.TB, service string) (cert tls.Certificate, certFile, keyFile string) {
	t.Helper()
	id := &url.URL{Scheme: "spiffe", Host: "securemsg.local", Path: "/service/" + service}
	return p.issue(t, "service-"+service, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}, []*url.URL{id})
}

func (p *PKI) issue(t testing.TB, name string, usages []x509.ExtKeyUsage, uris []*url.URL) (cert tls.Certificate, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate %s key: %v", name, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatalf("serial: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usages,
		DNSNames:     []string{"localhost", ServerName},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		URIs:         uris,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatalf("create %s certificate: %v", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("marshal %s key: %v", name, err)
	}
	certFile = p.write(t, name+".pem", "CERTIFICATE", der)
	keyFile = p.write(t, name+"-key.pem", "PRIVATE KEY", keyDER)
	cert, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("load %s key pair: %v", name, err)
	}
	return cert, certFile, keyFile
}

func (p *PKI) write(t testing.TB, name, blockType string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	return path
}

// ServerConfig returns a server configuration on 127.0.0.1:0 using the PKI's files; with mtls
// the server requires client certificates signed by the CA. Shutdown is quick, for tests.
func (p *PKI) ServerConfig(mtls bool) config.Server {
	c := config.Server{
		GRPCAddr:             "127.0.0.1:0",
		TLSCertFile:          p.ServerCertFile,
		TLSKeyFile:           p.ServerKeyFile,
		ShutdownTimeout:      5 * time.Second,
		ShutdownDrain:        0,
		MaxRecvMsgBytes:      4 << 20,
		MaxConcurrentStreams: 64,
	}
	if mtls {
		c.TLSClientCAFile = p.CAFile
		c.RequireClientCert = true
	}
	return c
}

// ClientConfig returns the configuration for dialling addr with the client certificate.
func (p *PKI) ClientConfig(addr string) config.Client {
	return config.Client{
		Addr:       addr,
		CertFile:   p.ClientCertFile,
		KeyFile:    p.ClientKeyFile,
		CAFile:     p.CAFile,
		ServerName: ServerName,
	}
}

// ClientTLS returns a client tls.Config trusting the CA, presenting the client certificate
// only when withCert is set.
func (p *PKI) ClientTLS(withCert bool) *tls.Config {
	c := &tls.Config{RootCAs: p.CAPool, ServerName: ServerName, MinVersion: tls.VersionTLS12}
	if withCert {
		c.Certificates = []tls.Certificate{p.ClientCert}
	}
	return c
}
