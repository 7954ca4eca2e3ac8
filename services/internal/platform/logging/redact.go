package logging

import (
	"fmt"
	"log/slog"
	"strings"
)

// Redacted is what a hidden value renders as.
const Redacted = "[REDACTED]"

// PHI marks a string as protected health information (or any other value that must never be
// logged: tokens, key material). Every way of printing it shows Redacted, so
//
//	logger.Info("draft saved", "note", logging.PHI(body))
//
// and fmt.Sprintf("%v", logging.PHI(body)) are both safe. Prefer not logging such values at
// all; PHI exists so that a value which travels through logging code cannot leak by accident.
type PHI string

// LogValue implements slog.LogValuer: slog resolves it before any handler sees the value.
func (PHI) LogValue() slog.Value { return slog.StringValue(Redacted) }

// String implements fmt.Stringer.
func (PHI) String() string { return Redacted }

// GoString implements fmt.GoStringer.
func (PHI) GoString() string { return Redacted }

// Format implements fmt.Formatter, so no verb (%s, %q, %x, %v ...) prints the value.
func (PHI) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(Redacted)) }

// MarshalJSON hides the value inside structs logged with slog.Any.
func (PHI) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText hides the value from text encoders.
func (PHI) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// deniedKeys are attribute or group keys whose values are always redacted. Keys are compared
// lower-cased with '-' and '.' read as '_', so gRPC metadata ("x-api-key") matches too.
var deniedKeys = map[string]bool{
	// credentials
	"authorization": true, "proxy_authorization": true, "cookie": true, "set_cookie": true,
	"token": true, "access_token": true, "refresh_token": true, "id_token": true, "bearer": true,
	"jwt": true, "password": true, "passwd": true, "secret": true, "client_secret": true,
	"api_key": true, "x_api_key": true, "private_key": true, "key": true,
	// key material and encrypted data
	"dek": true, "kek": true, "key_material": true, "plaintext": true, "ciphertext": true,
	"wrapped_dek": true, "nonce": true,
	// PHI (DESIGN.md "Protected data")
	"body": true, "subject": true, "message_body": true, "message_subject": true,
	"content": true, "text": true, "note": true, "notes": true, "reason": true,
	"file_name": true, "filename": true, "email": true, "phone": true, "phone_number": true,
	"address": true, "contact": true, "display_name": true, "patient_name": true,
	"dob": true, "date_of_birth": true, "ssn": true, "mrn": true,
}

// deniedSuffixes catch compound keys ("vault_token", "recipient_email").
var deniedSuffixes = []string{
	"_token", "_secret", "_password", "_key", "_email", "_phone", "_body", "_plaintext",
	"_ciphertext", "_file_name", "_filename", "_reason",
}

var keyNormaliser = strings.NewReplacer("-", "_", ".", "_")

// IsSensitiveKey reports whether values under key are redacted by ReplaceAttr.
func IsSensitiveKey(key string) bool {
	k := keyNormaliser.Replace(strings.ToLower(key))
	if deniedKeys[k] {
		return true
	}
	for _, s := range deniedSuffixes {
		if strings.HasSuffix(k, s) {
			return true
		}
	}
	return false
}

// ReplaceAttr is the slog.HandlerOptions.ReplaceAttr that redacts attributes whose key, or any
// enclosing group's key, is sensitive (IsSensitiveKey). Handlers built outside this package
// should use it too.
func ReplaceAttr(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey || a.Key == slog.MessageKey || a.Key == slog.SourceKey) {
		return a
	}
	if IsSensitiveKey(a.Key) {
		return slog.String(a.Key, Redacted)
	}
	for _, g := range groups {
		if IsSensitiveKey(g) {
			return slog.String(a.Key, Redacted)
		}
	}
	return a
}
