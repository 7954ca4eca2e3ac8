package scim_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/securemsg/securemsg/services/internal/platform/grpcserver/grpctest"
	"github.com/securemsg/securemsg/services/messaging/internal/ports/scim"
)

// fake is an in-memory Backend. fail makes a method (by name) return an error instead.
type fake struct {
	mu     sync.Mutex
	users  map[string]scim.User
	groups map[string]*pool
	fail   map[string]error
	// auth is the Authorization header of every call, as an implementation would check it.
	auth []string
	now  time.Time
}

type pool struct {
	g      scim.Group
	active bool
	// roles are the members' pool roles, as the real backend derives them.
	roles map[string]string
}

func newFake() *fake {
	return &fake{users: map[string]scim.User{}, groups: map[string]*pool{}, fail: map[string]error{},
		now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
}

func (f *fake) enter(r *http.Request, method string) error {
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	return f.fail[method]
}

func (f *fake) tick() time.Time { f.now = f.now.Add(time.Minute); return f.now }

func (f *fake) ListUsers(r *http.Request, flt scim.UserFilter, offset, limit int) ([]scim.User, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(r, "ListUsers"); err != nil {
		return nil, 0, err
	}
	var all []scim.User
	for _, u := range f.users {
		if (flt.UserName == "" || strings.EqualFold(u.UserName, flt.UserName)) && (flt.ExternalID == "" || u.ExternalID == flt.ExternalID) {
			all = append(all, u)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	return all[min(offset, len(all)):min(offset+limit, len(all))], len(all), nil
}

func (f *fake) GetUser(r *http.Request, id string) (scim.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(r, "GetUser"); err != nil {
		return scim.User{}, err
	}
	u, ok := f.users[id]
	if !ok {
		return scim.User{}, status.Error(codes.NotFound, "no such person")
	}
	return u, nil
}

func (f *fake) PutUser(r *http.Request, u scim.User) (scim.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(r, "PutUser"); err != nil {
		return scim.User{}, err
	}
	old, ok := f.users[u.ID]
	u.Modified = f.tick()
	if ok {
		u.Created, u.Version = old.Created, old.Version+1
	} else {
		u.Created, u.Version = u.Modified, 1
	}
	f.users[u.ID] = u
	return u, nil
}

func (f *fake) ListGroups(r *http.Request, offset, limit int) ([]scim.Group, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(r, "ListGroups"); err != nil {
		return nil, 0, err
	}
	var all []scim.Group
	for _, id := range slices.Sorted(maps.Keys(f.groups)) {
		if p := f.groups[id]; p.active {
			all = append(all, p.g)
		}
	}
	return all[min(offset, len(all)):min(offset+limit, len(all))], len(all), nil
}

func (f *fake) GetGroup(r *http.Request, id string) (scim.Group, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(r, "GetGroup"); err != nil {
		return scim.Group{}, err
	}
	p, ok := f.groups[id]
	if !ok || !p.active {
		return scim.Group{}, status.Error(codes.NotFound, "no such pool")
	}
	g := p.g
	g.Members = slices.Clone(p.g.Members)
	return g, nil
}

func (f *fake) CreateGroup(r *http.Request, id, displayName string) (scim.Group, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(r, "CreateGroup"); err != nil {
		return scim.Group{}, err
	}
	if _, ok := f.groups[id]; ok {
		return scim.Group{}, status.Error(codes.AlreadyExists, "pool exists")
	}
	now := f.tick()
	f.groups[id] = &pool{g: scim.Group{ID: id, DisplayName: displayName, Created: now, Modified: now}, active: true, roles: map[string]string{}}
	return f.groups[id].g, nil
}

func (f *fake) RenameGroup(r *http.Request, id, displayName string) (scim.Group, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(r, "RenameGroup"); err != nil {
		return scim.Group{}, err
	}
	p, ok := f.groups[id]
	if !ok {
		return scim.Group{}, status.Error(codes.NotFound, "no such pool")
	}
	p.g.DisplayName, p.g.Modified = displayName, f.tick()
	return p.g, nil
}

func (f *fake) DeactivateGroup(r *http.Request, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(r, "DeactivateGroup"); err != nil {
		return err
	}
	p, ok := f.groups[id]
	if !ok {
		return status.Error(codes.NotFound, "no such pool")
	}
	p.active = false
	return nil
}

func (f *fake) AddMember(r *http.Request, groupID string, member scim.User) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(r, "AddMember"); err != nil {
		return err
	}
	userID := member.ID
	p, ok := f.groups[groupID]
	u, known := f.users[userID]
	if !ok || !known {
		return status.Error(codes.NotFound, "no such pool or person")
	}
	if !slices.Contains(p.g.Members, userID) {
		p.g.Members = append(p.g.Members, userID)
	}
	p.roles[userID] = scim.PoolRole(u.Roles)
	return nil
}

func (f *fake) RemoveMember(r *http.Request, groupID, userID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(r, "RemoveMember"); err != nil {
		return err
	}
	p, ok := f.groups[groupID]
	if !ok || !slices.Contains(p.g.Members, userID) {
		return status.Error(codes.NotFound, "not a member")
	}
	p.g.Members = slices.DeleteFunc(p.g.Members, func(m string) bool { return m == userID })
	delete(p.roles, userID)
	return nil
}

func (f *fake) user(id string) (scim.User, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.users[id]
	return u, ok
}

func (f *fake) pool(id string) (pool, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.groups[id]
	if !ok {
		return pool{}, false
	}
	c := *p
	c.g.Members, c.roles = slices.Clone(p.g.Members), maps.Clone(p.roles)
	return c, true
}

func (f *fake) failing(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[method] = err
}

// env is the SCIM handler mounted as the service mounts it, over a fake, as an identity provider
// reaches it.
type env struct {
	t    *testing.T
	srv  *httptest.Server
	fake *fake
	logs *grpctest.LogBuffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	f := newFake()
	logs := &grpctest.LogBuffer{}
	h, err := scim.NewHandler(f, scim.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatalf("NewHandler() = %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/scim/v2/", h)
	mux.Handle("/scim/v2", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, fake: f, logs: logs}
}

// response is an answer: its status, headers, raw body and the body decoded (nil if empty).
type response struct {
	status int
	header http.Header
	raw    string
	body   map[string]any
}

// do sends an application/scim+json request with the identity provider's bearer token.
func (e *env) do(method, path, body string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer idp-token")
	req.Header.Set("Accept", "application/scim+json")
	if body != "" {
		req.Header.Set("Content-Type", "application/scim+json; charset=utf-8")
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer func() { _ = res.Body.Close() }()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	out := response{status: res.StatusCode, header: res.Header, raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out.body); err != nil {
			e.t.Fatalf("%s %s: body %q is not JSON: %v", method, path, raw, err)
		}
	}
	return out
}

// must is do, failing the test unless the status is want.
func (e *env) must(want int, method, path, body string) response {
	e.t.Helper()
	res := e.do(method, path, body)
	if res.status != want {
		e.t.Fatalf("%s %s = %d %s, want %d", method, path, res.status, res.raw, want)
	}
	return res
}

// entraUser is a user as Entra ID's default attribute mappings send it.
func entraUser(externalID, userName, role string) string {
	roles := `[]`
	if role != "" {
		roles = `[{"primary": "True", "type": "WindowsAzureActiveDirectoryRole", "value": "` + role + `"}]`
	}
	return `{
	  "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
	  "externalId": "` + externalID + `",
	  "userName": "` + userName + `",
	  "active": true,
	  "displayName": "Alex Example",
	  "emails": [{"primary": true, "type": "work", "value": "` + userName + `"}],
	  "name": {"formatted": "Alex Example", "familyName": "Example", "givenName": "Alex"},
	  "title": "Nurse",
	  "roles": ` + roles + `,
	  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Cardiology"}
	}`
}

// oktaUser is a user as Okta sends it: no externalId, no displayName, the name's parts.
func oktaUser(userName, role string) string {
	return `{
	  "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
	  "userName": "` + userName + `",
	  "name": {"givenName": "Sam", "familyName": "Sample", "formatted": "Sam Sample"},
	  "emails": [{"primary": true, "value": "` + userName + `", "type": "work"}],
	  "roles": [{"value": "` + role + `"}],
	  "active": true
	}`
}

func patch(ops string) string {
	return `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ` + ops + `}`
}

func TestCreateUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	res := e.must(http.StatusCreated, http.MethodPost, "/scim/v2/Users", entraUser("ext-7", "alex@example.org", "clinician"))
	if got, want := res.body["id"], "ext-7"; got != want {
		t.Errorf("created id = %v, want the externalId %q", got, want)
	}
	if got, want := res.header.Get("Location"), "/scim/v2/Users/ext-7"; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
	if got, want := res.header.Get("ETag"), `W/"1"`; got != want {
		t.Errorf("ETag = %q, want %q", got, want)
	}
	if got := res.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	if got := res.header.Get("Content-Type"); got != "application/scim+json" {
		t.Errorf("Content-Type = %q, want application/scim+json", got)
	}
	m, _ := res.body["meta"].(map[string]any)
	if m["version"] != `W/"1"` || m["resourceType"] != "User" || m["created"] == nil || m["lastModified"] == nil {
		t.Errorf("meta = %v, want version W/\"1\", resourceType User, created, lastModified", m)
	}
	u, ok := e.fake.user("ext-7")
	want := scim.User{ID: "ext-7", ExternalID: "ext-7", UserName: "alex@example.org", DisplayName: "Alex Example",
		Roles: []string{"clinician"}, Active: true}
	if !ok || u.ID != want.ID || u.ExternalID != want.ExternalID || u.UserName != want.UserName ||
		u.DisplayName != want.DisplayName || !slices.Equal(u.Roles, want.Roles) || !u.Active {
		t.Errorf("stored user = %+v, want %+v", u, want)
	}

	// Without externalId the subject is the userName, and name.formatted names the person.
	res = e.must(http.StatusCreated, http.MethodPost, "/scim/v2/Users", oktaUser("sam@example.org", "Staff"))
	if got, want := res.body["id"], "sam@example.org"; got != want {
		t.Errorf("created id = %v, want the userName %q", got, want)
	}
	if u, _ := e.fake.user("sam@example.org"); u.DisplayName != "Sam Sample" || !slices.Equal(u.Roles, []string{"staff"}) || !u.Active {
		t.Errorf("stored user = %+v, want display name from name.formatted, role staff, active by default", u)
	}

	// The same subject, or the same userName under another subject, is taken.
	for _, body := range []string{entraUser("ext-7", "other@example.org", "staff"), entraUser("ext-8", "ALEX@example.org", "staff")} {
		res = e.must(http.StatusConflict, http.MethodPost, "/scim/v2/Users", body)
		if res.body["scimType"] != "uniqueness" {
			t.Errorf("duplicate create scimType = %v, want uniqueness", res.body["scimType"])
		}
	}
	if got := slices.Compact(e.fake.auth); len(got) != 1 || got[0] != "Bearer idp-token" {
		t.Errorf("Authorization the backend saw = %q, want the identity provider's only", got)
	}
}

func TestCreateUserRoles(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tt := range []struct {
		name, role string
	}{
		{name: "no roles", role: ""},
		{name: "patient", role: "patient"},
		{name: "proxy", role: "proxy"},
		{name: "unknown", role: "superuser"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := e.must(http.StatusBadRequest, http.MethodPost, "/scim/v2/Users", entraUser("ext-"+tt.name, "x@example.org", tt.role))
			if res.body["scimType"] != "invalidValue" {
				t.Errorf("scimType = %v, want invalidValue", res.body["scimType"])
			}
			if tt.role != "" && strings.Contains(res.raw, tt.role) {
				t.Errorf("error %s repeats the submitted value", res.raw)
			}
			if _, ok := e.fake.user("ext-" + tt.name); ok {
				t.Error("a refused user was stored")
			}
		})
	}
}

func TestGetAndFilterUsers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must(http.StatusCreated, http.MethodPost, "/scim/v2/Users", entraUser("ext-1", "a@example.org", "clinician"))
	e.must(http.StatusCreated, http.MethodPost, "/scim/v2/Users", entraUser("ext-2", "b@example.org", "admin"))

	res := e.must(http.StatusOK, http.MethodGet, "/scim/v2/Users/ext-1", "")
	if res.body["userName"] != "a@example.org" || res.body["externalId"] != "ext-1" || res.body["active"] != true {
		t.Errorf("GET user = %s", res.raw)
	}
	if roles, _ := res.body["roles"].([]any); len(roles) != 1 || roles[0].(map[string]any)["value"] != "clinician" {
		t.Errorf("GET user roles = %v, want [{value: clinician}]", res.body["roles"])
	}
	if got := res.header.Get("ETag"); got != `W/"1"` {
		t.Errorf("GET ETag = %q, want W/\"1\"", got)
	}
	e.must(http.StatusNotFound, http.MethodGet, "/scim/v2/Users/nobody", "")

	for _, tt := range []struct {
		query     string
		wantTotal float64
		wantIDs   []string
	}{
		{query: `filter=userName eq "a@example.org"`, wantTotal: 1, wantIDs: []string{"ext-1"}},
		{query: `filter=userName eq "A@EXAMPLE.ORG"`, wantTotal: 1, wantIDs: []string{"ext-1"}},
		{query: `filter=externalId eq "ext-2"`, wantTotal: 1, wantIDs: []string{"ext-2"}},
		{query: `filter=userName eq "nobody@example.org"`, wantTotal: 0, wantIDs: []string{}},
		{query: ``, wantTotal: 2, wantIDs: []string{"ext-1", "ext-2"}},
		{query: `startIndex=2&count=1`, wantTotal: 2, wantIDs: []string{"ext-2"}},
		{query: `count=0`, wantTotal: 2, wantIDs: []string{}},
	} {
		res := e.must(http.StatusOK, http.MethodGet, "/scim/v2/Users?"+encode(tt.query), "")
		var ids []string
		list, ok := res.body["Resources"].([]any)
		if !ok {
			t.Errorf("GET /Users?%s Resources = %v, want a list", tt.query, res.body["Resources"])
		}
		for _, r := range list {
			ids = append(ids, r.(map[string]any)["id"].(string))
		}
		if res.body["totalResults"] != tt.wantTotal || !slices.Equal(ids, tt.wantIDs) && len(ids)+len(tt.wantIDs) > 0 {
			t.Errorf("GET /Users?%s = total %v, ids %v; want %v, %v", tt.query, res.body["totalResults"], ids, tt.wantTotal, tt.wantIDs)
		}
	}
	res = e.must(http.StatusOK, http.MethodGet, "/scim/v2/Users?count=1000", "")
	if res.body["itemsPerPage"] != float64(100) {
		t.Errorf("count=1000: itemsPerPage = %v, want the maximum 100", res.body["itemsPerPage"])
	}
	for _, q := range []string{`filter=displayName eq "Alex Example"`, `filter=userName co "a"`,
		`filter=userName eq "a@example.org" and active eq true`, `filter=name.formatted eq "x"`, `filter=nosuch eq "x"`} {
		res := e.must(http.StatusBadRequest, http.MethodGet, "/scim/v2/Users?"+encode(q), "")
		if res.body["scimType"] != "invalidFilter" {
			t.Errorf("GET /Users?%s scimType = %v, want invalidFilter", q, res.body["scimType"])
		}
	}
}

// encode escapes a query of key=value pairs joined by "&".
func encode(q string) string {
	if q == "" {
		return ""
	}
	v := url.Values{}
	for _, kv := range strings.Split(q, "&") {
		k, val, _ := strings.Cut(kv, "=")
		v.Set(k, val)
	}
	return v.Encode()
}

func TestReplaceUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must(http.StatusCreated, http.MethodPost, "/scim/v2/Users", entraUser("ext-1", "a@example.org", "clinician"))
	e.must(http.StatusOK, http.MethodPatch, "/scim/v2/Users/ext-1", patch(`[{"op": "replace", "path": "active", "value": false}]`))

	res := e.must(http.StatusOK, http.MethodPut, "/scim/v2/Users/ext-1", `{
	  "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
	  "externalId": "ext-1", "userName": "a.new@example.org", "displayName": "Alex Renamed",
	  "roles": [{"value": "staff"}, {"value": "admin"}, {"value": "staff"}]
	}`)
	if got, want := res.header.Get("ETag"), `W/"3"`; got != want {
		t.Errorf("PUT ETag = %q, want %q", got, want)
	}
	u, _ := e.fake.user("ext-1")
	if u.UserName != "a.new@example.org" || u.DisplayName != "Alex Renamed" || !slices.Equal(u.Roles, []string{"staff", "admin"}) {
		t.Errorf("after PUT user = %+v, want new userName, displayName and roles [staff admin]", u)
	}
	if u.Active {
		t.Error("PUT without active reactivated a deactivated user")
	}
	e.must(http.StatusNotFound, http.MethodPut, "/scim/v2/Users/nobody", entraUser("nobody", "n@example.org", "staff"))
	e.must(http.StatusBadRequest, http.MethodPut, "/scim/v2/Users/ext-1", entraUser("ext-1", "a@example.org", "patient"))
}

func TestPatchUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must(http.StatusCreated, http.MethodPost, "/scim/v2/Users", entraUser("ext-1", "a@example.org", "clinician"))

	// Entra ID deactivates with a string boolean and a capitalised op.
	e.must(http.StatusOK, http.MethodPatch, "/scim/v2/Users/ext-1", patch(`[{"op": "Replace", "path": "active", "value": "False"}]`))
	res := e.must(http.StatusOK, http.MethodGet, "/scim/v2/Users/ext-1", "")
	if res.body["active"] != false {
		t.Fatalf("after PATCH active False, GET active = %v, want false", res.body["active"])
	}
	// Okta reactivates with a pathless replace.
	e.must(http.StatusOK, http.MethodPatch, "/scim/v2/Users/ext-1", patch(`[{"op": "replace", "value": {"id": "ext-1", "active": true}}]`))
	if u, _ := e.fake.user("ext-1"); !u.Active {
		t.Error("after pathless PATCH active true, user is inactive")
	}

	for _, tt := range []struct {
		name, ops string
		want      scim.User
	}{
		{name: "displayName", ops: `[{"op": "replace", "path": "displayName", "value": "Alex Two"}]`,
			want: scim.User{DisplayName: "Alex Two", Roles: []string{"clinician"}}},
		{name: "name.formatted without displayName", ops: `[{"op": "replace", "path": "name.formatted", "value": "Alex Three"}, {"op": "replace", "path": "title", "value": "Lead"}]`,
			want: scim.User{DisplayName: "Alex Three", Roles: []string{"clinician"}}},
		{name: "replace roles", ops: `[{"op": "replace", "path": "roles", "value": [{"value": "staff"}, {"value": "auditor"}]}]`,
			want: scim.User{DisplayName: "Alex Three", Roles: []string{"staff", "auditor"}}},
		{name: "add role", ops: `[{"op": "add", "path": "roles", "value": [{"value": "admin"}]}]`,
			want: scim.User{DisplayName: "Alex Three", Roles: []string{"staff", "auditor", "admin"}}},
		{name: "remove role by filter", ops: `[{"op": "remove", "path": "roles[value eq \"auditor\"]"}]`,
			want: scim.User{DisplayName: "Alex Three", Roles: []string{"staff", "admin"}}},
		{name: "Entra single role", ops: `[{"op": "Replace", "path": "roles[primary eq \"True\"].value", "value": "clinician"}]`,
			want: scim.User{DisplayName: "Alex Three", Roles: []string{"clinician"}}},
	} {
		e.must(http.StatusOK, http.MethodPatch, "/scim/v2/Users/ext-1", patch(tt.ops))
		u, _ := e.fake.user("ext-1")
		if u.DisplayName != tt.want.DisplayName || !slices.Equal(u.Roles, tt.want.Roles) {
			t.Errorf("%s: user = %q %q, want %q %q", tt.name, u.DisplayName, u.Roles, tt.want.DisplayName, tt.want.Roles)
		}
	}

	before, _ := e.fake.user("ext-1")
	for _, ops := range []string{
		`[{"op": "replace", "path": "roles", "value": [{"value": "patient"}]}]`,
		`[{"op": "remove", "path": "roles"}]`,
		`[{"op": "replace", "path": "displayName", "value": "Changed"}, {"op": "remove", "path": "active"}]`,
	} {
		e.must(http.StatusBadRequest, http.MethodPatch, "/scim/v2/Users/ext-1", patch(ops))
	}
	if after, _ := e.fake.user("ext-1"); after.Version != before.Version {
		t.Errorf("refused PATCHes changed the user: version %d, want %d", after.Version, before.Version)
	}
	e.must(http.StatusNotFound, http.MethodPatch, "/scim/v2/Users/nobody", patch(`[{"op": "replace", "path": "active", "value": false}]`))
}

func TestDeleteUserDeactivates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must(http.StatusCreated, http.MethodPost, "/scim/v2/Users", entraUser("ext-1", "a@example.org", "clinician"))
	e.must(http.StatusNoContent, http.MethodDelete, "/scim/v2/Users/ext-1", "")
	res := e.must(http.StatusOK, http.MethodGet, "/scim/v2/Users/ext-1", "")
	if res.body["active"] != false || res.body["userName"] != "a@example.org" {
		t.Errorf("after DELETE, GET = %s, want the user, inactive", res.raw)
	}
	e.must(http.StatusNoContent, http.MethodDelete, "/scim/v2/Users/ext-1", "")
	e.must(http.StatusNotFound, http.MethodDelete, "/scim/v2/Users/nobody", "")
}

func TestPoolID(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, want string
		ok         bool
	}{
		{name: "Cardiology", want: "pool-cardiology", ok: true},
		{name: "Ward 3 / Night Nurses", want: "pool-ward-3-night-nurses", ok: true},
		{name: "  Émergency--Dept. ", want: "pool-mergency-dept", ok: true},
		{name: "pool-x", want: "pool-pool-x", ok: true},
		{name: "!!!", want: "pool", ok: false},
		{name: strings.Repeat("a", 200), want: "pool-" + strings.Repeat("a", 95), ok: true},
	} {
		got, ok := scim.PoolID(tt.name)
		if got != tt.want || ok != tt.ok {
			t.Errorf("PoolID(%q) = %q, %v, want %q, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestGroups(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must(http.StatusCreated, http.MethodPost, "/scim/v2/Users", entraUser("alice", "alice@example.org", "clinician"))
	e.must(http.StatusCreated, http.MethodPost, "/scim/v2/Users", entraUser("bob", "bob@example.org", "staff"))
	e.must(http.StatusCreated, http.MethodPost, "/scim/v2/Users", entraUser("carol", "carol@example.org", "admin"))
	e.must(http.StatusNoContent, http.MethodDelete, "/scim/v2/Users/carol", "")

	res := e.must(http.StatusCreated, http.MethodPost, "/scim/v2/Groups", `{
	  "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
	  "displayName": "Cardiology Nurses",
	  "members": [{"value": "alice", "display": "Alice"}]
	}`)
	if got, want := res.body["id"], "pool-cardiology-nurses"; got != want {
		t.Fatalf("created group id = %v, want %q", got, want)
	}
	if got, want := res.header.Get("Location"), "/scim/v2/Groups/pool-cardiology-nurses"; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
	members := func() []string {
		p, _ := e.fake.pool("pool-cardiology-nurses")
		return p.g.Members
	}
	if got := members(); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("members after create = %v, want [alice]", got)
	}
	res = e.must(http.StatusConflict, http.MethodPost, "/scim/v2/Groups",
		`{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "cardiology  nurses"}`)
	if res.body["scimType"] != "uniqueness" {
		t.Errorf("colliding create scimType = %v, want uniqueness", res.body["scimType"])
	}

	// Entra ID adds and removes with a list; Okta removes with a value filter.
	e.must(http.StatusOK, http.MethodPatch, "/scim/v2/Groups/pool-cardiology-nurses",
		patch(`[{"op": "Add", "path": "members", "value": [{"value": "bob"}]}]`))
	if got := members(); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Errorf("members after add = %v, want [alice bob]", got)
	}
	p, _ := e.fake.pool("pool-cardiology-nurses")
	if p.roles["alice"] != "clinician" || p.roles["bob"] != "staff" {
		t.Errorf("pool roles = %v, want alice clinician, bob staff", p.roles)
	}
	e.must(http.StatusOK, http.MethodPatch, "/scim/v2/Groups/pool-cardiology-nurses",
		patch(`[{"op": "remove", "path": "members[value eq \"alice\"]"}]`))
	if got := members(); !slices.Equal(got, []string{"bob"}) {
		t.Errorf("members after filtered remove = %v, want [bob]", got)
	}
	e.must(http.StatusOK, http.MethodPatch, "/scim/v2/Groups/pool-cardiology-nurses",
		patch(`[{"op": "Remove", "path": "members", "value": [{"value": "bob"}]}, {"op": "add", "path": "members", "value": [{"value": "alice"}]}]`))
	if got := members(); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("members after list remove and add = %v, want [alice]", got)
	}

	// A member must be an existing, active user; a refusal changes nothing.
	for _, member := range []string{"nobody", "carol"} {
		res := e.must(http.StatusBadRequest, http.MethodPatch, "/scim/v2/Groups/pool-cardiology-nurses",
			patch(`[{"op": "replace", "path": "displayName", "value": "Renamed"}, {"op": "add", "path": "members", "value": [{"value": "`+member+`"}]}]`))
		if res.body["scimType"] != "invalidValue" || strings.Contains(res.raw, member) {
			t.Errorf("add %s: %s, want invalidValue not naming the member", member, res.raw)
		}
	}
	if p, _ := e.fake.pool("pool-cardiology-nurses"); p.g.DisplayName != "Cardiology Nurses" || !slices.Equal(p.g.Members, []string{"alice"}) {
		t.Errorf("after refused PATCHes pool = %+v, want unchanged", p.g)
	}
	e.must(http.StatusBadRequest, http.MethodPost, "/scim/v2/Groups",
		`{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Ghosts", "members": [{"value": "nobody"}]}`)
	if _, ok := e.fake.pool("pool-ghosts"); ok {
		t.Error("a create with an unknown member left a pool behind")
	}

	// PUT replaces the name and the member set; the id stays.
	res = e.must(http.StatusOK, http.MethodPut, "/scim/v2/Groups/pool-cardiology-nurses",
		`{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Cardiac Care", "members": [{"value": "bob"}]}`)
	if res.body["id"] != "pool-cardiology-nurses" || res.body["displayName"] != "Cardiac Care" {
		t.Errorf("PUT group = %s", res.raw)
	}
	if got := members(); !slices.Equal(got, []string{"bob"}) {
		t.Errorf("members after PUT = %v, want [bob]", got)
	}

	res = e.must(http.StatusOK, http.MethodGet, "/scim/v2/Groups?"+encode(`filter=displayName eq "cardiac care"`), "")
	if list, _ := res.body["Resources"].([]any); res.body["totalResults"] != float64(1) || len(list) != 1 {
		t.Errorf("filter displayName = %s, want the renamed pool", res.raw)
	}
	res = e.must(http.StatusOK, http.MethodGet, "/scim/v2/Groups?"+encode(`filter=displayName eq "Cardiology Nurses"`), "")
	if res.body["totalResults"] != float64(0) {
		t.Errorf("filter on the old name = %s, want none", res.raw)
	}
	e.must(http.StatusBadRequest, http.MethodGet, "/scim/v2/Groups?"+encode(`filter=id eq "x"`), "")

	e.must(http.StatusNoContent, http.MethodDelete, "/scim/v2/Groups/pool-cardiology-nurses", "")
	if p, ok := e.fake.pool("pool-cardiology-nurses"); !ok || p.active {
		t.Errorf("after DELETE pool = %+v, %v, want kept and deactivated", p, ok)
	}
}

func TestBackendErrorsMapped(t *testing.T) {
	t.Parallel()
	const secret = "pgx: relation directory_people at 10.0.0.5 for Alex Example"
	withReason := connect.NewError(connect.CodeFailedPrecondition, nil)
	if d, err := connect.NewErrorDetail(&errdetails.ErrorInfo{Reason: "POOL_DEACTIVATED", Domain: "securemsg"}); err == nil {
		withReason.AddDetail(d)
	}
	for _, tt := range []struct {
		name       string
		err        error
		wantStatus int
		wantType   string
		wantDetail string
	}{
		{name: "permission denied", err: status.Error(codes.PermissionDenied, secret), wantStatus: http.StatusForbidden},
		{name: "unauthenticated", err: status.Error(codes.Unauthenticated, secret), wantStatus: http.StatusUnauthorized},
		{name: "unavailable", err: status.Error(codes.Unavailable, secret), wantStatus: http.StatusServiceUnavailable},
		{name: "invalid argument", err: status.Error(codes.InvalidArgument, secret), wantStatus: http.StatusBadRequest, wantType: "invalidValue"},
		{name: "internal", err: status.Error(codes.Internal, secret), wantStatus: http.StatusInternalServerError},
		{name: "plain error", err: io.ErrUnexpectedEOF, wantStatus: http.StatusInternalServerError},
		{name: "connect with reason", err: withReason, wantStatus: http.StatusBadRequest, wantType: "mutability", wantDetail: "POOL_DEACTIVATED"},
		{name: "connect not found", err: connect.NewError(connect.CodeNotFound, nil), wantStatus: http.StatusNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.fake.failing("GetUser", tt.err)
			res := e.do(http.MethodGet, "/scim/v2/Users/ext-1", "")
			if res.status != tt.wantStatus {
				t.Fatalf("GET with backend error %v = %d %s, want %d", tt.err, res.status, res.raw, tt.wantStatus)
			}
			if want := strconv.Itoa(tt.wantStatus); res.body["status"] != want {
				t.Errorf("body status = %v, want %q", res.body["status"], want)
			}
			if tt.wantType != "" && res.body["scimType"] != tt.wantType {
				t.Errorf("scimType = %v, want %q", res.body["scimType"], tt.wantType)
			}
			if !strings.Contains(res.raw, tt.wantDetail) {
				t.Errorf("body %s, want detail with %q", res.raw, tt.wantDetail)
			}
			for _, leak := range []string{"pgx", "10.0.0.5", "Alex", "unexpected EOF", "not applicable"} {
				if strings.Contains(res.raw, leak) {
					t.Errorf("body %s leaks %q", res.raw, leak)
				}
			}
			if tt.wantStatus == http.StatusUnauthorized && res.header.Get("WWW-Authenticate") != "Bearer" {
				t.Errorf("401 WWW-Authenticate = %q, want Bearer", res.header.Get("WWW-Authenticate"))
			}
			if logs := e.logs.String(); strings.Contains(logs, "Alex") || strings.Contains(logs, "ext-1") || strings.Contains(logs, "pgx") {
				t.Errorf("logs %s carry personal data or the error text", logs)
			}
		})
	}

	// A refusal of a write keeps its code too, on every method.
	e := newEnv(t)
	e.fake.failing("PutUser", status.Error(codes.PermissionDenied, secret))
	res := e.must(http.StatusForbidden, http.MethodPost, "/scim/v2/Users", entraUser("ext-1", "a@example.org", "staff"))
	if strings.Contains(res.raw, "pgx") {
		t.Errorf("POST refusal %s leaks the error", res.raw)
	}
	e.fake.failing("PutUser", nil)
	e.fake.failing("CreateGroup", status.Error(codes.AlreadyExists, secret))
	res = e.must(http.StatusConflict, http.MethodPost, "/scim/v2/Groups", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "X"}`)
	if res.body["scimType"] != "uniqueness" {
		t.Errorf("AlreadyExists scimType = %v, want uniqueness", res.body["scimType"])
	}
}

func TestServiceProviderConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	res := e.must(http.StatusOK, http.MethodGet, "/scim/v2/ServiceProviderConfig", "")
	get := func(path ...string) any {
		var v any = res.body
		for _, p := range path {
			m, _ := v.(map[string]any)
			v = m[p]
		}
		return v
	}
	for _, tt := range []struct {
		path []string
		want any
	}{
		{path: []string{"patch", "supported"}, want: true},
		{path: []string{"filter", "supported"}, want: true},
		{path: []string{"filter", "maxResults"}, want: float64(100)},
		{path: []string{"bulk", "supported"}, want: false},
		{path: []string{"changePassword", "supported"}, want: false},
		{path: []string{"sort", "supported"}, want: false},
		{path: []string{"etag", "supported"}, want: false},
	} {
		if got := get(tt.path...); got != tt.want {
			t.Errorf("ServiceProviderConfig %v = %v, want %v", tt.path, got, tt.want)
		}
	}
	schemes, _ := res.body["authenticationSchemes"].([]any)
	if len(schemes) != 1 || schemes[0].(map[string]any)["type"] != "oauthbearertoken" {
		t.Errorf("authenticationSchemes = %v, want one oauthbearertoken", schemes)
	}
	res = e.must(http.StatusOK, http.MethodGet, "/scim/v2/ResourceTypes", "")
	if res.body["totalResults"] != float64(2) {
		t.Errorf("ResourceTypes = %s, want User and Group", res.raw)
	}
}

func TestOutsidePrefix(t *testing.T) {
	t.Parallel()
	f := newFake()
	h, err := scim.NewHandler(f, scim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/Users", "/v2/Users", "/scim/v2x/Users", "/scim/Users"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, rec.Code)
		}
	}
	if len(f.auth) != 0 {
		t.Errorf("requests outside the prefix reached the backend %d times", len(f.auth))
	}
	if _, err := scim.NewHandler(nil, scim.Options{}); err == nil {
		t.Error("NewHandler(nil) = nil error, want one")
	}
}

func TestPoolRole(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		roles []string
		want  string
	}{
		{roles: []string{"clinician"}, want: "clinician"},
		{roles: []string{"admin", "clinician"}, want: "clinician"},
		{roles: []string{"staff"}, want: "staff"},
		{roles: []string{"admin"}, want: "staff"},
		{roles: nil, want: "staff"},
	} {
		if got := scim.PoolRole(tt.roles); got != tt.want {
			t.Errorf("PoolRole(%q) = %q, want %q", tt.roles, got, tt.want)
		}
	}
}

func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a@example.org", "title": "` +
		strings.Repeat("x", 2<<20) + `", "roles": [{"value": "staff"}]}`
	e.must(http.StatusBadRequest, http.MethodPost, "/scim/v2/Users", body)
	if _, ok := e.fake.user("a@example.org"); ok {
		t.Error("a user was created from a body over the limit")
	}
}
