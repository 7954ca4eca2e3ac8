package wire

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/securemsg/securemsg/services/audit/internal/domain"
)

func TestCheckpointCollector(t *testing.T) {
	t.Parallel()
	names := []string{"securemsg_audit_last_checkpoint_timestamp_seconds", "securemsg_audit_last_checkpoint_tree_size"}
	for _, tc := range []struct {
		name   string
		latest func(context.Context) (domain.Checkpoint, error)
		want   string
	}{
		{"a checkpoint", func(context.Context) (domain.Checkpoint, error) {
			return domain.Checkpoint{TreeSize: 42, CreatedAt: time.Unix(1_796_000_000, 500_000_000)}, nil
		}, "securemsg_audit_last_checkpoint_timestamp_seconds 1.7960000005e+09\nsecuremsg_audit_last_checkpoint_tree_size 42\n"},
		{"none yet", func(context.Context) (domain.Checkpoint, error) { return domain.Checkpoint{}, domain.ErrNoCheckpoint },
			"securemsg_audit_last_checkpoint_timestamp_seconds 0\nsecuremsg_audit_last_checkpoint_tree_size 0\n"},
		{"database down", func(context.Context) (domain.Checkpoint, error) {
			return domain.Checkpoint{}, errors.New("connection refused")
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(newCheckpointCollector(tc.latest, slog.New(slog.DiscardHandler)))
			want := ""
			if tc.want != "" {
				want = "# HELP securemsg_audit_last_checkpoint_timestamp_seconds Unix time the newest signed checkpoint was made (0 until the first one).\n" +
					"# TYPE securemsg_audit_last_checkpoint_timestamp_seconds gauge\n" +
					strings.Split(tc.want, "\n")[0] + "\n" +
					"# HELP securemsg_audit_last_checkpoint_tree_size Entries covered by the newest signed checkpoint.\n" +
					"# TYPE securemsg_audit_last_checkpoint_tree_size gauge\n" +
					strings.Split(tc.want, "\n")[1] + "\n"
			}
			if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
				t.Errorf("GatherAndCompare() = %v", err)
			}
		})
	}
}
