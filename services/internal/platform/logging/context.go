package logging

import (
	"context"
	"log/slog"
	"regexp"
	"sync"
)

type ctxKey int

const (
	loggerKey ctxKey = iota
	requestIDKey
	fieldsKey
)

// WithLogger returns a context carrying l. If ctx already carries a request id, the stored
// logger includes it.
func WithLogger(ctx context.Context, l *slog.Logger) context.Context {
	if id := RequestID(ctx); id != "" {
		l = l.With(KeyRequestID, id)
	}
	return context.WithValue(ctx, loggerKey, l)
}

// FromContext returns the logger stored in ctx (with the request id, when there is one), or
// slog.Default() when there is none.
func FromContext(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey).(*slog.Logger); ok {
		return l
	}
	if id := RequestID(ctx); id != "" {
		return slog.Default().With(KeyRequestID, id)
	}
	return slog.Default()
}

// WithRequestID returns a context carrying the request id, and a logger that logs it.
func WithRequestID(ctx context.Context, id string) context.Context {
	ctx = context.WithValue(ctx, requestIDKey, id)
	if l, ok := ctx.Value(loggerKey).(*slog.Logger); ok {
		ctx = context.WithValue(ctx, loggerKey, l.With(KeyRequestID, id))
	}
	return ctx
}

// wellFormedRequestID accepts ids a caller may choose: printable, no spaces or separators that
// could forge log structure, bounded length.
var wellFormedRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{8,64}$`)

// WellFormedRequestID reports whether a caller's request id may be used and logged as it is;
// anything else is replaced by a fresh id.
func WellFormedRequestID(id string) bool { return wellFormedRequestID.MatchString(id) }

// RequestID returns the request id in ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// Fields collects attributes that code deeper in a request learns — the caller's subject and
// client app once a guard has authenticated it — so the one access-log line written at the edge
// can carry them. It is safe for concurrent use (stream handlers may add from goroutines).
type Fields struct {
	mu    sync.Mutex
	attrs []slog.Attr
}

// WithFields returns a context carrying a new, empty Fields.
func WithFields(ctx context.Context) (context.Context, *Fields) {
	f := &Fields{}
	return context.WithValue(ctx, fieldsKey, f), f
}

// AddFields appends attrs to the Fields in ctx; without one (outside an rpc) it does nothing.
// Sensitive keys are still redacted when the line is written.
func AddFields(ctx context.Context, attrs ...slog.Attr) {
	f, ok := ctx.Value(fieldsKey).(*Fields)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attrs = append(f.attrs, attrs...)
}

// Attrs returns a copy of the collected attributes.
func (f *Fields) Attrs() []slog.Attr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]slog.Attr(nil), f.attrs...)
}
