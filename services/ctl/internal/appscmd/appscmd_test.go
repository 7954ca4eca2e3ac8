package appscmd_test

import (
	"testing"

	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	"github.com/securemsg/securemsg/services/ctl/internal/appscmd"
)

func TestKindNames(t *testing.T) {
	for _, k := range []directoryv1.ClientAppKind{directoryv1.ClientAppKind_CLIENT_APP_KIND_PATIENT_PORTAL, directoryv1.ClientAppKind_CLIENT_APP_KIND_CARE_TEAM,
		directoryv1.ClientAppKind_CLIENT_APP_KIND_THIRD_PARTY, directoryv1.ClientAppKind_CLIENT_APP_KIND_OPERATOR, directoryv1.ClientAppKind_CLIENT_APP_KIND_PROVISIONING} {
		got, err := appscmd.ParseKind(appscmd.KindName(k))
		if err != nil || got != k {
			t.Errorf("ParseKind(KindName(%v)) = %v, %v", k, got, err)
		}
	}
	for _, bad := range []string{"", "unspecified", "portal"} {
		if _, err := appscmd.ParseKind(bad); err == nil {
			t.Errorf("ParseKind(%q) = nil error", bad)
		}
	}
}
