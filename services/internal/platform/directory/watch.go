package directory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Watch fills snap from bucket until ctx ends: every value the bucket holds (with its history,
// so that an older version re-published after a newer one cannot hide it) and then every put as
// it happens. loaded is closed once the initial values are in and snap is marked loaded. A value
// that cannot be decoded is logged and skipped: one bad entry must not blind the whole process.
func Watch(ctx context.Context, js jetstream.JetStream, bucket string, snap *Snapshot, loaded chan<- struct{}, log *slog.Logger) error {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return fmt.Errorf("directory: open bucket %s: %w", bucket, err)
	}
	w, err := kv.WatchAll(ctx, jetstream.IncludeHistory())
	if err != nil {
		return fmt.Errorf("directory: watch bucket %s: %w", bucket, err)
	}
	defer func() { _ = w.Stop() }()
	announced := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("directory: the bucket watch ended")
			}
			if e == nil {
				if !announced {
					snap.MarkLoaded()
					announced = true
					if loaded != nil {
						close(loaded)
					}
				}
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				continue
			}
			entry, err := Decode(e.Key(), e.Value())
			if err != nil {
				log.LogAttrs(ctx, slog.LevelError, "skip undecodable directory entry",
					slog.Uint64("revision", e.Revision()), slog.String("error", err.Error()))
				continue
			}
			snap.Apply(entry)
		}
	}
}

// LoadTimeout bounds how long a process waits for the directory's initial values at start.
const LoadTimeout = 30 * time.Second
