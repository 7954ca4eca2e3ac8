package grpcserver

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/config"
)

// serverTLSConfig builds the server's TLS configuration from cfg's files, or from override.
// TLS 1.2 is the floor (1.3 is negotiated whenever the client can); client certificates are
// verified against TLSClientCAFile when set, and required when RequireClientCert is.
func serverTLSConfig(cfg config.Server, override *tls.Config) (*tls.Config, error) {
	var c *tls.Config
	if override != nil {
		c = override.Clone()
	} else {
		if cfg.TLSCertFile == "" || cfg.TLSKeyFile == "" {
			return nil, errors.New("grpcserver: TLS certificate and key files are required (there is no plaintext mode)")
		}
		kp, err := newKeyPairReloader(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, err
		}
		c = &tls.Config{
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.get() },
		}
	}
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	if cfg.TLSClientCAFile != "" {
		pool, err := loadCAPool(cfg.TLSClientCAFile)
		if err != nil {
			return nil, err
		}
		c.ClientCAs = pool
	}
	switch {
	case cfg.RequireClientCert && c.ClientCAs == nil:
		return nil, errors.New("grpcserver: RequireClientCert needs a client CA")
	case cfg.RequireClientCert:
		c.ClientAuth = tls.RequireAndVerifyClientCert
	case c.ClientCAs != nil && c.ClientAuth == tls.NoClientCert:
		// Portal traffic carries no client certificate; services calling in present one.
		c.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return c, nil
}

func loadCAPool(file string) (*x509.CertPool, error) {
	pemBytes, err := os.ReadFile(file) //nolint:gosec // G304: the path is the operator's SECUREMSG_*_CA_FILE setting
	if err != nil {
		return nil, fmt.Errorf("grpcserver: read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("grpcserver: no PEM certificates in CA file %s", file)
	}
	return pool, nil
}

// keyPairReloader serves a certificate from files and re-reads them when their modification
// time changes, so rotated certificates (cert-manager, the dev CA) need no restart. A rotation
// caught half-written keeps the previous pair until both files agree again.
type keyPairReloader struct {
	certFile, keyFile string

	mu              sync.Mutex
	cert            *tls.Certificate
	certMod, keyMod time.Time
	lastCheck       time.Time
}

// reloadCheckInterval limits how often handshakes stat the files.
const reloadCheckInterval = 5 * time.Second

func newKeyPairReloader(certFile, keyFile string) (*keyPairReloader, error) {
	r := &keyPairReloader{certFile: certFile, keyFile: keyFile}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *keyPairReloader) reload() error {
	ci, err := os.Stat(r.certFile)
	if err != nil {
		return fmt.Errorf("grpcserver: stat certificate: %w", err)
	}
	ki, err := os.Stat(r.keyFile)
	if err != nil {
		return fmt.Errorf("grpcserver: stat key: %w", err)
	}
	if r.cert != nil && ci.ModTime().Equal(r.certMod) && ki.ModTime().Equal(r.keyMod) {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		// The error names the files, never their content.
		return fmt.Errorf("grpcserver: load key pair %s: %w", r.certFile, err)
	}
	r.cert, r.certMod, r.keyMod = &cert, ci.ModTime(), ki.ModTime()
	return nil
}

func (r *keyPairReloader) get() (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.lastCheck) >= reloadCheckInterval {
		r.lastCheck = now
		if err := r.reload(); err != nil && r.cert == nil {
			return nil, err
		}
	}
	return r.cert, nil
}
