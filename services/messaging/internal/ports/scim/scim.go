// Package scim serves SCIM 2.0 provisioning (RFC 7643, RFC 7644) for messaging: it is how an
// organisation's identity provider (Entra ID, Okta, …) creates, updates and deactivates its staff
// and manages who works in which care pool, under /scim/v2 (Users, Groups, and the discovery
// endpoints ServiceProviderConfig, ResourceTypes, Schemas).
//
// A SCIM User is a person of the directory, identified by their subject (the OIDC "sub" of their
// tokens); a SCIM Group is a care pool. The protocol — routing, body validation against the core
// schemas, filters, PATCH parsing, list responses — is github.com/elimity-com/scim; this package
// maps its resources to messaging's and reaches messaging only through Backend, whose
// implementation calls the service's admin rpcs with the identity provider's own request, so the
// bearer token and address of every SCIM call pass the same guards (token, IP lists, rate limits,
// policy, audit) as any admin call. Nothing here decides who may provision.
//
// Provisioning never erases anyone: audit records name people and pools, so DELETE deactivates.
// Patients and proxies are not provisioned here (they are not staff of an organisation); a User
// must carry at least one of the staff roles.
//
// Answers never carry a backend's error text, and log lines never carry a name, user name or
// subject: only the code, method and resource type of a failure.
package scim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	elimity "github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/optional"
	"github.com/elimity-com/scim/schema"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Prefix is the path the handler serves; NewHandler's handler answers 404 outside it.
const Prefix = "/scim/v2"

// maxResults is the largest page a list returns (and the page when count is absent).
const maxResults = 100

// maxBodyBytes bounds a request body: the largest provisioning request is a group PUT with its
// member list, far below this.
const maxBodyBytes = 1 << 20

// Backend is what provisioning needs of messaging. r is the SCIM request being served: an
// implementation authenticates and authorises with it (its Authorization header, its peer).
// Errors carry gRPC codes (status.Code / connect.CodeOf): NotFound, AlreadyExists,
// InvalidArgument, FailedPrecondition, PermissionDenied, Unauthenticated, Unavailable.
type Backend interface {
	ListUsers(r *http.Request, f UserFilter, offset, limit int) (users []User, total int, err error)
	GetUser(r *http.Request, id string) (User, error)
	// PutUser creates the user or replaces every attribute of an existing one.
	PutUser(r *http.Request, u User) (User, error)
	ListGroups(r *http.Request, offset, limit int) (groups []Group, total int, err error)
	GetGroup(r *http.Request, id string) (Group, error)
	CreateGroup(r *http.Request, id, displayName string) (Group, error)
	RenameGroup(r *http.Request, id, displayName string) (Group, error)
	DeactivateGroup(r *http.Request, id string) error
	// AddMember puts u, an existing active user the adapter has just read, in a pool; the role
	// they have there is PoolRole(u.Roles).
	AddMember(r *http.Request, groupID string, u User) error
	RemoveMember(r *http.Request, groupID, userID string) error
}

// UserFilter narrows ListUsers to the users whose user name or external id equals the given
// value (an empty field does not filter). SCIM compares userName case-insensitively
// (caseExact false) and externalId exactly.
type UserFilter struct{ UserName, ExternalID string }

// User is a provisioned person. ID is their subject; Roles are among "clinician", "staff",
// "admin", "auditor"; Version increases with every change and is the resource's ETag.
type User struct {
	ID, ExternalID, UserName, DisplayName string
	Roles                                 []string
	Active                                bool
	Created, Modified                     time.Time
	Version                               int64
}

// Group is a care pool: its id, its name and the subjects of its members.
type Group struct {
	ID, DisplayName   string
	Members           []string
	Created, Modified time.Time
}

// Options configure NewHandler.
type Options struct {
	// Logger receives the failures a client cannot be told about (a backend's internal errors,
	// the library's own); nil discards them.
	Logger *slog.Logger
	// BaseURL is the absolute URL of the SCIM root as the identity provider reaches it
	// ("https://msg.example.org/scim/v2"), used for meta.location and Location; empty gives
	// absolute paths under Prefix. The library escapes an id twice in it when the id has
	// characters a path must escape ("|", "%"), so such ids get wrong locations.
	BaseURL string
	// DocumentationURI, when set, is published in ServiceProviderConfig.
	DocumentationURI string
}

// roles are the roles provisioning grants: staff of an organisation. Patients and proxies come
// from registration and consent, never from an identity provider.
var roles = []string{"clinician", "staff", "admin", "auditor"}

// PoolRole is the role a provisioned user has in a care pool: clinician for a clinician, staff
// for anyone else.
func PoolRole(userRoles []string) string {
	for _, r := range userRoles {
		if r == "clinician" {
			return "clinician"
		}
	}
	return "staff"
}

var allowStringValues sync.Once

// NewHandler returns the SCIM server for backend, to be mounted at "/scim/v2/".
//
// It turns on the library's acceptance of "True"/"False" strings for booleans (and numeric
// strings for numbers), which is process-wide: Entra ID sends PATCH values such as
// {"path": "active", "value": "False"} and role "primary": "True", and refusing them would stop
// it deactivating anyone.
func NewHandler(b Backend, opts Options) (http.Handler, error) {
	if b == nil {
		return nil, errors.New("scim: no backend")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	allowStringValues.Do(func() { schema.SetAllowStringValues(true) })
	h := &handler{log: log}
	config := &elimity.ServiceProviderConfig{
		AuthenticationSchemes: []elimity.AuthenticationScheme{{
			Type:        elimity.AuthenticationTypeOauthBearerToken,
			Name:        "OAuth Bearer Token",
			Description: "An OAuth 2.0 access token of the organisation's identity provider, in the Authorization header (Bearer).",
			SpecURI:     optional.NewString("https://www.rfc-editor.org/rfc/rfc6750"),
			Primary:     true,
		}},
		MaxResults:       maxResults,
		SupportFiltering: true,
		SupportPatch:     true,
	}
	if opts.DocumentationURI != "" {
		config.DocumentationURI = optional.NewString(opts.DocumentationURI)
	}
	base := strings.TrimRight(opts.BaseURL, "/")
	if base == "" {
		base = Prefix
	}
	srv, err := elimity.NewServer(&elimity.ServerArgs{
		ServiceProviderConfig: config,
		ResourceTypes: []elimity.ResourceType{
			{
				ID:          optional.NewString("User"),
				Name:        "User",
				Description: optional.NewString("A member of staff: clinician, staff, admin or auditor"),
				Endpoint:    "/Users",
				Schema:      schema.CoreUserSchema(),
				// Accepted so that identity providers' default mappings (department, manager…)
				// do not fail; like every attribute messaging does not keep, its values are
				// dropped.
				SchemaExtensions: []elimity.SchemaExtension{{Schema: schema.ExtensionEnterpriseUser()}},
				Handler:          &users{handler: h, b: b},
			},
			{
				ID:          optional.NewString("Group"),
				Name:        "Group",
				Description: optional.NewString("A care pool"),
				Endpoint:    "/Groups",
				Schema:      schema.CoreGroupSchema(),
				Handler:     &groups{handler: h, b: b},
			},
		},
	}, elimity.WithLogger(libraryLogger{log: log}), elimity.WithBaseURL(base))
	if err != nil {
		return nil, fmt.Errorf("scim: %w", err)
	}
	h.srv = srv
	return h, nil
}

// handler is the http.Handler: it maps Prefix to the library's root, and makes sure the answer
// to a refused request is the one this package decided (see failure).
type handler struct {
	srv elimity.Server
	log *slog.Logger
}

// failure is the error this package answered a request with. The library would turn a status
// it does not list for a method (503 and 429 anywhere, 409 on GET) into a 500 naming the status,
// and any non-SCIM error into a 500 carrying the error's text; so every refusal is recorded
// here and the response writer sends it in place of whatever the library writes.
type failure struct{ err *scimerrors.ScimError }

type failureKey struct{}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store") // users carry names
	rest, ok := strings.CutPrefix(r.URL.Path, Prefix)
	if !ok || (rest != "" && !strings.HasPrefix(rest, "/")) {
		w.Header().Set("Content-Type", "application/scim+json")
		writeError(w, scimerrors.ScimError{Status: http.StatusNotFound, Detail: "Specified endpoint does not exist."})
		return
	}
	f := &failure{}
	in := r.WithContext(context.WithValue(r.Context(), failureKey{}, f))
	u := *r.URL
	u.Path, u.RawPath = "/v2"+rest, "" // the library strips "/v2" and routes on the rest
	in.URL = &u
	if r.Body != nil {
		in.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes) // a longer body fails to parse: 400
	}
	h.srv.ServeHTTP(&failureWriter{ResponseWriter: w, f: f}, in)
}

// failureWriter replaces an error response by the failure recorded for the request, if any.
type failureWriter struct {
	http.ResponseWriter
	f *failure
	// replaced: the failure was written, so what the library writes next is dropped.
	replaced bool
}

func (w *failureWriter) WriteHeader(code int) {
	if w.replaced {
		return
	}
	if code >= http.StatusBadRequest && w.f.err != nil {
		w.replaced = true
		writeError(w.ResponseWriter, *w.f.err)
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *failureWriter) Write(p []byte) (int, error) {
	if w.replaced {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

// writeError writes e as a SCIM error body (RFC 7644 §3.12).
func writeError(w http.ResponseWriter, e scimerrors.ScimError) {
	body, err := e.MarshalJSON()
	if err != nil { // three strings and a list always encode
		e, body = scimerrors.ScimErrorInternal, []byte(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"500"}`)
	}
	switch e.Status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", "Bearer")
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "30")
	}
	w.WriteHeader(e.Status)
	_, _ = w.Write(body) // a failed write means the client is gone
}

// refuse records e as the request's answer and returns it in the form the library expects of
// a handler (a ScimError value).
func refuse(r *http.Request, e scimerrors.ScimError) error {
	if f, ok := r.Context().Value(failureKey{}).(*failure); ok {
		f.err = &e
	}
	return e
}

// invalid is a 400 invalidValue with detail, which names attributes and rules, never values.
func invalid(r *http.Request, detail string) error {
	return refuse(r, scimerrors.ScimError{ScimType: scimerrors.ScimTypeInvalidValue, Detail: detail, Status: http.StatusBadRequest})
}

// reasonPattern is the shape of a usererr reason ("POOL_DEACTIVATED"): a stable token that is
// safe to repeat to the client, unlike a message.
var reasonPattern = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}$`)

// backendError maps a Backend error to the SCIM answer: the status its gRPC code means, a fixed
// detail, and the ErrorInfo reason when the error has one. Its text is never shown; failures
// the client cannot act on are logged by code only.
func (h *handler) backendError(r *http.Request, resourceType string, err error) error {
	code, reason := codeAndReason(err)
	e := scimerrors.ScimError{}
	switch code {
	case codes.NotFound:
		e = scimerrors.ScimError{Status: http.StatusNotFound, Detail: "The resource does not exist."}
	case codes.AlreadyExists:
		e = scimerrors.ScimErrorUniqueness
	case codes.InvalidArgument:
		e = scimerrors.ScimErrorInvalidValue
	case codes.FailedPrecondition:
		// The resource's state refuses the change (a deactivated pool, a deactivated person).
		e = scimerrors.ScimError{ScimType: scimerrors.ScimTypeMutability, Status: http.StatusBadRequest,
			Detail: "The change is not possible in the resource's current state."}
	case codes.Aborted:
		// A concurrent change won; the identity provider retries.
		e = scimerrors.ScimError{Status: http.StatusConflict, Detail: "The resource changed concurrently; retry."}
	case codes.PermissionDenied:
		e = scimerrors.ScimError{Status: http.StatusForbidden, Detail: "The caller may not make this request."}
	case codes.Unauthenticated:
		e = scimerrors.ScimError{Status: http.StatusUnauthorized, Detail: "A valid bearer token is required."}
	case codes.ResourceExhausted:
		e = scimerrors.ScimError{Status: http.StatusTooManyRequests, Detail: "Too many requests; retry later."}
	case codes.Unavailable:
		h.log.LogAttrs(r.Context(), slog.LevelWarn, "scim: backend unavailable",
			slog.String("method", r.Method), slog.String("resource_type", resourceType))
		e = scimerrors.ScimError{Status: http.StatusServiceUnavailable, Detail: "The service is unavailable; retry later."}
	default:
		h.log.LogAttrs(r.Context(), slog.LevelError, "scim: backend failed",
			slog.String("code", code.String()), slog.String("method", r.Method), slog.String("resource_type", resourceType))
		return refuse(r, scimerrors.ScimError{Status: http.StatusInternalServerError, Detail: "The request could not be completed."})
	}
	if reason != "" {
		e.Detail += " (reason " + reason + ")"
	}
	return refuse(r, e)
}

// codeAndReason is err's gRPC code (from a connect error, a gRPC status or a context error) and
// its google.rpc.ErrorInfo reason, if it is well-formed.
func codeAndReason(err error) (codes.Code, string) {
	var details []any
	code := codes.Unknown
	var cerr *connect.Error
	if errors.As(err, &cerr) {
		code = codes.Code(cerr.Code()) // connect's codes are gRPC's, 0 to 16
		for _, d := range cerr.Details() {
			if v, derr := d.Value(); derr == nil {
				details = append(details, v)
			}
		}
	} else if s, ok := status.FromError(err); ok {
		code, details = s.Code(), s.Details()
	} else if errors.Is(err, context.Canceled) {
		code = codes.Canceled
	} else if errors.Is(err, context.DeadlineExceeded) {
		code = codes.DeadlineExceeded
	}
	for _, d := range details {
		if info, ok := d.(*errdetails.ErrorInfo); ok && reasonPattern.MatchString(info.GetReason()) {
			return code, info.GetReason()
		}
	}
	return code, ""
}

// libraryLogger passes the library's own failures (a response it could not encode or write) to
// slog. It keeps only the message: the library logs the resource it failed on beside it, and a
// resource holds names.
type libraryLogger struct{ log *slog.Logger }

func (l libraryLogger) Error(args ...any) {
	msg := "library error"
	if len(args) > 0 {
		if s, ok := args[0].(string); ok {
			msg = s
		}
	}
	l.log.Error("scim: " + msg)
}

// meta is a resource's meta from its times and version (ETag W/"<version>").
func meta(created, modified time.Time, version int64) elimity.Meta {
	var m elimity.Meta
	if !created.IsZero() {
		c := created.UTC()
		m.Created = &c
	}
	if !modified.IsZero() {
		mod := modified.UTC()
		m.LastModified = &mod
	}
	if version > 0 {
		m.Version = fmt.Sprintf(`W/"%d"`, version)
	}
	return m
}

// page turns a 1-based SCIM start index and count into the backend's offset and limit.
func page(p elimity.ListRequestParams) (offset, limit int) {
	return max(p.StartIndex, 1) - 1, min(max(p.Count, 0), maxResults)
}
