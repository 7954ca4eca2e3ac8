package scim

import (
	"net/http"
	"slices"
	"strings"

	elimity "github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/schema"
	filter "github.com/scim2/filter-parser/v2"
	"google.golang.org/grpc/codes"
)

// maxPoolIDBytes is the longest pool id messaging accepts (its protos' max_bytes).
const maxPoolIDBytes = 100

// groups serves /Groups.
type groups struct {
	*handler
	b Backend
}

// PoolID is the id of the pool a group named displayName creates: "pool-" and the name in lower
// case, each run of characters other than a-z, 0-9 and "-" made one "-", with no "-" at either
// end, at most 100 bytes. It reports false when nothing of the name is left.
func PoolID(displayName string) (string, bool) {
	var b strings.Builder
	b.WriteString("pool-")
	dash := true // no "-" right after the prefix
	for _, c := range strings.ToLower(displayName) {
		switch {
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
			b.WriteRune(c)
			dash = false
		case !dash:
			b.WriteByte('-')
			dash = true
		}
	}
	id := b.String()
	if len(id) > maxPoolIDBytes {
		id = id[:maxPoolIDBytes] // ASCII only, so any cut is a valid string
	}
	id = strings.TrimRight(id, "-")
	return id, id != "pool"
}

// Create creates a pool with the members given. Members must be existing active users; they are
// checked before the pool is created, so a refused member leaves no pool behind. A pool whose id
// is taken (by a pool of the same or a similar name, active or not) is 409.
func (h *groups) Create(r *http.Request, attrs elimity.ResourceAttributes) (elimity.Resource, error) {
	name, err := groupName(r, attrs["displayName"])
	if err != nil {
		return elimity.Resource{}, err
	}
	id, ok := PoolID(name)
	if !ok {
		return elimity.Resource{}, invalid(r, "displayName must contain a letter or digit.")
	}
	members, err := memberValues(r, attrs["members"])
	if err != nil {
		return elimity.Resource{}, err
	}
	checked, err := h.checkMembers(r, members, nil)
	if err != nil {
		return elimity.Resource{}, err
	}
	if _, err := h.b.CreateGroup(r, id, name); err != nil {
		return elimity.Resource{}, h.backendError(r, "Group", err)
	}
	return h.change(r, Group{ID: id, DisplayName: name}, name, members, checked)
}

// Get returns a pool with its members.
func (h *groups) Get(r *http.Request, id string) (elimity.Resource, error) {
	g, err := h.b.GetGroup(r, id)
	if err != nil {
		return elimity.Resource{}, h.backendError(r, "Group", err)
	}
	return groupResource(g), nil
}

// GetAll lists pools, or finds one by `displayName eq "…"` (case-insensitive), which identity
// providers ask before creating a group; any other filter is 400.
func (h *groups) GetAll(r *http.Request, params elimity.ListRequestParams) (elimity.Page, error) {
	offset, limit := page(params)
	if params.FilterValidator == nil {
		list, total, err := h.b.ListGroups(r, offset, limit)
		if err != nil {
			return elimity.Page{}, h.backendError(r, "Group", err)
		}
		p := elimity.Page{TotalResults: total, Resources: make([]elimity.Resource, 0, len(list))}
		for _, g := range list {
			p.Resources = append(p.Resources, groupResource(g))
		}
		return p, nil
	}
	attr, name, ok := equality(params.FilterValidator.GetFilter(), schema.GroupSchema)
	if !ok || !strings.EqualFold(attr, "displayName") {
		return elimity.Page{}, refuse(r, scimerrors.ScimError{ScimType: scimerrors.ScimTypeInvalidFilter, Status: http.StatusBadRequest,
			Detail: `Only the filter displayName eq "…" is supported.`})
	}
	// Pools are few (tens, not thousands) and may have been renamed away from the name their id
	// came from, so the match is a scan, not a lookup.
	var found []Group
	for from := 0; ; from += maxResults {
		list, total, err := h.b.ListGroups(r, from, maxResults)
		if err != nil {
			return elimity.Page{}, h.backendError(r, "Group", err)
		}
		for _, g := range list {
			if strings.EqualFold(g.DisplayName, name) {
				found = append(found, g)
			}
		}
		if len(list) == 0 || from+len(list) >= total {
			break
		}
	}
	p := elimity.Page{TotalResults: len(found), Resources: []elimity.Resource{}}
	for _, g := range found[min(offset, len(found)):min(offset+limit, len(found))] {
		p.Resources = append(p.Resources, groupResource(g))
	}
	return p, nil
}

// Replace sets a pool's name and its member set (adding and removing the difference).
func (h *groups) Replace(r *http.Request, id string, attrs elimity.ResourceAttributes) (elimity.Resource, error) {
	cur, err := h.b.GetGroup(r, id)
	if err != nil {
		return elimity.Resource{}, h.backendError(r, "Group", err)
	}
	name, err := groupName(r, attrs["displayName"])
	if err != nil {
		return elimity.Resource{}, err
	}
	members, err := memberValues(r, attrs["members"])
	if err != nil {
		return elimity.Resource{}, err
	}
	return h.change(r, cur, name, members, nil)
}

// Delete deactivates the pool: threads and audit records name it, so it is never erased.
func (h *groups) Delete(r *http.Request, id string) error {
	if err := h.b.DeactivateGroup(r, id); err != nil {
		return h.backendError(r, "Group", err)
	}
	return nil
}

// Patch renames the pool (replace displayName) and adds or removes members: add members, remove
// members with a list of values or with members[value eq "…"] (Okta), remove members with no
// value (all of them), replace members (the set). The target state is computed and its new
// members checked before anything changes.
func (h *groups) Patch(r *http.Request, id string, ops []elimity.PatchOperation) (elimity.Resource, error) {
	cur, err := h.b.GetGroup(r, id)
	if err != nil {
		return elimity.Resource{}, h.backendError(r, "Group", err)
	}
	name, members := cur.DisplayName, slices.Clone(cur.Members)
	for _, op := range ops {
		if op.Path != nil {
			if name, members, err = patchGroup(r, op.Op, *op.Path, op.Value, name, members); err != nil {
				return elimity.Resource{}, err
			}
			continue
		}
		values, ok := op.Value.(map[string]any)
		if !ok {
			return elimity.Resource{}, invalid(r, "An operation without a path needs an object value.")
		}
		for key, v := range values {
			path, err := filter.ParsePath([]byte(key))
			if err != nil {
				return elimity.Resource{}, refuse(r, scimerrors.ScimErrorInvalidPath)
			}
			if name, members, err = patchGroup(r, op.Op, path, v, name, members); err != nil {
				return elimity.Resource{}, err
			}
		}
	}
	return h.change(r, cur, name, members, nil)
}

// patchGroup applies one operation on one path to a pool's name and members.
func patchGroup(r *http.Request, op string, path filter.Path, v any, name string, members []string) (string, []string, error) {
	switch attr := path.AttributePath.AttributeName; {
	case strings.EqualFold(attr, "displayName"):
		if op == elimity.PatchOperationRemove {
			return "", nil, invalid(r, "displayName is required.")
		}
		n, err := groupName(r, v)
		return n, members, err
	case strings.EqualFold(attr, "members"):
		if path.ValueExpression != nil {
			a, value, ok := equality(path.ValueExpression, "")
			if !ok || !strings.EqualFold(a, "value") || op != elimity.PatchOperationRemove {
				return "", nil, refuse(r, scimerrors.ScimError{ScimType: scimerrors.ScimTypeInvalidPath, Status: http.StatusBadRequest,
					Detail: `Of member filters, only remove members[value eq "…"] is supported.`})
			}
			return name, slices.DeleteFunc(members, func(m string) bool { return m == value }), nil
		}
		list, err := memberValues(r, v)
		if err != nil {
			return "", nil, err
		}
		switch op {
		case elimity.PatchOperationAdd:
			return name, union(members, list), nil
		case elimity.PatchOperationReplace:
			return name, union(nil, list), nil
		default: // remove: the values listed, or every member when none is
			if v == nil {
				return name, nil, nil
			}
			gone := set(list)
			return name, slices.DeleteFunc(members, func(m string) bool { return gone[m] }), nil
		}
	}
	return name, members, nil // externalId: not kept
}

// change brings the pool cur to the name and member set given — rename, then add, then remove —
// after checking the members it adds (those not in checked already), and returns the pool as it
// then is.
func (h *groups) change(r *http.Request, cur Group, name string, members []string, checked map[string]User) (elimity.Resource, error) {
	members = union(nil, members)
	target, had := set(members), set(cur.Members)
	var add, remove []string
	for _, m := range members {
		if !had[m] {
			add = append(add, m)
		}
	}
	for _, m := range cur.Members {
		if !target[m] {
			remove = append(remove, m)
		}
	}
	users, err := h.checkMembers(r, add, checked)
	if err != nil {
		return elimity.Resource{}, err
	}
	if name != cur.DisplayName {
		if _, err := h.b.RenameGroup(r, cur.ID, name); err != nil {
			return elimity.Resource{}, h.backendError(r, "Group", err)
		}
	}
	for _, m := range add {
		if err := h.b.AddMember(r, cur.ID, users[m]); err != nil {
			return elimity.Resource{}, h.backendError(r, "Group", err)
		}
	}
	for _, m := range remove {
		if err := h.b.RemoveMember(r, cur.ID, m); err != nil {
			return elimity.Resource{}, h.backendError(r, "Group", err)
		}
	}
	g, err := h.b.GetGroup(r, cur.ID)
	if err != nil {
		return elimity.Resource{}, h.backendError(r, "Group", err)
	}
	return groupResource(g), nil
}

// checkMembers reads the users members name into known (a new map when nil; those it holds
// already are not read again), refusing (400) a member who is not an existing active user: a
// pool's members work its threads, so only provisioned, active staff may be one.
func (h *groups) checkMembers(r *http.Request, members []string, known map[string]User) (map[string]User, error) {
	if known == nil {
		known = make(map[string]User, len(members))
	}
	for _, m := range members {
		if _, ok := known[m]; ok {
			continue
		}
		u, err := h.b.GetUser(r, m)
		switch {
		case code(err) == codes.NotFound || (err == nil && !u.Active):
			return nil, invalid(r, "members: each value must be the id of an existing active User.")
		case err != nil:
			return nil, h.backendError(r, "Group", err)
		}
		known[m] = u
	}
	return known, nil
}

// groupName is a validated displayName.
func groupName(r *http.Request, v any) (string, error) {
	s, _ := v.(string)
	if s = strings.TrimSpace(s); s == "" {
		return "", invalid(r, "displayName is required.")
	}
	return s, nil
}

// memberValues are the "value"s of a members attribute as the library hands it over.
func memberValues(r *http.Request, v any) ([]string, error) {
	out, ok := complexValues(v)
	if !ok || slices.Contains(out, "") {
		return nil, invalid(r, "members must be a list of {\"value\": user id}.")
	}
	return out, nil
}

// union is a followed by the elements of b it lacks, without duplicates.
func union(a, b []string) []string {
	out := make([]string, 0, len(a)+len(b))
	seen := make(map[string]bool, len(a)+len(b))
	for _, s := range slices.Concat(a, b) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func set(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, s := range list {
		m[s] = true
	}
	return m
}

// groupResource is the SCIM form of g.
func groupResource(g Group) elimity.Resource {
	members := make([]any, 0, len(g.Members))
	for _, m := range g.Members {
		members = append(members, map[string]any{"value": m})
	}
	return elimity.Resource{
		ID:         g.ID,
		Attributes: elimity.ResourceAttributes{"displayName": g.DisplayName, "members": members},
		Meta:       meta(g.Created, g.Modified, 0),
	}
}
