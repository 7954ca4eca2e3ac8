// Package logging builds the suite's structured logger: log/slog with a JSON handler, attribute
// keys defined once, and redaction of PHI and secrets applied to every record.
//
// Two layers keep PHI, tokens and keys out of logs (COMPLIANCE.md #23, DESIGN.md):
//   - values wrapped in PHI always render as "[REDACTED]", whatever their key;
//   - ReplaceAttr redacts any attribute whose key (or enclosing group) names a sensitive thing
//     (body, subject, email, token, dek, ...), catching values someone forgot to wrap.
//
// Neither layer sees inside the log message itself or inside an error's text: messages are
// constants, and errors must not carry PHI in the first place (STYLE.md).
package logging

import (
	"io"
	"log/slog"
)

// Attribute keys used across the suite. Use these constants rather than string literals so
// every service logs the same field the same way and dashboards can rely on them.
const (
	KeyService      = "service"       // the emitting service, set once on the root logger
	KeyComponent    = "component"     // a subsystem inside a service (outbox relay, scanner, ...)
	KeyRequestID    = "request_id"    // the rpc's request id, also returned as x-request-id
	KeyMethod       = "method"        // the full gRPC method, /package.Service/Method
	KeyCode         = "code"          // the gRPC status code name
	KeyDurationMS   = "duration_ms"   // how long the rpc took, in milliseconds (float)
	KeyPeer         = "peer"          // the caller's network address
	KeyProxy        = "proxy"         // the trusted proxy the caller came through (peer is then the client it forwarded)
	KeyPeerService  = "peer_service"  // the calling service, from its verified mTLS certificate (CN)
	KeyPrincipal    = "principal"     // the authenticated caller's OIDC subject (an opaque id)
	KeyRole         = "role"          // the role the caller acted in
	KeyClientApp    = "client_app"    // the calling application (OIDC azp / client id)
	KeyError        = "error"         // an error value; its text must be PHI-free by contract
	KeyPanic        = "panic"         // what a recovered panic carried (its type, or runtime error)
	KeyStack        = "stack"         // a goroutine stack trace
	KeyThreadID     = "thread_id"     // a message thread id
	KeyMessageID    = "message_id"    // a message id
	KeyAttachmentID = "attachment_id" // an attachment id
	KeyEventID      = "event_id"      // an outbox/NATS event id
	KeyNATSSubject  = "nats_subject"  // a NATS subject (never the PHI "subject" of a message)
)

// New returns a JSON logger writing to w at the given minimum level, with redaction on.
func New(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(NewHandler(w, level))
}

// NewHandler returns the JSON handler New uses, for callers that wrap handlers.
func NewHandler(w io.Writer, level slog.Leveler) slog.Handler {
	return slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level:       level,
		ReplaceAttr: ReplaceAttr,
	})
}
