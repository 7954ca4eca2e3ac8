package domain

import (
	"errors"
	"strings"
	"testing"
	"time"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

func TestParseRetention(t *testing.T) {
	t.Parallel()
	all := map[string]string{"GENERAL": "30d", "CLINICAL_QUESTION": "720h", "PRESCRIPTION": "30d", "TEST_RESULTS": "30d",
		"APPOINTMENT": "30d", "BILLING": "30d", "ADMINISTRATIVE": "30d"}
	for _, tc := range []struct {
		name    string
		edit    func(map[string]string)
		wantErr string
	}{
		{"every category", func(map[string]string) {}, ""},
		{"missing category", func(m map[string]string) { delete(m, "BILLING") }, "no retention period for BILLING"},
		{"unknown category", func(m map[string]string) { m["GOSSIP"] = "1d" }, "unknown category"},
		{"bad period", func(m map[string]string) { m["GENERAL"] = "soon" }, "not a positive duration"},
		{"zero period", func(m map[string]string) { m["GENERAL"] = "0d" }, "not a positive duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := map[string]string{}
			for k, v := range all {
				m[k] = v
			}
			tc.edit(m)
			r, err := ParseRetention(m)
			if tc.wantErr == "" {
				if err != nil || r[commonv1.ThreadCategory_THREAD_CATEGORY_GENERAL] != 30*24*time.Hour {
					t.Fatalf("ParseRetention() = %v, %v, want GENERAL 30 days", r, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParseRetention() error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestChecks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"body ok", CheckText("body", "hello", MaxBodyChars, true), nil},
		{"body empty", CheckText("body", " ", MaxBodyChars, true), usererr.ErrInvalidArgument},
		{"body too long", CheckText("body", strings.Repeat("é", MaxBodyChars+1), MaxBodyChars, true), usererr.ErrInvalidArgument},
		{"code ok", CheckCode("reason_code", "wrong_pool", true), nil},
		{"code free text", CheckCode("reason_code", "Wrong pool, sorry", true), usererr.ErrInvalidArgument},
		{"case reference ok", CheckCaseReference("LIT-2026-0042"), nil},
		{"case reference with a name", CheckCaseReference("Jane Doe v Clinic"), usererr.ErrInvalidArgument},
		{"pool with a wildcard", CheckPoolID("pool_id", "pool.>"), usererr.ErrInvalidArgument},
		{"eleven attachments", CheckAttachments(make([]string, 11)), usererr.ErrInvalidArgument},
		{"provisioning app", provisioningApp(ScopeDirectoryProvision).Check(), nil},
		{"provisioning app with another scope", provisioningApp(ScopeDirectoryProvision, "admin").Check(), usererr.ErrInvalidArgument},
		{"provisioning scope for a portal", ClientApp{ClientID: "portal", Kind: directoryv1.ClientAppKind_CLIENT_APP_KIND_PATIENT_PORTAL,
			DisplayName: "Portal", AllowedScopes: []string{"messages.read", ScopeDirectoryProvision}}.Check(), usererr.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if (tc.want == nil) != (tc.err == nil) || (tc.want != nil && !errors.Is(tc.err, tc.want)) {
				t.Fatalf("%s = %v, want %v", tc.name, tc.err, tc.want)
			}
			if tc.err != nil && strings.Contains(tc.err.Error(), "Jane") {
				t.Fatalf("error %q echoes the input", tc.err)
			}
		})
	}
}

func provisioningApp(scopes ...string) ClientApp {
	return ClientApp{ClientID: "idp-scim", Kind: directoryv1.ClientAppKind_CLIENT_APP_KIND_PROVISIONING, DisplayName: "IdP", AllowedScopes: scopes}
}

func TestAutoReplyBody(t *testing.T) {
	t.Parallel()
	s := PoolSettings{AutoReplyText: "Thanks.", Turnaround: 48 * time.Hour, EmergencyDisclaimer: "For emergencies call 911."}
	if got, want := s.AutoReplyBody(), "Thanks.\n\nWe aim to answer within 2 days.\n\nFor emergencies call 911."; got != want {
		t.Fatalf("AutoReplyBody() = %q, want %q", got, want)
	}
}
