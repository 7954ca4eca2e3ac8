// Package devca is the dev stack's certificate authority: one ECDSA P-256 CA and, signed by it,
// a certificate per service (usable as TLS server and client certificate for mTLS) and per client
// app, each naming its identity in a SPIFFE-style URI SAN. Ensure is idempotent: it keeps every
// file that is still valid and re-issues only what is missing, expiring, or no longer matches.
package devca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// TrustDomain is the SPIFFE trust domain of the dev identities.
const TrustDomain = "securemsg.local"

// Validity periods. RenewBefore re-issues a certificate that would expire within that window,
// so a running stack never meets an expired certificate on an ordinary working day.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	LeafValidity = 365 * 24 * time.Hour
	RenewBefore  = 7 * 24 * time.Hour
)

// File names inside the certificate folder.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
)

// Services are the suite's services; each gets <name>.pem and <name>-key.pem.
var Services = []string{"messaging", "attachment", "notification", "audit"}

// Clients are the non-service callers that authenticate with mTLS.
var Clients = []string{"careteam-app", "ctl"}

// ServiceID is the URI SAN that identifies a service to its peers.
func ServiceID(service string) string {
	return "spiffe://" + TrustDomain + "/service/" + service
}

// ClientID is the URI SAN that identifies a client app.
func ClientID(client string) string {
	return "spiffe://" + TrustDomain + "/client/" + client
}

// Leaf describes one certificate to issue.
type Leaf struct {
	Name   string // file stem: <Name>.pem, <Name>-key.pem; also the subject CN
	DNS    []string
	IPs    []net.IP
	URI    string
	Server bool // also usable as a TLS server certificate (services); clients only authenticate
}

// Leaves lists every certificate Ensure issues.
func Leaves() []Leaf {
	var out []Leaf
	for _, s := range Services {
		out = append(out, Leaf{
			Name:   s,
			DNS:    []string{s, s + ".securemsg.svc", "localhost"},
			IPs:    []net.IP{net.IPv4(127, 0, 0, 1).To4()},
			URI:    ServiceID(s),
			Server: true,
		})
	}
	for _, c := range Clients {
		out = append(out, Leaf{Name: c, URI: ClientID(c)})
	}
	return out
}

// Ensure makes dir hold a valid CA and every leaf of Leaves, issued by that CA and valid at now
// for at least RenewBefore. It returns the files it (re)wrote, empty when nothing changed.
func Ensure(dir string, now time.Time) ([]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	var written []string
	ca, caKey, err := loadPair(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile))
	if err != nil || !ca.IsCA || !fresh(ca, now) {
		ca, caKey, err = newCA(now)
		if err != nil {
			return nil, err
		}
		if err := writePair(dir, "ca", ca, caKey); err != nil {
			return nil, err
		}
		written = append(written, CACertFile, CAKeyFile)
	}
	for _, leaf := range Leaves() {
		cert, _, err := loadPair(filepath.Join(dir, leaf.Name+".pem"), filepath.Join(dir, leaf.Name+"-key.pem"))
		if err == nil && fresh(cert, now) && cert.CheckSignatureFrom(ca) == nil && matches(cert, leaf) {
			continue
		}
		cert, key, err := issue(leaf, ca, caKey, now)
		if err != nil {
			return nil, err
		}
		if err := writePair(dir, leaf.Name, cert, key); err != nil {
			return nil, err
		}
		written = append(written, leaf.Name+".pem", leaf.Name+"-key.pem")
	}
	return written, nil
}

func fresh(cert *x509.Certificate, now time.Time) bool {
	return !now.Before(cert.NotBefore) && now.Add(RenewBefore).Before(cert.NotAfter)
}

// matches reports whether cert still carries the names and usages leaf asks for, so that a
// change to Leaves re-issues the certificate.
func matches(cert *x509.Certificate, leaf Leaf) bool {
	if len(cert.URIs) != 1 || cert.URIs[0].String() != leaf.URI || !slices.Equal(cert.DNSNames, leaf.DNS) {
		return false
	}
	if !slices.EqualFunc(cert.IPAddresses, leaf.IPs, func(a, b net.IP) bool { return a.Equal(b) }) {
		return false
	}
	return slices.Equal(cert.ExtKeyUsage, extKeyUsage(leaf))
}

func extKeyUsage(leaf Leaf) []x509.ExtKeyUsage {
	if leaf.Server {
		return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	return []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
}

func newCA(now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"securemsg dev"}, CommonName: "securemsg dev CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return cert, key, nil
}

func issue(leaf Leaf, ca *x509.Certificate, caKey *ecdsa.PrivateKey, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key for %s: %w", leaf.Name, err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	uri, err := url.Parse(leaf.URI)
	if err != nil {
		return nil, nil, fmt.Errorf("identity of %s: %w", leaf.Name, err)
	}
	notAfter := now.Add(LeafValidity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"securemsg dev"}, CommonName: leaf.Name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  extKeyUsage(leaf),
		DNSNames:     leaf.DNS,
		IPAddresses:  leaf.IPs,
		URIs:         []*url.URL{uri},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate for %s: %w", leaf.Name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse certificate for %s: %w", leaf.Name, err)
	}
	return cert, key, nil
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n, nil
}

func loadPair(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("no PEM block")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	parsed, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, errors.New("key does not match certificate")
	}
	return cert, key, nil
}

// writePair writes <stem>.pem and <stem>-key.pem (0600) atomically, so a reader never sees half
// a file and an interrupted run leaves the old pair or the new one.
func writePair(dir, stem string, cert *x509.Certificate, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key for %s: %w", stem, err)
	}
	if err := writeAtomic(filepath.Join(dir, stem+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, stem+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644)
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".devca-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close() // the write already failed; that error is the one to report
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		_ = tmp.Close() // the write already failed; that error is the one to report
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
