package scim

import (
	"net/http"
	"slices"
	"strings"

	elimity "github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/optional"
	"github.com/elimity-com/scim/schema"
	filter "github.com/scim2/filter-parser/v2"
	"google.golang.org/grpc/codes"
)

// users serves /Users.
type users struct {
	*handler
	b Backend
}

// Create provisions a person. Their id is their subject: the request's externalId, else its
// userName (the identity provider's user is the token's subject). An id or user name already
// taken is 409, even by a deactivated person: the identity provider then finds them by filter
// and reactivates them with PATCH.
func (h *users) Create(r *http.Request, attrs elimity.ResourceAttributes) (elimity.Resource, error) {
	u, err := h.fromAttributes(r, attrs)
	if err != nil {
		return elimity.Resource{}, err
	}
	u.ID = u.ExternalID
	if u.ID == "" {
		u.ID = u.UserName
	}
	if _, ok := attrs["active"]; !ok {
		u.Active = true
	}
	switch _, err := h.b.GetUser(r, u.ID); {
	case err == nil:
		return elimity.Resource{}, refuse(r, scimerrors.ScimErrorUniqueness)
	case code(err) != codes.NotFound:
		return elimity.Resource{}, h.backendError(r, "User", err)
	}
	return h.save(r, User{}, u)
}

// Get returns a person, active or not.
func (h *users) Get(r *http.Request, id string) (elimity.Resource, error) {
	u, err := h.b.GetUser(r, id)
	if err != nil {
		return elimity.Resource{}, h.backendError(r, "User", err)
	}
	return userResource(u), nil
}

// GetAll lists people, optionally filtered by `userName eq "…"` or `externalId eq "…"` (how
// identity providers look a person up before creating them); any other filter is 400.
func (h *users) GetAll(r *http.Request, params elimity.ListRequestParams) (elimity.Page, error) {
	var f UserFilter
	if params.FilterValidator != nil {
		attr, value, ok := equality(params.FilterValidator.GetFilter(), schema.UserSchema)
		switch {
		case ok && strings.EqualFold(attr, "userName"):
			f.UserName = value
		case ok && strings.EqualFold(attr, "externalId"):
			f.ExternalID = value
		default:
			return elimity.Page{}, refuse(r, scimerrors.ScimError{ScimType: scimerrors.ScimTypeInvalidFilter, Status: http.StatusBadRequest,
				Detail: `Only the filters userName eq "…" and externalId eq "…" are supported.`})
		}
	}
	offset, limit := page(params)
	list, total, err := h.b.ListUsers(r, f, offset, limit)
	if err != nil {
		return elimity.Page{}, h.backendError(r, "User", err)
	}
	p := elimity.Page{TotalResults: total, Resources: make([]elimity.Resource, 0, len(list))}
	for _, u := range list {
		p.Resources = append(p.Resources, userResource(u))
	}
	return p, nil
}

// Replace sets every attribute of an existing person (PUT never creates: 404). An absent
// "active" keeps the person's state rather than reactivating them: RFC 7643 gives it no default,
// and a deactivation is the change provisioning must never undo by accident.
func (h *users) Replace(r *http.Request, id string, attrs elimity.ResourceAttributes) (elimity.Resource, error) {
	cur, err := h.b.GetUser(r, id)
	if err != nil {
		return elimity.Resource{}, h.backendError(r, "User", err)
	}
	u, err := h.fromAttributes(r, attrs)
	if err != nil {
		return elimity.Resource{}, err
	}
	u.ID, u.Created, u.Version = cur.ID, cur.Created, cur.Version
	if _, ok := attrs["active"]; !ok {
		u.Active = cur.Active
	}
	return h.save(r, cur, u)
}

// Delete deactivates: people are never erased by provisioning, because audit records name them.
// The person stays readable (GET shows active false) and can be reactivated.
func (h *users) Delete(r *http.Request, id string) error {
	cur, err := h.b.GetUser(r, id)
	if err != nil {
		return h.backendError(r, "User", err)
	}
	if !cur.Active {
		return nil
	}
	cur.Active = false
	if _, err := h.b.PutUser(r, cur); err != nil {
		return h.backendError(r, "User", err)
	}
	return nil
}

// Patch applies add, replace and remove operations to the attributes messaging keeps — active,
// displayName (name.formatted when displayName is not given), userName, externalId, roles — and
// ignores the others (emails, titles, the enterprise extension…), as Create does. The operations
// are applied to a copy first, so a refused one changes nothing.
func (h *users) Patch(r *http.Request, id string, ops []elimity.PatchOperation) (elimity.Resource, error) {
	cur, err := h.b.GetUser(r, id)
	if err != nil {
		return elimity.Resource{}, h.backendError(r, "User", err)
	}
	next, err := patchUser(r, cur, ops)
	if err != nil {
		return elimity.Resource{}, err
	}
	if userEqual(cur, next) {
		return userResource(cur), nil
	}
	return h.save(r, cur, next)
}

// save stores next in place of cur (the zero User when creating), refusing with 409 a user name
// another person holds, and returns the user as stored.
func (h *users) save(r *http.Request, cur, next User) (elimity.Resource, error) {
	if !strings.EqualFold(next.UserName, cur.UserName) {
		if err := h.userNameFree(r, next.UserName, next.ID); err != nil {
			return elimity.Resource{}, err
		}
	}
	out, err := h.b.PutUser(r, next)
	if err != nil {
		return elimity.Resource{}, h.backendError(r, "User", err)
	}
	return userResource(out), nil
}

// userNameFree refuses with 409 a user name another person (id other than id) already has.
func (h *users) userNameFree(r *http.Request, userName, id string) error {
	list, _, err := h.b.ListUsers(r, UserFilter{UserName: userName}, 0, 2)
	if err != nil {
		return h.backendError(r, "User", err)
	}
	for _, u := range list {
		if u.ID != id {
			return refuse(r, scimerrors.ScimErrorUniqueness)
		}
	}
	return nil
}

// fromAttributes reads a User from a validated POST or PUT body (the library has checked the
// types against the core User schema and names attributes as the schema spells them). Active
// is false when absent; the caller decides its default.
func (h *users) fromAttributes(r *http.Request, attrs elimity.ResourceAttributes) (User, error) {
	var u User
	u.UserName, _ = attrs["userName"].(string)
	u.UserName = strings.TrimSpace(u.UserName)
	if u.UserName == "" {
		return User{}, invalid(r, "userName is required.")
	}
	u.ExternalID, _ = attrs[schema.CommonAttributeExternalID].(string)
	u.ExternalID = strings.TrimSpace(u.ExternalID)
	u.DisplayName, _ = attrs["displayName"].(string)
	if u.DisplayName = strings.TrimSpace(u.DisplayName); u.DisplayName == "" {
		if name, ok := attrs["name"].(map[string]any); ok {
			formatted, _ := name["formatted"].(string)
			u.DisplayName = strings.TrimSpace(formatted)
		}
	}
	u.Active, _ = attrs["active"].(bool)
	list, err := roleValues(r, attrs["roles"])
	if err != nil {
		return User{}, err
	}
	if u.Roles, err = checkRoles(r, list); err != nil {
		return User{}, err
	}
	return u, nil
}

// roleValues are the "value"s of a roles attribute as the library hands it over, lower-cased.
func roleValues(r *http.Request, v any) ([]string, error) {
	out, ok := complexValues(v)
	if !ok {
		return nil, invalid(r, "roles must be a list of {\"value\": role}.")
	}
	for i, s := range out {
		out[i] = strings.ToLower(strings.TrimSpace(s))
	}
	return out, nil
}

// complexValues are the "value"s of a multi-valued complex attribute as the library hands it
// over: a list of objects, or one object (a PATCH of one value); a value that is not a string is
// "". ok is false for any other shape; nil gives no values.
func complexValues(v any) (values []string, ok bool) {
	var items []any
	switch v := v.(type) {
	case nil:
		return nil, true
	case []any:
		items = v
	case map[string]any:
		items = []any{v}
	default:
		return nil, false
	}
	values = make([]string, 0, len(items))
	for _, item := range items {
		m, isObject := item.(map[string]any)
		if !isObject {
			return nil, false
		}
		s, _ := m["value"].(string)
		values = append(values, s)
	}
	return values, true
}

// checkRoles returns list without duplicates, refusing an empty list or a role provisioning does
// not grant (patient, proxy, anything unknown).
func checkRoles(r *http.Request, list []string) ([]string, error) {
	var out []string
	for _, role := range list {
		if !slices.Contains(roles, role) {
			return nil, invalid(r, "roles: each value must be one of clinician, staff, admin, auditor.")
		}
		if !slices.Contains(out, role) {
			out = append(out, role)
		}
	}
	if len(out) == 0 {
		return nil, invalid(r, "roles: at least one of clinician, staff, admin, auditor is required.")
	}
	return out, nil
}

// userPatch is a person's attributes while PATCH operations are applied to them.
type userPatch struct {
	u User
	// displayName and formatted are the last values the operations gave displayName and
	// name.formatted, set when they gave one: name.formatted names the person only when
	// displayName is not given, as on creation.
	displayName, formatted       string
	displayNameSet, formattedSet bool
}

// patchUser applies ops to a copy of cur.
func patchUser(r *http.Request, cur User, ops []elimity.PatchOperation) (User, error) {
	p := &userPatch{u: cur}
	p.u.Roles = slices.Clone(cur.Roles)
	for _, op := range ops {
		if op.Path != nil {
			if err := p.apply(r, op.Op, *op.Path, op.Value); err != nil {
				return User{}, err
			}
			continue
		}
		// No path: the value is a set of attributes, keyed as the client spelled them (the
		// library has validated each against the schema).
		values, ok := op.Value.(map[string]any)
		if !ok {
			return User{}, invalid(r, "An operation without a path needs an object value.")
		}
		for key, v := range values {
			if strings.EqualFold(key, schema.ExtensionEnterpriseUser().ID) {
				continue // kept by no one
			}
			path, err := filter.ParsePath([]byte(key))
			if err != nil {
				return User{}, refuse(r, scimerrors.ScimErrorInvalidPath)
			}
			if err := p.apply(r, op.Op, path, v); err != nil {
				return User{}, err
			}
		}
	}
	switch {
	case p.displayNameSet && p.displayName != "":
		p.u.DisplayName = p.displayName
	case p.formattedSet && p.formatted != "":
		p.u.DisplayName = p.formatted
	case p.displayNameSet: // removed or emptied, and no formatted name to fall back on
		p.u.DisplayName = ""
	}
	if len(p.u.Roles) == 0 {
		return User{}, invalid(r, "roles: at least one of clinician, staff, admin, auditor is required.")
	}
	return p.u, nil
}

// apply applies one operation on one attribute path.
func (p *userPatch) apply(r *http.Request, op string, path filter.Path, v any) error {
	if uri := path.AttributePath.URI(); uri != "" && !strings.EqualFold(uri, schema.UserSchema) {
		return nil // the enterprise extension: not kept
	}
	remove := op == elimity.PatchOperationRemove
	sub := path.AttributePath.SubAttributeName()
	switch attr := path.AttributePath.AttributeName; {
	case strings.EqualFold(attr, "active"):
		if remove {
			return invalid(r, "active cannot be removed; replace it with false to deactivate.")
		}
		b, ok := v.(bool)
		if !ok {
			return invalid(r, "active must be a boolean.")
		}
		p.u.Active = b
	case strings.EqualFold(attr, "displayName"):
		s, _ := v.(string)
		p.displayName, p.displayNameSet = strings.TrimSpace(s), true
	case strings.EqualFold(attr, "name"):
		switch {
		case strings.EqualFold(sub, "formatted"):
			s, _ := v.(string)
			p.formatted, p.formattedSet = strings.TrimSpace(s), true
		case sub == "" && remove:
			p.formatted, p.formattedSet = "", true
		case sub == "":
			if m, ok := v.(map[string]any); ok {
				if s, ok := m["formatted"].(string); ok {
					p.formatted, p.formattedSet = strings.TrimSpace(s), true
				}
			}
		}
	case strings.EqualFold(attr, "userName"):
		s, _ := v.(string)
		if remove || strings.TrimSpace(s) == "" {
			return invalid(r, "userName is required.")
		}
		p.u.UserName = strings.TrimSpace(s)
	case strings.EqualFold(attr, schema.CommonAttributeExternalID):
		s, _ := v.(string)
		if remove {
			s = ""
		}
		p.u.ExternalID = strings.TrimSpace(s)
	case strings.EqualFold(attr, "roles"):
		return p.applyRoles(r, op, path, v)
	}
	return nil // an attribute messaging does not keep
}

// applyRoles applies an operation on roles: add, replace or remove of whole values, remove of
// roles[value eq "…"], and Entra ID's single-role mapping roles[primary eq "True"].value.
func (p *userPatch) applyRoles(r *http.Request, op string, path filter.Path, v any) error {
	if path.ValueExpression != nil {
		attr, value, ok := equality(path.ValueExpression, "")
		switch {
		case ok && op == elimity.PatchOperationRemove && strings.EqualFold(attr, "value"):
			p.u.Roles = slices.DeleteFunc(p.u.Roles, func(role string) bool { return strings.EqualFold(role, value) })
			return nil
		case ok && op != elimity.PatchOperationRemove && strings.EqualFold(attr, "primary") &&
			strings.EqualFold(value, "true") && strings.EqualFold(path.SubAttributeName(), "value"):
			s, _ := v.(string)
			list, err := checkRoles(r, []string{strings.ToLower(strings.TrimSpace(s))})
			if err != nil {
				return err
			}
			p.u.Roles = list
			return nil
		}
		return refuse(r, scimerrors.ScimError{ScimType: scimerrors.ScimTypeInvalidPath, Status: http.StatusBadRequest,
			Detail: `Supported role paths are roles, roles[value eq "…"] (remove) and roles[primary eq "True"].value.`})
	}
	if path.AttributePath.SubAttributeName() != "" || path.SubAttributeName() != "" {
		return refuse(r, scimerrors.ScimErrorInvalidPath)
	}
	list, err := roleValues(r, v)
	if err != nil {
		return err
	}
	switch op {
	case elimity.PatchOperationRemove:
		if v == nil {
			p.u.Roles = nil
			return nil
		}
		p.u.Roles = slices.DeleteFunc(p.u.Roles, func(role string) bool { return slices.Contains(list, role) })
		return nil
	case elimity.PatchOperationAdd:
		list = append(slices.Clone(p.u.Roles), list...)
	}
	p.u.Roles, err = checkRoles(r, list)
	return err
}

// equality reports the attribute and string value of a filter `attr eq "value"` (a boolean or
// number compared is given as its text), with no sub-attribute and no URI prefix other than
// schemaID; ok is false for any other expression.
func equality(e filter.Expression, schemaID string) (attr, value string, ok bool) {
	x, isAttr := e.(*filter.AttributeExpression)
	if !isAttr || x.Operator != filter.EQ || x.AttributePath.SubAttributeName() != "" {
		return "", "", false
	}
	if uri := x.AttributePath.URI(); uri != "" && !strings.EqualFold(uri, schemaID) {
		return "", "", false
	}
	switch v := x.CompareValue.(type) {
	case string:
		return x.AttributePath.AttributeName, v, true
	case bool:
		if v {
			return x.AttributePath.AttributeName, "true", true
		}
		return x.AttributePath.AttributeName, "false", true
	}
	return "", "", false
}

// userResource is the SCIM form of u.
func userResource(u User) elimity.Resource {
	attrs := elimity.ResourceAttributes{"userName": u.UserName, "active": u.Active}
	if u.DisplayName != "" {
		attrs["displayName"] = u.DisplayName
	}
	list := make([]any, 0, len(u.Roles))
	for _, role := range u.Roles {
		list = append(list, map[string]any{"value": role})
	}
	attrs["roles"] = list
	res := elimity.Resource{ID: u.ID, Attributes: attrs, Meta: meta(u.Created, u.Modified, u.Version)}
	if u.ExternalID != "" {
		res.ExternalID = optional.NewString(u.ExternalID)
	}
	return res
}

// userEqual reports whether a and b have the same provisioned attributes.
func userEqual(a, b User) bool {
	return a.ExternalID == b.ExternalID && a.UserName == b.UserName && a.DisplayName == b.DisplayName &&
		a.Active == b.Active && slices.Equal(a.Roles, b.Roles)
}

// code is err's gRPC code (see codeAndReason).
func code(err error) codes.Code {
	c, _ := codeAndReason(err)
	return c
}
