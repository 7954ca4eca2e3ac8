package memstore_test

import (
	"testing"

	"github.com/securemsg/securemsg/services/notification/internal/adapters/memstore"
	"github.com/securemsg/securemsg/services/notification/internal/adapters/repotest"
)

// TestContract runs the repositories' contract against the fake.
func TestContract(t *testing.T) {
	t.Parallel()
	repotest.Run(t, func(*testing.T) repotest.Repos {
		s := memstore.New()
		return repotest.Repos{Preferences: s, Deliveries: s, Templates: s, Committed: func(*testing.T) []string {
			var ids []string
			for _, ev := range s.Outbox() {
				ids = append(ids, ev.ID)
			}
			return ids
		}}
	})
}
