package keys

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"

	vault "github.com/hashicorp/vault/api"
)

// ErrKeyServiceUnavailable is returned when Vault cannot be reached, times out, is sealed or
// answers with a 5xx or 429. Nothing was created or unwrapped; callers map it to
// codes.Unavailable and must fail closed.
var ErrKeyServiceUnavailable = errors.New("keys: key service unavailable")

// ErrKeyVersionRetired is returned when a wrapped DEK is under a Transit key version below the
// key's min_decryption_version: it can no longer be unwrapped or rewrapped. Callers map it to
// codes.FailedPrecondition.
var ErrKeyVersionRetired = errors.New("keys: wrapped key is under a retired key version")

// ErrKeyNotFound is returned when the named Transit key does not exist.
var ErrKeyNotFound = errors.New("keys: transit key not found")

// ErrInvalidWrappedKey is returned when a wrapped DEK is not of the form vault:vN:... or Vault
// rejects it as malformed.
var ErrInvalidWrappedKey = errors.New("keys: invalid wrapped key")

// ErrPermissionDenied is returned when Vault refuses the token (after one re-login with
// Kubernetes auth).
var ErrPermissionDenied = errors.New("keys: permission denied by vault")

// tooOldMessage is the text of keysutil.ErrTooOld, which Vault (and the dev Transit server,
// built on the same package) returns for a ciphertext below min_decryption_version.
const tooOldMessage = "disallowed by policy (too old)"

// secretLike matches what could be key material or ciphertext in a Vault message: wrapped keys
// and long base64 runs.
var secretLike = regexp.MustCompile(`vault:v\d+:\S*|[A-Za-z0-9+/=_-]{24,}`)

// classify turns an error from the Vault client into one of this package's errors. op names the
// operation (e.g. "decrypt"); the result never contains request data.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var respErr *vault.ResponseError
	if errors.As(err, &respErr) {
		msg := sanitize(strings.Join(respErr.Errors, "; "))
		switch code := respErr.StatusCode; {
		case code >= 500 || code == 429:
			return fmt.Errorf("vault %s: status %d: %w", op, code, ErrKeyServiceUnavailable)
		case strings.Contains(msg, tooOldMessage):
			return fmt.Errorf("vault %s: %w", op, ErrKeyVersionRetired)
		case code == 404 || strings.Contains(msg, "encryption key not found") || strings.Contains(msg, "key not found"):
			return fmt.Errorf("vault %s: %w", op, ErrKeyNotFound)
		case code == 403:
			return fmt.Errorf("vault %s: %w", op, ErrPermissionDenied)
		case strings.Contains(msg, "invalid ciphertext") || strings.Contains(msg, "invalid input"):
			return fmt.Errorf("vault %s: %s: %w", op, msg, ErrInvalidWrappedKey)
		default:
			return fmt.Errorf("vault %s: status %d: %s", op, code, msg)
		}
	}
	var urlErr *url.Error
	var netErr net.Error
	if errors.As(err, &urlErr) || errors.As(err, &netErr) || errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("vault %s: %w: %s", op, ErrKeyServiceUnavailable, transportReason(err))
	}
	// The client wraps transport errors in its own text at times ("Error making API request").
	if s := err.Error(); strings.Contains(s, "connection refused") || strings.Contains(s, "EOF") ||
		strings.Contains(s, "giving up after") || strings.Contains(s, "deadline exceeded") {
		return fmt.Errorf("vault %s: %w: %s", op, ErrKeyServiceUnavailable, transportReason(err))
	}
	return fmt.Errorf("vault %s: %s", op, sanitize(err.Error()))
}

// transportReason keeps a short cause for logs without the request URL's query or body.
func transportReason(err error) string {
	s := err.Error()
	for _, reason := range []string{"connection refused", "deadline exceeded", "timeout", "EOF", "certificate", "no such host", "connection reset"} {
		if strings.Contains(s, reason) {
			return reason
		}
	}
	return "transport error"
}

func sanitize(s string) string {
	s = secretLike.ReplaceAllString(s, "[redacted]")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
