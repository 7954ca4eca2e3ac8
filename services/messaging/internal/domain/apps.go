package domain

import (
	"context"
	"regexp"
	"slices"
	"time"

	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// ClientApp is a registered client application: an OAuth client whose tokens every service
// admits, within AllowedScopes and, for care-team and third-party apps, PoolIDs.
type ClientApp struct {
	ClientID      string
	Kind          directoryv1.ClientAppKind
	DisplayName   string
	AllowedScopes []string
	PoolIDs       []string
	Active        bool
	UpdatedAt     time.Time
}

// KnownScopes are the OAuth scopes the policies give meaning to (deploy/policies: the
// "scope:<s>" action groups); an app may be approved for these only.
var KnownScopes = []string{"messages.read", "messages.write", "attachments.read", "attachments.write", "notifications.manage", "audit.read", "admin", ScopeDirectoryProvision}

// ScopeDirectoryProvision is the scope of an identity provider's provisioning client: people
// and pool memberships, nothing else. Only a provisioning app may be approved for it, and a
// provisioning app for nothing else, so that the one credential without an interactive login
// never reaches past the directory.
const ScopeDirectoryProvision = "directory.provision"

var clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)

// PoolScoped reports whether an app of kind k is held to its pools.
func PoolScoped(k directoryv1.ClientAppKind) bool {
	return k == directoryv1.ClientAppKind_CLIENT_APP_KIND_CARE_TEAM || k == directoryv1.ClientAppKind_CLIENT_APP_KIND_THIRD_PARTY
}

// Check validates a registration an administrator wrote.
func (a ClientApp) Check() error {
	if a.ClientID == "" {
		return invalid("FIELD_REQUIRED", "app.client_id is required")
	}
	if len(a.ClientID) > 200 || !clientIDPattern.MatchString(a.ClientID) {
		return invalid("CLIENT_ID_MALFORMED", "app.client_id is malformed")
	}
	if _, ok := directoryv1.ClientAppKind_name[int32(a.Kind)]; !ok || a.Kind == directoryv1.ClientAppKind_CLIENT_APP_KIND_UNSPECIFIED {
		return invalid("FIELD_REQUIRED", "app.kind is required")
	}
	if err := CheckText("app.display_name", a.DisplayName, 200, true); err != nil {
		return err
	}
	if len(a.AllowedScopes) == 0 {
		return invalid("FIELD_REQUIRED", "app.allowed_scopes is required")
	}
	for _, s := range a.AllowedScopes {
		if !slices.Contains(KnownScopes, s) {
			return invalid("SCOPE_UNKNOWN", "app.allowed_scopes names a scope the suite does not know")
		}
	}
	provisioning := a.Kind == directoryv1.ClientAppKind_CLIENT_APP_KIND_PROVISIONING
	for _, s := range a.AllowedScopes {
		if (s == ScopeDirectoryProvision) != provisioning {
			return invalid("SCOPE_NOT_FOR_KIND", "app.allowed_scopes: directory.provision is the only scope of a provisioning app, and only a provisioning app's")
		}
	}
	if len(a.PoolIDs) > 0 && !PoolScoped(a.Kind) {
		return invalid("APP_POOLS_NOT_APPLICABLE", "app.pool_ids is only for care-team and third-party apps")
	}
	for _, p := range a.PoolIDs {
		if err := CheckPoolID("app.pool_ids", p); err != nil {
			return err
		}
	}
	return nil
}

// AppRepository stores client-app registrations. Every change also puts the app's entry into
// the directory every service admits callers by.
type AppRepository interface {
	// ClientApps lists up to limit registrations with client ids after afterID, by client id.
	ClientApps(ctx context.Context, afterID string, limit int) ([]ClientApp, error)
	// RegisterClientApp stores a, a new registration (active), with rows, in one commit;
	// ErrAppExists when the client id is registered, ErrPoolNotFound when one of its pools does
	// not exist.
	RegisterClientApp(ctx context.Context, a ClientApp, rows []outbox.Event) (ClientApp, error)
	// UpdateClientApp loads the registration under its row lock, lets change return the next
	// one and its rows, and stores it, in one commit. ErrAppNotFound when there is none,
	// ErrPoolNotFound when one of the new pools does not exist.
	UpdateClientApp(ctx context.Context, clientID string, change func(cur ClientApp) (ClientApp, []outbox.Event, error)) (ClientApp, error)
}

// Client-app refusals.
var (
	// ErrAppExists: RegisterClientApp with a client id already registered.
	ErrAppExists = usererr.New(usererr.AlreadyExists, "CLIENT_APP_EXISTS", "a client app with this id is already registered")
	// ErrAppNotFound: no registration has the client id.
	ErrAppNotFound = usererr.New(usererr.NotFound, "CLIENT_APP_NOT_FOUND", "client app not found")
)
