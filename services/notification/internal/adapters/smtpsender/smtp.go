// Package smtpsender sends email alerts over SMTP with github.com/wneessen/go-mail:
// STARTTLS (mandatory or opportunistic), implicit TLS, or plain for a loopback sink, with
// optional authentication. Each alert carries a deterministic Message-ID derived from its
// delivery id, so a downstream system that does see the same delivery twice can tell.
//
// Errors are domain.SendError codes ("smtp_4xx", "smtp_5xx", "smtp_certificate", "smtp_connect",
// "timeout"): never the server's text, which may quote the recipient address.
package smtpsender

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	mail "github.com/wneessen/go-mail"

	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

// TLSMode selects how the connection is protected.
type TLSMode string

// The TLS modes.
const (
	// TLSStartTLSMandatory upgrades with STARTTLS and refuses a server that cannot (production).
	TLSStartTLSMandatory TLSMode = "starttls"
	// TLSStartTLSOpportunistic upgrades when the server offers STARTTLS.
	TLSStartTLSOpportunistic TLSMode = "opportunistic"
	// TLSImplicit connects with TLS from the first byte (port 465).
	TLSImplicit TLSMode = "tls"
	// TLSNone sends in clear; only accepted for a loopback server (the dev stack's mailpit).
	TLSNone TLSMode = "none"
)

// Config says how to reach the SMTP server.
type Config struct {
	Addr     string
	From     string
	Mode     TLSMode
	Username string
	Password string
	// CAFile, when set, holds the CA bundle the server's certificate is verified against.
	CAFile string
	// ServerName overrides the name checked in the server certificate.
	ServerName string
	// HELO is the name announced to the server (default "localhost").
	HELO string
}

// Sender sends email alerts.
type Sender struct {
	cfg    Config
	host   string
	port   int
	tls    *tls.Config
	dialer net.Dialer
}

// New checks cfg and returns a sender.
func New(cfg Config) (*Sender, error) {
	host, portStr, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("smtp addr: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("smtp addr: bad port")
	}
	if cfg.Mode == "" {
		cfg.Mode = TLSStartTLSMandatory
	}
	if cfg.Mode == TLSNone {
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, errors.New("smtp: TLS mode none is only allowed for a loopback server")
		}
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if cfg.ServerName != "" {
		tc.ServerName = cfg.ServerName
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("smtp ca file: %w", err)
		}
		tc.RootCAs = certPool(pem)
	}
	return &Sender{cfg: cfg, host: host, port: port, tls: tc}, nil
}

// client builds the go-mail client of one send, dialling through dial.
func (s *Sender) client(dial mail.DialContextFunc) (*mail.Client, error) {
	opts := []mail.Option{mail.WithPort(s.port), mail.WithTLSConfig(s.tls), mail.WithHELO(orDefault(s.cfg.HELO, "localhost")),
		mail.WithDialContextFunc(dial)}
	switch s.cfg.Mode {
	case TLSStartTLSMandatory:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	case TLSStartTLSOpportunistic:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSOpportunistic))
	case TLSImplicit:
		opts = append(opts, mail.WithSSL())
	case TLSNone:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	default:
		return nil, fmt.Errorf("smtp: unknown TLS mode %q", s.cfg.Mode)
	}
	if s.cfg.Username != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthPlain), mail.WithUsername(s.cfg.Username), mail.WithPassword(s.cfg.Password))
	}
	return mail.NewClient(s.host, opts...)
}

// Send implements domain.Sender. It returns once the server accepted the message (250 after
// DATA).
func (s *Sender) Send(ctx context.Context, a domain.Alert) error {
	m := mail.NewMsg(mail.WithNoDefaultUserAgent())
	if err := m.From(s.cfg.From); err != nil {
		return &domain.SendError{Code: "smtp_bad_from", Permanent: true}
	}
	if err := m.To(a.Address); err != nil {
		return &domain.SendError{Code: "bad_address", Permanent: true}
	}
	m.Subject(a.Text.Subject)
	m.SetMessageIDWithValue(a.DeliveryID + "@securemsg")
	m.SetGenHeader("X-Securemsg-Delivery", a.DeliveryID)
	m.SetDate()
	m.SetBodyString(mail.TypeTextPlain, a.Text.Body)

	// go-mail bounds only the TCP connect by ctx; the greeting, EHLO, STARTTLS and AUTH that
	// follow wait without limit. A server that accepts and never greets (a STARTTLS or plain
	// client pointed at an implicit-TLS port such as 465) would hold the send, and its
	// dispatcher worker, forever, whatever the send timeout. So the connection is closed when
	// ctx ends, and closed once the send returns in any case: go-mail leaves it open when
	// EHLO, STARTTLS or AUTH fail.
	var conn net.Conn
	var unbind func() bool
	c, err := s.client(func(dctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := s.dial(dctx, network, addr)
		if err != nil {
			return nil, err
		}
		conn, unbind = nc, context.AfterFunc(ctx, func() { _ = nc.Close() })
		return nc, nil
	})
	if err != nil {
		return &domain.SendError{Code: "smtp_config", Permanent: true}
	}
	err = c.DialAndSendWithContext(ctx, m)
	if conn != nil {
		unbind()
		_ = conn.Close()
	}
	if err != nil && ctx.Err() != nil {
		return &domain.SendError{Code: "timeout"}
	}
	return classify(err)
}

// dial connects to the server; in implicit TLS mode it also completes the TLS handshake (go-mail
// does that only with its own dialer).
func (s *Sender) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if s.cfg.Mode == TLSImplicit {
		d := tls.Dialer{NetDialer: &s.dialer, Config: s.tls}
		return d.DialContext(ctx, network, addr)
	}
	return s.dialer.DialContext(ctx, network, addr)
}

func classify(err error) error {
	if err == nil {
		return nil
	}
	// The server's certificate was refused (unknown CA, wrong name, expired): an operator must
	// tell this apart from a server that is down.
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return &domain.SendError{Code: "smtp_certificate"}
	}
	var se *mail.SendError
	if errors.As(err, &se) {
		code := se.ErrorCode()
		switch {
		case code >= 500:
			return &domain.SendError{Code: "smtp_5xx", Permanent: true}
		case code >= 400 || se.IsTemp():
			return &domain.SendError{Code: "smtp_4xx"}
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return &domain.SendError{Code: "timeout"}
	}
	return &domain.SendError{Code: "smtp_connect"}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
