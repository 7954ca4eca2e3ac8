package policy

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// ReloadOnSignal reloads the policies on each SIGHUP (or the given signals) until ctx ends. A
// failed reload is logged and the current policies stay in force. Call it in a goroutine.
func (e *Engine) ReloadOnSignal(ctx context.Context, sigs ...os.Signal) {
	if len(sigs) == 0 {
		sigs = []os.Signal{syscall.SIGHUP}
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigs...)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			if err := e.Reload(); err != nil {
				e.logger.Error("policy reload failed; keeping current policies", slog.String("error", err.Error()))
			}
		}
	}
}

// WatchFiles polls the policy folder every interval and reloads when its content digest changes,
// until ctx ends. Polling the content (not inotify) follows Kubernetes ConfigMap updates, which
// swap a symlink rather than write the files. Call it in a goroutine.
func (e *Engine) WatchFiles(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _, _, digest, err := readDir(e.dir)
			if err != nil || digest == e.Digest() {
				continue
			}
			if err := e.Reload(); err != nil {
				e.logger.Error("policy reload failed; keeping current policies", slog.String("error", err.Error()))
			}
		}
	}
}
