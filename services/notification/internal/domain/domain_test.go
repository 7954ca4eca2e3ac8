package domain

import (
	"strings"
	"testing"
	"time"
)

func TestLintTemplate(t *testing.T) {
	t.Parallel()
	ok := Template{Kind: KindNewMessage, Channel: ChannelEmail, Locale: "en-US", Subject: "New message from {{.OrganisationName}}", Body: "{{if gt .Count 1}}{{.Count}} messages{{else}}A message{{end}}: {{.PortalLink}}"}
	tests := []struct {
		name    string
		mutate  func(*Template)
		wantErr string
	}{
		{"allowed fields and comparisons", func(*Template) {}, ""},
		{"printf allowed", func(t *Template) { t.Body = `{{printf "%d new" .Count}}` }, ""},
		{"unknown field", func(t *Template) { t.Body = "Hi {{.PatientName}}" }, `field ".PatientName" is not allowed`},
		{"nested field", func(t *Template) { t.Body = "{{.Message.Subject}}" }, `field ".Message.Subject" is not allowed`},
		{"dot", func(t *Template) { t.Body = "{{.}}" }, "dot"},
		{"variable", func(t *Template) { t.Body = "{{$x := .Count}}{{$x}}" }, "variable"},
		{"root variable field", func(t *Template) { t.Body = "{{$.Secret}}" }, "variable"},
		{"range", func(t *Template) { t.Body = "{{range .Count}}x{{end}}" }, "range"},
		{"template call", func(t *Template) { t.Body = `{{template "x"}}` }, "template"},
		{"define", func(t *Template) { t.Body = `{{define "x"}}hi{{end}}body` }, "nested templates"},
		{"call function", func(t *Template) { t.Body = `{{call .PortalLink}}` }, `function "call"`},
		{"index function", func(t *Template) { t.Body = `{{index .PortalLink 0}}` }, `function "index"`},
		{"subject field", func(t *Template) { t.Subject = "{{.Subject}}" }, `field ".Subject"`},
		{"parse error", func(t *Template) { t.Body = "{{.Count" }, "does not parse"},
		{"sms too long", func(t *Template) { t.Channel, t.Subject, t.Body = ChannelSMS, "", strings.Repeat("x", 321) }, "longer than 320"},
		{"sms subject", func(t *Template) { t.Channel = ChannelSMS }, "email and push only"},
		{"email without subject", func(t *Template) { t.Subject = "" }, "required for email"},
		{"webhook", func(t *Template) { t.Channel = ChannelWebhook; t.Subject = "" }, "webhook"},
		{"missing kind", func(t *Template) { t.Kind = KindUnspecified }, "required"},
		{"unknown kind", func(t *Template) { t.Kind = 9 }, "not one alerts are sent for"},
		{"unknown channel", func(t *Template) { t.Channel = -1 }, "not one alerts are sent for"},
		{"bad locale", func(t *Template) { t.Locale = "english please" }, "locale"},
		{"multi-line subject", func(t *Template) { t.Subject = "a\nBcc: x@example.org" }, "spans lines"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tmpl := ok
			tt.mutate(&tmpl)
			err := LintTemplate(tmpl)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("LintTemplate() = %v, want nil", err)
				}
				return
			}
			if !HasReason(err, ReasonTemplateRejected) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("LintTemplate() = %v, want TEMPLATE_REJECTED containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestRender(t *testing.T) {
	t.Parallel()
	tmpl := Template{Kind: KindDigest, Channel: ChannelEmail, Locale: "en-US", Subject: "{{.Count}} new from {{.OrganisationName}}", Body: "{{if eq .Count 1}}one{{else}}many{{end}} {{.PortalLink}}"}
	got, err := Render(tmpl, TemplateData{OrganisationName: "Clinic", PortalLink: "https://p.example/x", Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != "3 new from Clinic" || got.Body != "many https://p.example/x" {
		t.Errorf("Render() = %+v", got)
	}
	bad := tmpl
	bad.Body = "{{.Secret}}"
	if _, err := Render(bad, TemplateData{}); !HasReason(err, ReasonTemplateRejected) {
		t.Errorf("Render(unlinted field) = %v, want TEMPLATE_REJECTED", err)
	}
}

func TestQuietUntil(t *testing.T) {
	t.Parallel()
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	at := func(h, m int) time.Time { return time.Date(2025, 3, 4, h, m, 0, 0, ny) }
	night := QuietHours{Enabled: true, StartMinute: 22 * 60, EndMinute: 7 * 60, TimeZone: "America/New_York"}
	lunch := QuietHours{Enabled: true, StartMinute: 12 * 60, EndMinute: 13 * 60, TimeZone: "America/New_York"}
	tests := []struct {
		name string
		q    QuietHours
		now  time.Time
		want time.Time
	}{
		{"before night window", night, at(21, 59), time.Time{}},
		{"in night window evening", night, at(23, 0), time.Date(2025, 3, 5, 7, 0, 0, 0, ny)},
		{"in night window morning", night, at(6, 30), at(7, 0)},
		{"after night window", night, at(7, 0), time.Time{}},
		{"in day window", lunch, at(12, 30), at(13, 0)},
		{"utc instant converted", lunch, at(12, 30).UTC(), at(13, 0)},
		{"disabled", QuietHours{StartMinute: 0, EndMinute: 1439}, at(12, 0), time.Time{}},
		{"empty window", QuietHours{Enabled: true, StartMinute: 60, EndMinute: 60}, at(1, 0), time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.q.QuietUntil(tt.now); !got.Equal(tt.want) {
				t.Errorf("QuietUntil(%s) = %s, want %s", tt.now, got, tt.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	p := RetryPolicy{Base: time.Second, Max: 10 * time.Second, MaxAttempts: 5}
	for _, tt := range []struct {
		attempt int
		min     time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {4, 8 * time.Second}, {5, 10 * time.Second}, {9, 10 * time.Second}} {
		got := p.Backoff(tt.attempt)
		if got < tt.min || got > tt.min+tt.min/10 {
			t.Errorf("Backoff(%d) = %s, want in [%s, +10%%]", tt.attempt, got, tt.min)
		}
	}
	if p.Exhausted(4) || !p.Exhausted(5) {
		t.Errorf("Exhausted(4), Exhausted(5) = %v, %v, want false, true", p.Exhausted(4), p.Exhausted(5))
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	a := IdempotencyKey("e1", "r1", ChannelEmail)
	if a != IdempotencyKey("e1", "r1", ChannelEmail) {
		t.Error("IdempotencyKey is not deterministic")
	}
	for _, other := range []string{IdempotencyKey("e1", "r1", ChannelSMS), IdempotencyKey("e1r", "1", ChannelEmail), IdempotencyKey("e2", "r1", ChannelEmail)} {
		if other == a {
			t.Errorf("IdempotencyKey collision: %s", other)
		}
	}
}

func TestValidatePreferences(t *testing.T) {
	t.Parallel()
	base := func() Preferences {
		p := DefaultPreferences("s")
		p.Channels[ChannelEmail] = ChannelSetting{Enabled: true, Address: "a@example.org"}
		return p
	}
	tests := []struct {
		name    string
		mutate  func(*Preferences)
		wantErr string
	}{
		{"valid", func(*Preferences) {}, ""},
		{"email with name", func(p *Preferences) { p.Channels[ChannelEmail] = ChannelSetting{Address: "Bob <b@example.org>"} }, "email.address"},
		{"sms not e164", func(p *Preferences) { p.Channels[ChannelSMS] = ChannelSetting{Address: "555-1234"} }, "E.164"},
		{"push prefix", func(p *Preferences) { p.Channels[ChannelPush] = ChannelSetting{Address: "gcm:abcdefghij"} }, "push.address"},
		{"webhook http", func(p *Preferences) { p.Channels[ChannelWebhook] = ChannelSetting{Address: "http://example.org/h"} }, "https"},
		{"quiet minutes", func(p *Preferences) { p.Quiet.EndMinute = 1440 }, "0..1439"},
		{"zone", func(p *Preferences) { p.Quiet.TimeZone = "Mars/Olympus" }, "IANA"},
		{"digest too long", func(p *Preferences) { p.DigestWindow = 25 * time.Hour }, "digest_window"},
		{"negative reminder", func(p *Preferences) { p.ReminderAfter = -time.Second }, "reminder_after"},
		{"pool id", func(p *Preferences) { p.PoolSubscriptions = []string{"a.b"} }, "pool_subscriptions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := base()
			tt.mutate(&p)
			err := p.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !HasReason(err, ReasonInvalidPreferences) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "example.org") || strings.Contains(err.Error(), "555") {
				t.Errorf("Validate() error %q echoes the address", err)
			}
		})
	}
}

func TestPushPayloadsCarryIDsOnly(t *testing.T) {
	t.Parallel()
	a := Alert{DeliveryID: "d-1", Kind: KindNewMessage, ThreadID: "t-1", MessageID: "m-1", Text: Rendered{Subject: "Org", Body: "You have a new secure message."}}
	for _, tt := range []struct{ name, token, want string }{
		{"fcm", "fcm:tok123456", `"message":{`},
		{"apns", "apns:tok123456", `"aps":{`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := a
			a.Address = tt.token
			raw, err := BuildPush(a)
			if err != nil {
				t.Fatal(err)
			}
			s := string(raw)
			for _, want := range []string{tt.want, `\"thread_id\":\"t-1\"`, `\"message_id\":\"m-1\"`} {
				if !strings.Contains(s, want) && !strings.Contains(s, strings.ReplaceAll(want, `\"`, `"`)) {
					t.Errorf("BuildPush() = %s, want it to contain %s", s, want)
				}
			}
		})
	}
	if _, err := BuildPush(Alert{Address: "other:tok"}); err == nil {
		t.Error("BuildPush(unknown platform) = nil error")
	}
}
