package domain

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Alert is one send: everything a channel adapter may put on the wire. It holds the contact
// point (PHI, for addressing only), the rendered allow-listed text, and opaque ids. Nothing
// else from an event or a message can reach it.
type Alert struct {
	DeliveryID string
	Channel    Channel
	Kind       Kind
	// Address is the contact point, plaintext, in memory only. Never logged.
	Address   string
	Text      Rendered
	ThreadID  string
	MessageID string
	PoolID    string
	Count     int
	// PortalLink is where to log in (configuration).
	PortalLink string
	// OccurredAt is when the alert's (latest) message was written.
	OccurredAt time.Time
}

// Sender delivers alerts on one channel. Errors are *SendError values.
type Sender interface {
	Send(ctx context.Context, a Alert) error
}

// SMSRequest is the body posted to the SMS gateway.
type SMSRequest struct {
	To             string `json:"to"`
	Body           string `json:"body"`
	IdempotencyKey string `json:"idempotency_key"`
}

// BuildSMS renders the SMS gateway request.
func BuildSMS(a Alert) ([]byte, error) {
	return json.Marshal(SMSRequest{To: a.Address, Body: a.Text.Body, IdempotencyKey: a.DeliveryID})
}

// PushRequest is the body posted to the push gateway: the platform, the device token and the
// platform-shaped payload.
type PushRequest struct {
	Platform       string          `json:"platform"`
	Token          string          `json:"token"`
	IdempotencyKey string          `json:"idempotency_key"`
	Payload        json.RawMessage `json:"payload"`
}

// pushData are the ids a push carries; the app fetches everything else after login.
func pushData(a Alert) map[string]string {
	return map[string]string{
		"kind":        a.Kind.String(),
		"delivery_id": a.DeliveryID,
		"thread_id":   a.ThreadID,
		"message_id":  a.MessageID,
	}
}

// BuildPush renders the push gateway request in the shape of the FCM HTTP v1 message
// ({"message":{"token","notification","data","android"}}) or of an APNs payload
// ({"aps":{"alert",...}, ids...}), chosen by the token's "fcm:" or "apns:" prefix.
func BuildPush(a Alert) ([]byte, error) {
	platform, token, ok := strings.Cut(a.Address, ":")
	if !ok {
		return nil, &SendError{Code: "push_bad_token", Permanent: true}
	}
	title := a.Text.Subject
	var payload any
	switch platform {
	case "fcm":
		payload = map[string]any{"message": map[string]any{
			"token":        token,
			"notification": map[string]string{"title": title, "body": a.Text.Body},
			"data":         pushData(a),
			"android":      map[string]any{"priority": "HIGH", "collapse_key": a.ThreadID},
		}}
	case "apns":
		p := map[string]any{"aps": map[string]any{
			"alert":           map[string]string{"title": title, "body": a.Text.Body},
			"sound":           "default",
			"thread-id":       a.ThreadID,
			"mutable-content": 1,
		}}
		for k, v := range pushData(a) {
			p[k] = v
		}
		payload = p
	default:
		return nil, &SendError{Code: "push_bad_token", Permanent: true}
	}
	raw, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encode push payload: %w", err)
	}
	return json.Marshal(PushRequest{Platform: platform, Token: token, IdempotencyKey: a.DeliveryID, Payload: raw})
}

// WebhookEvent is the body posted to a person's webhook: ids and counts only.
type WebhookEvent struct {
	Type       string    `json:"type"`
	DeliveryID string    `json:"delivery_id"`
	Kind       string    `json:"kind"`
	ThreadID   string    `json:"thread_id"`
	MessageID  string    `json:"message_id"`
	PoolID     string    `json:"pool_id,omitempty"`
	Count      int       `json:"count"`
	OccurredAt time.Time `json:"occurred_at"`
	PortalLink string    `json:"portal_link"`
}

// BuildWebhook renders the webhook body.
func BuildWebhook(a Alert) ([]byte, error) {
	return json.Marshal(WebhookEvent{
		Type: "securemsg.alert", DeliveryID: a.DeliveryID, Kind: a.Kind.String(),
		ThreadID: a.ThreadID, MessageID: a.MessageID, PoolID: a.PoolID, Count: a.Count,
		OccurredAt: a.OccurredAt.UTC(), PortalLink: a.PortalLink,
	})
}
