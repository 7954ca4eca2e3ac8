package app

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
)

// addEvents writes events to the outbox in tx; failure means the change cannot be recorded.
func addEvents(ctx context.Context, tx pgx.Tx, evs ...outbox.Event) error {
	if err := outbox.Add(ctx, tx, evs...); err != nil {
		return domain.NotRecorded(err)
	}
	return nil
}
