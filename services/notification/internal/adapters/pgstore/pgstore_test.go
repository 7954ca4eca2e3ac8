package pgstore_test

import (
	"log/slog"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/securemsg/securemsg/services/internal/platform/keys"
	"github.com/securemsg/securemsg/services/internal/platform/migrate"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/testkit"
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
	admin := testkit.Postgres(t)
	transit, err := keys.OpenTransit(t.Context(), keys.Config{Addr: stack.VaultAddr, Token: stack.VaultToken}, transitKey)
	if err != nil {
		testkit.Unavailable(t, "vault transit", err)
	}
	keyring, err := keys.NewKeyring(transit, keys.KeyringOptions{})
	if err != nil {
		t.Fatal(err)
	}
	repotest.Run(t, func(t *testing.T) repotest.Repos {
		schema := testkit.NewSchema(t, admin)
		pool, err := pg.NewPool(t.Context(), pg.Config{URL: stack.PostgresURL, Schema: schema, MaxConns: 4})
		if err != nil {
			t.Fatalf("pool on %s: %v", schema, err)
		}
		t.Cleanup(pool.Close)
		if err := migrate.Up(t.Context(), pool, schema, migrations.FS, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatalf("migrate %s: %v", schema, err)
		}
		s := pgstore.New(pool, sealer.New(keyring, transitKey))
		return repotest.Repos{Preferences: s, Deliveries: s, Templates: s, Committed: func(t *testing.T) []string {
			rows, err := pool.Query(t.Context(), `SELECT id FROM outbox ORDER BY seq`)
			if err != nil {
				t.Fatalf("read outbox: %v", err)
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatalf("read outbox: %v", err)
			}
			return ids
		}}
	})
}
