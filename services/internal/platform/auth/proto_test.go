package auth_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
)

func TestPrincipalProtoRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0).UTC()
	in := &auth.Principal{
		Kind: auth.KindUser, Subject: "u-1", Roles: []auth.Role{auth.RoleProxy, auth.RoleClinician},
		PatientID: "p-1", CarePools: []string{"pool-a"}, AMR: []string{"pwd", "otp"},
		ProxyGrants: []auth.ProxyGrant{{PatientID: "p-2", Scopes: []string{"read"}, ExpiresAt: now.Add(time.Hour)}},
		AuthTime:    now, IssuedAt: now, ClientID: "portal-web", Scopes: []string{"messages.read"},
	}
	got := auth.PrincipalFromProto(in.ToProto(), "attachment")
	want := *in
	want.Via = "attachment"
	if diff := cmp.Diff(&want, got, cmpopts.EquateEmpty(), cmpopts.IgnoreUnexported(auth.Principal{})); diff != "" {
		t.Errorf("PrincipalFromProto(ToProto(p)) differs (-want +got):\n%s", diff)
	}
}

func TestPrincipalFromProtoDropsUnknownRoles(t *testing.T) {
	t.Parallel()
	got := auth.PrincipalFromProto(&commonv1.Principal{Subject: "s", Roles: []commonv1.Role{commonv1.Role_ROLE_SERVICE, commonv1.Role_ROLE_PATIENT}}, "attachment")
	if diff := cmp.Diff([]auth.Role{auth.RolePatient}, got.Roles); diff != "" {
		t.Errorf("PrincipalFromProto roles (-want +got):\n%s", diff)
	}
}
