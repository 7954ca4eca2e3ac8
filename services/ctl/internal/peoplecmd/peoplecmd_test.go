package peoplecmd_test

import (
	"slices"
	"testing"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/ctl/internal/peoplecmd"
)

func TestRolesAndSources(t *testing.T) {
	got, err := peoplecmd.ParseRoles([]string{"clinician", " Staff", "admin", "auditor"})
	want := []commonv1.Role{commonv1.Role_ROLE_CLINICIAN, commonv1.Role_ROLE_STAFF, commonv1.Role_ROLE_ADMIN, commonv1.Role_ROLE_AUDITOR}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("ParseRoles = %v, %v; want %v", got, err, want)
	}
	for _, r := range want {
		if back, err := peoplecmd.ParseRoles([]string{peoplecmd.RoleName(r)}); err != nil || back[0] != r {
			t.Errorf("ParseRoles(RoleName(%v)) = %v, %v", r, back, err)
		}
	}
	// Patients and proxies are met at first contact, never provisioned.
	for _, bad := range []string{"patient", "proxy", "service", "", "unspecified"} {
		if _, err := peoplecmd.ParseRoles([]string{bad}); err == nil {
			t.Errorf("ParseRoles(%q) = nil error", bad)
		}
	}
	for _, s := range []messagingv1.PersonSource{messagingv1.PersonSource_PERSON_SOURCE_FIRST_CONTACT, messagingv1.PersonSource_PERSON_SOURCE_PROVISIONED,
		messagingv1.PersonSource_PERSON_SOURCE_SEED} {
		if back, err := peoplecmd.ParseSources([]string{peoplecmd.SourceName(s)}); err != nil || back[0] != s {
			t.Errorf("ParseSources(SourceName(%v)) = %v, %v", s, back, err)
		}
	}
	if _, err := peoplecmd.ParseSources([]string{"unspecified"}); err == nil {
		t.Error("ParseSources(unspecified) = nil error")
	}
}
