package domain

import (
	"strings"
	"testing"
)

// FuzzTemplate feeds arbitrary admin-supplied template text to LintTemplate and Render: no
// panic; a rejection is a TEMPLATE_REJECTED refusal; Render refuses exactly what the lint refuses; and
// an accepted template renders within MaxRenderedLen, with a one-line subject.
func FuzzTemplate(f *testing.F) {
	f.Add(uint8(ChannelEmail), "New message from {{.OrganisationName}}", "{{if gt .Count 1}}{{.Count}} messages{{else}}A message{{end}}: {{.PortalLink}}", 3)
	f.Add(uint8(ChannelSMS), "", "{{printf \"%d new\" .Count}} {{.PortalLink}}", 1)
	f.Add(uint8(ChannelPush), "{{.Count}} new", "{{if and (ge .Count 1) (not (eq .Count 5))}}x{{end}}", 5)
	f.Add(uint8(ChannelEmail), "{{.Subject}}", "{{.Body}}", 1)
	f.Add(uint8(ChannelEmail), "s", "{{range .Count}}{{end}}", 1)
	f.Add(uint8(ChannelEmail), "s", "{{define \"x\"}}y{{end}}{{template \"x\"}}", 1)
	f.Add(uint8(ChannelEmail), "s", "{{$x := .Count}}{{$x}}", 1)
	f.Add(uint8(ChannelEmail), "s", "{{printf \"%0999999d\" 1}}{{printf \"%0999999d\" 2}}", 1)
	f.Add(uint8(ChannelEmail), "s", "{{call .Count}}{{index .PortalLink 0}}", 1)
	f.Add(uint8(ChannelEmail), "s", "{{if", 1)
	f.Add(uint8(ChannelWebhook), "", "x", 1)

	f.Fuzz(func(t *testing.T, channel uint8, subject, body string, count int) {
		tmpl := Template{Kind: KindNewMessage, Channel: Channel(channel % 5), Locale: "en-US", Subject: subject, Body: body}
		data := TemplateData{OrganisationName: "Example Clinic", PortalLink: "https://portal.example/msg", Count: count}
		lintErr := LintTemplate(tmpl)
		if lintErr != nil && !HasReason(lintErr, ReasonTemplateRejected) {
			t.Fatalf("LintTemplate error = %v, want TEMPLATE_REJECTED", lintErr)
		}
		out, err := Render(tmpl, data)
		if lintErr != nil {
			if !HasReason(err, ReasonTemplateRejected) || out != (Rendered{}) {
				t.Fatalf("Render of a rejected template = %q, %v; want TEMPLATE_REJECTED", out, err)
			}
			return
		}
		if err != nil {
			// Execution may still fail on types (gt .Count "a"), or on length: never half-rendered.
			if out != (Rendered{}) {
				t.Fatalf("Render = %q with error %v", out, err)
			}
			return
		}
		if len(out.Subject) > MaxRenderedLen || len(out.Body) > MaxRenderedLen {
			t.Fatalf("Render produced %d/%d bytes, want at most %d", len(out.Subject), len(out.Body), MaxRenderedLen)
		}
		if strings.ContainsAny(out.Subject, "\r\n") {
			t.Fatalf("Render subject %q spans lines", out.Subject)
		}
	})
}
