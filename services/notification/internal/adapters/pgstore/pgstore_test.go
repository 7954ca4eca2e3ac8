package pgstore_test

import (
	"net/url"
	"testing"

	"github.com/securemsg/securemsg/services/internal/platform/keys"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
	"github.com/securemsg/securemsg/services/notification/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/notification/internal/adapters/repotest"
	"github.com/securemsg/securemsg/services/notification/internal/adapters/sealer"
	"github.com/securemsg/securemsg/services/notification/migrations"
)

// transitKey is the Transit key the contract's stores seal contact points under.
const transitKey = "securemsg-notification-test"

// TestContract runs the repositories' contract against Postgres: each store on a schema of its
// own with the service's migrations applied, sealing through the stack's Transit.
func TestContract(t *testing.T) {
	t.Parallel()
	stack := testkit.LoadStack()
	if u, err := url.Parse(stack.VaultAddr); err == nil {
		testkit.RequireTCP(t, "vault", u.Host)
	}
	transit, err := keys.OpenTransit(t.Context(), keys.Config{Addr: stack.VaultAddr, Token: stack.VaultToken}, transitKey)
	if err != nil {
		testkit.Unavailable(t, "vault transit", err)
	}
	keyring, err := keys.NewKeyring(transit, keys.KeyringOptions{})
	if err != nil {
		t.Fatal(err)
	}
	repotest.Run(t, func(t *testing.T) repotest.Repos {
		pool := servicetest.MigratedPool(t, migrations.FS)
		s := pgstore.New(pool, sealer.New(keyring, transitKey))
		return repotest.Repos{Preferences: s, Deliveries: s, Templates: s, Committed: func(t *testing.T) []string { return servicetest.OutboxIDs(t, pool) }}
	})
}
