package pgstore_test

import (
	"testing"

	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
	"github.com/securemsg/securemsg/services/messaging/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/messaging/internal/adapters/repotest"
	"github.com/securemsg/securemsg/services/messaging/migrations"
)

// TestRepositories runs the repository contract against Postgres: each suite gets a schema of
// its own with the service's migrations applied, as the service runs them at start.
func TestRepositories(t *testing.T) {
	t.Parallel()
	repotest.Run(t, func(t *testing.T) repotest.Subject {
		pool := servicetest.MigratedPool(t, migrations.FS)
		return repotest.Subject{Store: pgstore.New(pool).WithDirectory("securemsg-directory-test", nil), Outbox: func(t *testing.T) []string { return servicetest.OutboxIDs(t, pool) }}
	})
}
