package memstore_test

import (
	"testing"

	"github.com/securemsg/securemsg/services/attachment/internal/adapters/memstore"
	"github.com/securemsg/securemsg/services/attachment/internal/adapters/repotest"
)

// TestRepositoryContract holds the fake to the contract the Postgres adapter passes.
func TestRepositoryContract(t *testing.T) {
	t.Parallel()
	repotest.Run(t, func(*testing.T) repotest.Subject {
		store := memstore.New(nil)
		return repotest.Subject{Repo: store, Audit: store, RowIDs: func(*testing.T) []string {
			var ids []string
			for _, r := range store.Rows() {
				ids = append(ids, r.ID)
			}
			return ids
		}}
	})
}

// TestUploadSessionContract holds the fake to the upload-session contract.
func TestUploadSessionContract(t *testing.T) {
	t.Parallel()
	repotest.RunSessions(t, func(*testing.T) repotest.SessionSubject {
		store := memstore.New(nil)
		return repotest.SessionSubject{Repo: store, Sessions: store}
	})
}
