// Package httpsender delivers SMS, push and webhook alerts over HTTPS as HMAC-signed JSON
// posts: to an SMS gateway, to a push gateway (FCM- or APNs-shaped payloads carrying ids only),
// or to a person's own webhook URL (care-team integrations).
//
// Every request carries
//
//	X-Securemsg-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
//	Idempotency-Key: <delivery id>
//
// so a receiver can check origin and freshness and drop a repeated delivery: this is what lets
// the dispatcher retry these channels after a crash without a duplicate effect.
package httpsender

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

// SignatureHeader carries the HMAC signature.
const SignatureHeader = "X-Securemsg-Signature"

// Sign returns the signature header value for body at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts + "."))
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signature header for body, accepting timestamps within tolerance of now.
// Receivers (and tests) use it.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return errors.New("malformed signature header")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errors.New("signature timestamp outside tolerance")
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts + "."))
	m.Write(body)
	got, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(m.Sum(nil), got) {
		return errors.New("bad signature")
	}
	return nil
}

// Kind selects the request body and the destination.
type Kind int

// The kinds of HTTPS channel.
const (
	SMS Kind = iota + 1
	Push
	Webhook
)

func (k Kind) String() string {
	switch k {
	case SMS:
		return "sms"
	case Push:
		return "push"
	}
	return "webhook"
}

// Config configures one HTTPS channel.
type Config struct {
	Kind Kind
	// URL is the gateway endpoint (SMS, push); webhooks post to the person's own URL.
	URL string
	// Secret is the HMAC key.
	Secret []byte
	// AllowedHosts restricts webhook destinations (host or host:port); empty allows none, so a
	// person cannot aim the service at an internal address by choosing a webhook URL.
	AllowedHosts []string
	// Client sends the requests (TLS roots, timeouts); nil uses a client with a 10s timeout.
	Client *http.Client
	// Now is the clock (tests).
	Now func() time.Time
}

// Sender posts alerts for one channel.
type Sender struct{ cfg Config }

// New returns a sender for cfg.
func New(cfg Config) (*Sender, error) {
	if len(cfg.Secret) < 16 {
		return nil, fmt.Errorf("%s: HMAC secret must be at least 16 bytes", cfg.Kind)
	}
	if cfg.Kind != Webhook {
		u, err := url.Parse(cfg.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("%s: gateway URL must be https://", cfg.Kind)
		}
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sender{cfg: cfg}, nil
}

// Send implements domain.Sender.
func (s *Sender) Send(ctx context.Context, a domain.Alert) error {
	var body []byte
	var err error
	target := s.cfg.URL
	switch s.cfg.Kind {
	case SMS:
		body, err = domain.BuildSMS(a)
	case Push:
		body, err = domain.BuildPush(a)
	case Webhook:
		target = a.Address
		u, perr := url.Parse(target)
		if perr != nil || u.Scheme != "https" || !slices.Contains(s.cfg.AllowedHosts, u.Host) && !slices.Contains(s.cfg.AllowedHosts, u.Hostname()) {
			return &domain.SendError{Code: "webhook_host_not_allowed", Permanent: true}
		}
		body, err = domain.BuildWebhook(a)
	}
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return &domain.SendError{Code: s.cfg.Kind.String() + "_bad_url", Permanent: true}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", a.DeliveryID)
	req.Header.Set(SignatureHeader, Sign(s.cfg.Secret, s.cfg.Now(), body))
	req.Header.Set("User-Agent", "securemsg-notification")
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return &domain.SendError{Code: "timeout"}
		}
		return &domain.SendError{Code: s.cfg.Kind.String() + "_connect"}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout:
		return &domain.SendError{Code: fmt.Sprintf("%s_status_%d", s.cfg.Kind, resp.StatusCode)}
	default:
		return &domain.SendError{Code: fmt.Sprintf("%s_status_%d", s.cfg.Kind, resp.StatusCode), Permanent: true}
	}
}
