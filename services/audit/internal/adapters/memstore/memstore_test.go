package memstore_test

import (
	"testing"

	"github.com/securemsg/securemsg/services/audit/internal/adapters/memstore"
	"github.com/securemsg/securemsg/services/audit/internal/adapters/repotest"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
)

func written(s *memstore.Store) repotest.Written {
	return func(*testing.T) []outbox.Event { return s.Events() }
}

func TestLogContract(t *testing.T) {
	t.Parallel()
	repotest.RunLog(t, func(*testing.T) repotest.LogUnderTest {
		s := memstore.New()
		return repotest.LogUnderTest{Log: s, Written: written(s)}
	})
}

func TestCheckpointsContract(t *testing.T) {
	t.Parallel()
	repotest.RunCheckpoints(t, func(*testing.T) domain.Checkpoints { return memstore.New() })
}

func TestReconcileMarksContract(t *testing.T) {
	t.Parallel()
	repotest.RunReconcileMarks(t, func(*testing.T) repotest.MarksUnderTest {
		s := memstore.New()
		return repotest.MarksUnderTest{Marks: s, Log: s}
	})
}

func TestOutboxContract(t *testing.T) {
	t.Parallel()
	repotest.RunOutbox(t, func(*testing.T) repotest.OutboxUnderTest {
		s := memstore.New()
		return repotest.OutboxUnderTest{Outbox: s, Written: written(s)}
	})
}

func TestAlertsContract(t *testing.T) {
	t.Parallel()
	repotest.RunAlerts(t, func(*testing.T) repotest.AlertsUnderTest {
		s := memstore.New()
		return repotest.AlertsUnderTest{Alerts: s, Log: s, Written: written(s)}
	})
}
