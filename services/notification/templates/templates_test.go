package templates

import (
	"testing"
	"testing/fstest"

	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

// TestShippedTemplatesPassLint is the CI lint of the shipped templates: every file must pass
// domain.LintTemplate, and every kind has a template for every text channel in the default
// locale.
func TestShippedTemplatesPassLint(t *testing.T) {
	t.Parallel()
	ts, err := Defaults()
	if err != nil {
		t.Fatalf("Defaults() = %v", err)
	}
	have := map[string]bool{}
	for _, tmpl := range ts {
		have[tmpl.Key()] = true
		if _, err := domain.Render(tmpl, domain.TemplateData{OrganisationName: "Org", PortalLink: "https://p.example", Count: 2}); err != nil {
			t.Errorf("Render(%s) = %v", tmpl.Key(), err)
		}
	}
	for _, k := range domain.Kinds {
		for _, ch := range []domain.Channel{domain.ChannelEmail, domain.ChannelSMS, domain.ChannelPush} {
			key := domain.Template{Kind: k, Channel: ch, Locale: domain.DefaultLocale}.Key()
			if !have[key] {
				t.Errorf("no shipped template %s", key)
			}
		}
	}
}

func TestLoadRefusesBadTemplates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files fstest.MapFS
	}{
		{"forbidden field", fstest.MapFS{"new_message.sms.en-US.body.tmpl": {Data: []byte("{{.PatientName}}")}}},
		{"bad file name", fstest.MapFS{"new_message.sms.body.tmpl": {Data: []byte("x")}}},
		{"unknown channel", fstest.MapFS{"new_message.fax.en-US.body.tmpl": {Data: []byte("x")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := Load(tt.files); err == nil {
				t.Errorf("Load(%s) = nil error, want a refusal", tt.name)
			}
		})
	}
}
