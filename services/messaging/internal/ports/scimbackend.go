package ports

import (
	"net/http"
	"slices"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/platform/inprocess"
	"github.com/securemsg/securemsg/services/messaging/internal/ports/scim"
)

// maxSCIMListed bounds what one SCIM list walks: SCIM pages by offset and reports a total,
// which keyset-paged rpcs can only give by reading every page. Staff directories and pools are
// far below it; past it a list is refused rather than made slow for everyone.
const maxSCIMListed = 20_000

// SCIMBackend is scim.Backend over messaging's admin rpcs, called in process on the service's
// *grpc.Server with the identity provider's own request (its bearer token, its address), so
// provisioning passes every guard an admin call passes and is audited as one.
type SCIMBackend struct {
	// RPC is the service's *grpc.Server, as an http.Handler.
	RPC http.Handler
}

var _ scim.Backend = SCIMBackend{}

func scimCall[Req, Res any](b SCIMBackend, r *http.Request, method string, req *Req) (*Res, error) {
	return inprocess.Unary[Req, Res](inprocess.WithOrigin(r.Context(), r), b.RPC, method, r.Header, req)
}

// errTooMany is the refusal of a list longer than maxSCIMListed.
var errTooMany = connect.NewError(connect.CodeResourceExhausted, nil)

// ListUsers implements scim.Backend: the provisioned people, by subject.
func (b SCIMBackend) ListUsers(r *http.Request, f scim.UserFilter, offset, limit int) ([]scim.User, int, error) {
	var all []scim.User
	req := &messagingv1.ListPeopleRequest{UserName: f.UserName, ExternalId: f.ExternalID, PageSize: 100,
		Sources: []messagingv1.PersonSource{messagingv1.PersonSource_PERSON_SOURCE_PROVISIONED}}
	for {
		res, err := scimCall[messagingv1.ListPeopleRequest, messagingv1.ListPeopleResponse](b, r, messagingv1.MessagingService_ListPeople_FullMethodName, req)
		if err != nil {
			return nil, 0, err
		}
		for _, p := range res.GetPeople() {
			all = append(all, scimUser(p))
		}
		if len(all) > maxSCIMListed {
			return nil, 0, errTooMany
		}
		if req.PageToken = res.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	return window(all, offset, limit), len(all), nil
}

// window is the page [offset, offset+limit) of all.
func window[T any](all []T, offset, limit int) []T {
	offset = min(max(offset, 0), len(all))
	return all[offset:min(offset+max(limit, 0), len(all))]
}

// GetUser implements scim.Backend. Only provisioned people are users: a patient, a proxy or a
// clinician recorded at first contact is NotFound, so that the identity provider creates the
// clinician (ProvisionPerson takes the record over) and never sees patients.
func (b SCIMBackend) GetUser(r *http.Request, id string) (scim.User, error) {
	res, err := scimCall[messagingv1.GetPersonRequest, messagingv1.GetPersonResponse](b, r, messagingv1.MessagingService_GetPerson_FullMethodName,
		&messagingv1.GetPersonRequest{Subject: id})
	if err != nil {
		return scim.User{}, err
	}
	if res.GetPerson().GetSource() != messagingv1.PersonSource_PERSON_SOURCE_PROVISIONED {
		return scim.User{}, connect.NewError(connect.CodeNotFound, nil)
	}
	return scimUser(res.GetPerson()), nil
}

// PutUser implements scim.Backend.
func (b SCIMBackend) PutUser(r *http.Request, u scim.User) (scim.User, error) {
	p := &messagingv1.Person{Subject: u.ID, ExternalId: u.ExternalID, UserName: u.UserName, DisplayName: u.DisplayName,
		Status: directoryv1.PersonStatus_PERSON_STATUS_ACTIVE}
	if !u.Active {
		p.Status = directoryv1.PersonStatus_PERSON_STATUS_DEACTIVATED
	}
	for _, name := range u.Roles {
		if v, ok := commonv1.Role_value["ROLE_"+strings.ToUpper(name)]; ok {
			p.Roles = append(p.Roles, commonv1.Role(v))
		}
	}
	res, err := scimCall[messagingv1.ProvisionPersonRequest, messagingv1.ProvisionPersonResponse](b, r, messagingv1.MessagingService_ProvisionPerson_FullMethodName,
		&messagingv1.ProvisionPersonRequest{Person: p})
	if err != nil {
		return scim.User{}, err
	}
	return scimUser(res.GetPerson()), nil
}

func scimUser(p *messagingv1.Person) scim.User {
	u := scim.User{ID: p.GetSubject(), ExternalID: p.GetExternalId(), UserName: p.GetUserName(), DisplayName: p.GetDisplayName(),
		Active:  p.GetStatus() != directoryv1.PersonStatus_PERSON_STATUS_DEACTIVATED,
		Created: p.GetCreateTime().AsTime(), Modified: p.GetUpdateTime().AsTime(),
		// Every change moves update_time, at microsecond precision in the store.
		Version: p.GetUpdateTime().AsTime().UnixMicro(),
	}
	for _, r := range p.GetRoles() {
		u.Roles = append(u.Roles, strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_")))
	}
	return u
}

// ListGroups implements scim.Backend: the active pools with their members.
func (b SCIMBackend) ListGroups(r *http.Request, offset, limit int) ([]scim.Group, int, error) {
	var pools []*messagingv1.Pool
	req := &messagingv1.ListPoolsRequest{PageSize: 100}
	for {
		res, err := scimCall[messagingv1.ListPoolsRequest, messagingv1.ListPoolsResponse](b, r, messagingv1.MessagingService_ListPools_FullMethodName, req)
		if err != nil {
			return nil, 0, err
		}
		pools = append(pools, res.GetPools()...)
		if len(pools) > maxSCIMListed {
			return nil, 0, errTooMany
		}
		if req.PageToken = res.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	page := window(pools, offset, limit)
	out := make([]scim.Group, 0, len(page))
	for _, p := range page {
		g, err := b.group(r, p)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, g)
	}
	return out, len(pools), nil
}

// GetGroup implements scim.Backend. A deactivated pool is NotFound: SCIM's DELETE removed it.
func (b SCIMBackend) GetGroup(r *http.Request, id string) (scim.Group, error) {
	p, err := b.pool(r, id)
	if err != nil {
		return scim.Group{}, err
	}
	return b.group(r, p)
}

func (b SCIMBackend) pool(r *http.Request, id string) (*messagingv1.Pool, error) {
	res, err := scimCall[messagingv1.GetPoolRequest, messagingv1.GetPoolResponse](b, r, messagingv1.MessagingService_GetPool_FullMethodName,
		&messagingv1.GetPoolRequest{PoolId: id})
	if err != nil {
		return nil, err
	}
	if !res.GetPool().GetActive() {
		return nil, connect.NewError(connect.CodeNotFound, nil)
	}
	return res.GetPool(), nil
}

// group is p with its members.
func (b SCIMBackend) group(r *http.Request, p *messagingv1.Pool) (scim.Group, error) {
	g := scim.Group{ID: p.GetPoolId(), DisplayName: p.GetName(), Created: p.GetCreateTime().AsTime(), Modified: p.GetUpdateTime().AsTime()}
	req := &messagingv1.ListPoolMembersRequest{PoolId: p.GetPoolId(), PageSize: 100}
	for {
		res, err := scimCall[messagingv1.ListPoolMembersRequest, messagingv1.ListPoolMembersResponse](b, r, messagingv1.MessagingService_ListPoolMembers_FullMethodName, req)
		if err != nil {
			return scim.Group{}, err
		}
		for _, m := range res.GetMembers() {
			g.Members = append(g.Members, m.GetSubject())
		}
		if len(g.Members) > maxSCIMListed {
			return scim.Group{}, errTooMany
		}
		if req.PageToken = res.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	slices.Sort(g.Members)
	return g, nil
}

// CreateGroup implements scim.Backend: a pool every patient may write to, which an admin can
// restrict afterwards (CreatePool's defaults).
func (b SCIMBackend) CreateGroup(r *http.Request, id, displayName string) (scim.Group, error) {
	res, err := scimCall[messagingv1.CreatePoolRequest, messagingv1.CreatePoolResponse](b, r, messagingv1.MessagingService_CreatePool_FullMethodName,
		&messagingv1.CreatePoolRequest{Pool: &messagingv1.Pool{PoolId: id, Name: displayName}})
	if err != nil {
		return scim.Group{}, err
	}
	return b.group(r, res.GetPool())
}

// RenameGroup implements scim.Backend.
func (b SCIMBackend) RenameGroup(r *http.Request, id, displayName string) (scim.Group, error) {
	if _, err := b.pool(r, id); err != nil {
		return scim.Group{}, err
	}
	res, err := b.updatePool(r, &messagingv1.Pool{PoolId: id, Name: displayName}, "name")
	if err != nil {
		return scim.Group{}, err
	}
	return b.group(r, res.GetPool())
}

// DeactivateGroup implements scim.Backend: the pool is kept (its threads and audit records
// name it) and stops taking threads; its members stop working it.
func (b SCIMBackend) DeactivateGroup(r *http.Request, id string) error {
	if _, err := b.pool(r, id); err != nil {
		return err
	}
	_, err := b.updatePool(r, &messagingv1.Pool{PoolId: id, Active: false}, "active")
	return err
}

func (b SCIMBackend) updatePool(r *http.Request, p *messagingv1.Pool, paths ...string) (*messagingv1.UpdatePoolResponse, error) {
	return scimCall[messagingv1.UpdatePoolRequest, messagingv1.UpdatePoolResponse](b, r, messagingv1.MessagingService_UpdatePool_FullMethodName,
		&messagingv1.UpdatePoolRequest{Pool: p, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}})
}

// AddMember implements scim.Backend: the user works the pool as a clinician when they are one,
// as staff otherwise.
func (b SCIMBackend) AddMember(r *http.Request, groupID string, u scim.User) error {
	role := directoryv1.PoolRole_POOL_ROLE_STAFF
	if scim.PoolRole(u.Roles) == "clinician" {
		role = directoryv1.PoolRole_POOL_ROLE_CLINICIAN
	}
	_, err := scimCall[messagingv1.SetPoolMemberRequest, messagingv1.SetPoolMemberResponse](b, r, messagingv1.MessagingService_SetPoolMember_FullMethodName,
		&messagingv1.SetPoolMemberRequest{PoolId: groupID, Subject: u.ID, Role: role})
	return err
}

// RemoveMember implements scim.Backend.
func (b SCIMBackend) RemoveMember(r *http.Request, groupID, userID string) error {
	_, err := scimCall[messagingv1.RemovePoolMemberRequest, messagingv1.RemovePoolMemberResponse](b, r, messagingv1.MessagingService_RemovePoolMember_FullMethodName,
		&messagingv1.RemovePoolMemberRequest{PoolId: groupID, Subject: userID})
	return err
}
