package pgstore_test

import (
	"testing"

	"github.com/securemsg/securemsg/services/attachment/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/attachment/internal/adapters/repotest"
	"github.com/securemsg/securemsg/services/attachment/migrations"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

// TestRepositoryContract runs the repository contract against Postgres: each subtest gets a
// schema of its own with the service's migrations (and the outbox's) applied.
func TestRepositoryContract(t *testing.T) {
	t.Parallel()
	repotest.Run(t, func(t *testing.T) repotest.Subject {
		pool := servicetest.MigratedPool(t, migrations.FS)
		store := pgstore.New(pool)
		return repotest.Subject{Repo: store, Audit: store, RowIDs: func(t *testing.T) []string { return servicetest.OutboxIDs(t, pool) }}
	})
}

// TestUploadSessionContract runs the upload-session contract against Postgres.
func TestUploadSessionContract(t *testing.T) {
	t.Parallel()
	repotest.RunSessions(t, func(t *testing.T) repotest.SessionSubject {
		store := pgstore.New(servicetest.MigratedPool(t, migrations.FS))
		return repotest.SessionSubject{Repo: store, Sessions: store}
	})
}
