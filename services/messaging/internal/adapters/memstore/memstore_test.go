package memstore_test

import (
	"testing"

	"github.com/securemsg/securemsg/services/messaging/internal/adapters/memstore"
	"github.com/securemsg/securemsg/services/messaging/internal/adapters/repotest"
)

// TestRepositories runs the repository contract against the in-memory fake.
func TestRepositories(t *testing.T) {
	t.Parallel()
	repotest.Run(t, func(*testing.T) repotest.Subject {
		s := memstore.New()
		return repotest.Subject{Store: s, Outbox: func(*testing.T) []string {
			var ids []string
			for _, e := range s.Outbox() {
				ids = append(ids, e.ID)
			}
			return ids
		}}
	})
}
