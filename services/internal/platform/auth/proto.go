package auth

import (
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
)

// ToProto renders a person's Principal for a service-to-service request (for example the
// attachment service asking messaging whether the person may read a message). It carries no
// token: the receiver trusts it only from a peer authenticated by mTLS.
func (p *Principal) ToProto() *commonv1.Principal {
	out := &commonv1.Principal{
		Subject:     p.Subject,
		PatientId:   p.PatientID,
		CarePoolIds: append([]string(nil), p.CarePools...),
		Amr:         append([]string(nil), p.AMR...),
		ClientId:    p.ClientID,
		Scopes:      append([]string(nil), p.Scopes...),
	}
	for _, r := range p.Roles {
		if v, ok := commonv1.Role_value["ROLE_"+strings.ToUpper(string(r))]; ok {
			out.Roles = append(out.Roles, commonv1.Role(v))
		}
	}
	for _, g := range p.ProxyGrants {
		out.ProxyGrants = append(out.ProxyGrants, &commonv1.ProxyGrant{
			PatientId: g.PatientID, Scopes: append([]string(nil), g.Scopes...), ExpiresAt: timestamppb.New(g.ExpiresAt),
		})
	}
	if !p.AuthTime.IsZero() {
		out.AuthTime = timestamppb.New(p.AuthTime)
	}
	if !p.IssuedAt.IsZero() {
		out.IssuedAt = timestamppb.New(p.IssuedAt)
	}
	return out
}

// PrincipalFromProto rebuilds a person's Principal relayed by the peer service via (taken from
// the mTLS identity, never from the message). Unknown roles are dropped, as when a token is
// verified, so a relayed principal can never hold more than a token could.
func PrincipalFromProto(in *commonv1.Principal, via string) *Principal {
	p := &Principal{
		Kind:      KindUser,
		Subject:   in.GetSubject(),
		PatientID: in.GetPatientId(),
		CarePools: append([]string(nil), in.GetCarePoolIds()...),
		AMR:       append([]string(nil), in.GetAmr()...),
		ClientID:  in.GetClientId(),
		Scopes:    append([]string(nil), in.GetScopes()...),
		Via:       via,
	}
	for _, r := range in.GetRoles() {
		name := Role(strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_")))
		for _, known := range KnownRoles {
			if name == known {
				p.Roles = append(p.Roles, name)
			}
		}
	}
	for _, g := range in.GetProxyGrants() {
		p.ProxyGrants = append(p.ProxyGrants, ProxyGrant{
			PatientID: g.GetPatientId(), Scopes: append([]string(nil), g.GetScopes()...), ExpiresAt: g.GetExpiresAt().AsTime(),
		})
	}
	if in.GetAuthTime() != nil {
		p.AuthTime = in.GetAuthTime().AsTime()
	}
	if in.GetIssuedAt() != nil {
		p.IssuedAt = in.GetIssuedAt().AsTime()
	}
	return p
}
