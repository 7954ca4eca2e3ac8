package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/securemsg/securemsg/services/internal/platform/logging"
)

// plaintext is a marker standing for PHI; it must never appear in captured output.
const plaintext = "Patient-Jane-Doe-HIV-result-7f3a"

func TestRedaction(t *testing.T) {
	t.Parallel()
	type draft struct {
		ThreadID string
		Body     logging.PHI
	}
	tests := []struct {
		name string
		log  func(l *slog.Logger)
	}{
		{"PHI value under a harmless key", func(l *slog.Logger) { l.Info("m", "note_len", logging.PHI(plaintext)) }},
		{"PHI inside a struct", func(l *slog.Logger) { l.Info("m", "draft", draft{ThreadID: "t1", Body: plaintext}) }},
		{"PHI inside a pointer to struct", func(l *slog.Logger) { l.Info("m", "draft", &draft{Body: plaintext}) }},
		{"denied key body", func(l *slog.Logger) { l.Info("m", "body", plaintext) }},
		{"denied key subject", func(l *slog.Logger) { l.Info("m", "subject", plaintext) }},
		{"denied key file_name", func(l *slog.Logger) { l.Info("m", "file_name", plaintext) }},
		{"denied key email", func(l *slog.Logger) { l.Info("m", "email", plaintext) }},
		{"denied key phone", func(l *slog.Logger) { l.Info("m", "phone", plaintext) }},
		{"denied key plaintext", func(l *slog.Logger) { l.Info("m", "plaintext", plaintext) }},
		{"denied key dek as bytes", func(l *slog.Logger) { l.Info("m", "dek", []byte(plaintext)) }},
		{"denied key reason", func(l *slog.Logger) { l.Info("m", "reason", plaintext) }},
		{"metadata authorization", func(l *slog.Logger) { l.Info("m", "Authorization", "Bearer "+plaintext) }},
		{"metadata x-api-key", func(l *slog.Logger) { l.Info("m", "x-api-key", plaintext) }},
		{"suffix vault_token", func(l *slog.Logger) { l.Info("m", "vault_token", plaintext) }},
		{"suffix recipient_email", func(l *slog.Logger) { l.Info("m", "recipient_email", plaintext) }},
		{"denied key in With", func(l *slog.Logger) { l.With("body", plaintext).Info("m") }},
		{"denied group", func(l *slog.Logger) { l.Info("m", slog.Group("body", "text_part", plaintext)) }},
		{"denied WithGroup", func(l *slog.Logger) { l.WithGroup("email").Info("m", "to", plaintext) }},
		{"nested group under a denied group", func(l *slog.Logger) {
			l.Info("m", slog.Group("contact", slog.Group("home", "line1", plaintext)))
		}},
		{"PHI in an error-level attr", func(l *slog.Logger) { l.Error("m", "detail", logging.PHI(plaintext)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			tt.log(logging.New(&buf, slog.LevelDebug))
			out := buf.String()
			if strings.Contains(out, plaintext) {
				t.Errorf("log output = %s, contains the plaintext marker", out)
			}
			if !strings.Contains(out, logging.Redacted) {
				t.Errorf("log output = %s, want %q in it", out, logging.Redacted)
			}
			if !json.Valid(bytes.TrimSpace(buf.Bytes())) {
				t.Errorf("log output = %s, want one JSON object", out)
			}
		})
	}
}

func TestHarmlessKeysKept(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logging.New(&buf, slog.LevelInfo).Info("rpc finished",
		logging.KeyMethod, "/securemsg.messaging.v1.MessagingService/GetThread",
		logging.KeyThreadID, "thr_123", logging.KeyNATSSubject, "securemsg.events.message.created")
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("json.Unmarshal(%s) = %v", buf.String(), err)
	}
	for key, want := range map[string]any{
		"msg":                  "rpc finished",
		logging.KeyMethod:      "/securemsg.messaging.v1.MessagingService/GetThread",
		logging.KeyThreadID:    "thr_123",
		logging.KeyNATSSubject: "securemsg.events.message.created",
	} {
		if got[key] != want {
			t.Errorf("logged %s = %v, want %v", key, got[key], want)
		}
	}
}

func TestPHIFormatting(t *testing.T) {
	t.Parallel()
	v := logging.PHI(plaintext)
	js, _ := json.Marshal(struct{ B logging.PHI }{v})
	tests := []struct {
		name string
		out  string
	}{
		{"%v", fmt.Sprintf("%v", v)},
		{"%s", fmt.Sprintf("%s", v)},
		{"%q", fmt.Sprintf("%q", v)},
		{"%x", fmt.Sprintf("%x", v)},
		{"%#v", fmt.Sprintf("%#v", v)},
		{"%+v struct", fmt.Sprintf("%+v", struct{ B logging.PHI }{v})},
		{"json", string(js)},
		{"error wrap", fmt.Errorf("save %v: %w", v, errors.New("x")).Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if strings.Contains(tt.out, plaintext) || strings.Contains(tt.out, fmt.Sprintf("%x", plaintext)) {
				t.Errorf("%s rendering = %q, leaks the value", tt.name, tt.out)
			}
		})
	}
}

func TestLevel(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := logging.New(&buf, slog.LevelWarn)
	l.Info("hidden")
	if buf.Len() != 0 {
		t.Errorf("Info at level warn wrote %q, want nothing", buf.String())
	}
}

func TestContextRequestID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		build func(ctx context.Context, l *slog.Logger) context.Context
	}{
		{"logger then id", func(ctx context.Context, l *slog.Logger) context.Context {
			return logging.WithRequestID(logging.WithLogger(ctx, l), "req-123")
		}},
		{"id then logger", func(ctx context.Context, l *slog.Logger) context.Context {
			return logging.WithLogger(logging.WithRequestID(ctx, "req-123"), l)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			ctx := tt.build(t.Context(), logging.New(&buf, slog.LevelInfo))
			if got := logging.RequestID(ctx); got != "req-123" {
				t.Errorf("RequestID(ctx) = %q, want %q", got, "req-123")
			}
			logging.FromContext(ctx).Info("hello")
			var got map[string]any
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("json.Unmarshal(%s) = %v", buf.String(), err)
			}
			if got[logging.KeyRequestID] != "req-123" {
				t.Errorf("logged %s = %v, want req-123 (line %s)", logging.KeyRequestID, got[logging.KeyRequestID], buf.String())
			}
		})
	}
	if got := logging.FromContext(t.Context()); got != slog.Default() {
		t.Errorf("FromContext(empty ctx) = %v, want slog.Default()", got)
	}
}

func TestFields(t *testing.T) {
	t.Parallel()
	logging.AddFields(t.Context(), slog.String("x", "y")) // no Fields: a no-op, not a panic
	ctx, f := logging.WithFields(t.Context())
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() { logging.AddFields(ctx, slog.Int("i", i)) })
	}
	wg.Wait()
	if got := len(f.Attrs()); got != 10 {
		t.Errorf("len(Fields.Attrs()) = %d, want 10", got)
	}
}
